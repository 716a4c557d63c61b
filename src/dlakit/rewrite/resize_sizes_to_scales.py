"""ResizeSizesToScalesPass: ``Resize(X, roi, sizes=S) -> Resize(X, roi, scales=S / shape(X))``.

TensorRT's DLA resize takes scales, not output sizes. When every output size is an integer multiple
of the input size, the scale is that integer, ``floor(in * scale)`` gives the same size and the
coordinate transform uses the same ratio, so the result is identical. Conditions: constant sizes, a
static input shape, integer up-scale ratios (1 on N and C comes out naturally), no ``axes`` subset
and the default ``keep_aspect_ratio_policy``. Fractional ratios are refused: the DLA takes integer
scales only and a float scale would change ``floor(in * scale)``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


class ResizeSizesToScalesPass(RewritePass):
    """Resize(X, roi, sizes=S) -> Resize(X, roi, scales=S / shape(X)) for integer ratios"""

    name = "resize-sizes-to-scales"
    op_types = ("Resize",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        if len(node.input) < 4 or not node.input[3]:
            return None
        a = attrs(node)
        if a.get("axes") is not None or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            return self.refuse(node, "axes or keep_aspect_ratio_policy set: sizes are not per axis")
        sizes = graph.const(node.input[3])
        shape = graph.shape(node.input[0])
        if sizes is None or shape is None:
            return self.refuse(node, "sizes or the input shape are not known at build time")
        if len(sizes) != len(shape) or any(s % i for s, i in zip(sizes, shape, strict=True)):
            ratios = [f"{s}/{i}" for s, i in zip(sizes, shape, strict=False)]
            return self.refuse(
                node, f"ratios {ratios} are not all integers (DLA scales are integers)"
            )
        scales = graph.initializer(
            f"{node.name}.scales", (np.asarray(sizes) // np.asarray(shape)).astype(np.float32)
        )
        inits = [scales]
        roi = node.input[1] if len(node.input) > 1 else ""
        if not roi and graph.opset < 13:  # opset 11-12 need the roi slot filled
            roi_init = graph.initializer(f"{node.name}.roi", np.zeros(0, np.float32))
            inits.append(roi_init)
            roi = roi_init.name
        new = helper.make_node(
            "Resize", [node.input[0], roi, scales.name], list(node.output), name=node.name
        )
        new.attribute.extend(node.attribute)
        factors = "x".join(str(int(v)) for v in (np.asarray(sizes) // np.asarray(shape)))
        return Change(
            remove=[node],
            add=[new],
            initializers=inits,
            description=f"output sizes {list(sizes)} as scales {factors}",
        )
