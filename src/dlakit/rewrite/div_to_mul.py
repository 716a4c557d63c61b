"""DivToMulPass: ``Div(X, c)`` with a constant c -> ``Mul(X, 1 / c)``.

TensorRT reaches the DLA with Div only from 8.6.12 (DRIVE); a Mul by a constant is a Scale layer
on every version. ``x / c`` and ``x * (1 / c)`` differ by at most one rounding of ``1 / c``
(exact when c is a power of two), far inside the 1e-5 check. Conditions: a float constant divisor
with no zero, infinite or NaN element. PP-OCR's hard-swish ``x * relu6(x + 3) / 6`` is the case.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


class DivToMulPass(RewritePass):
    """Div(X, c) -> Mul(X, 1 / c) for a constant, finite, non-zero float c"""

    name = "div-to-mul"
    op_types = ("Div",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        divisor = graph.const(node.input[1])
        if divisor is None or not np.issubdtype(divisor.dtype, np.floating):
            return None  # a tensor divided by a tensor, or integer division
        if not np.all(np.isfinite(divisor)) or np.any(divisor == 0):
            return self.refuse(node, "the constant divisor has a zero, infinite or NaN element")
        inverse = graph.initializer(f"{node.name}.inverse", (1.0 / divisor).astype(divisor.dtype))
        new = helper.make_node(
            "Mul", [node.input[0], inverse.name], list(node.output), name=node.name
        )
        shown = f"{float(divisor.reshape(-1)[0]):g}" if divisor.size == 1 else "c"
        return Change(
            remove=[node],
            add=[new],
            initializers=[inverse],
            description=f"x / {shown} as x * (1 / {shown})",
        )
