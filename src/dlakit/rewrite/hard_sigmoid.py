"""HardSigmoidPass: ``HardSigmoid(X) -> Clip(Add(Mul(X, alpha), beta), 0, 1)``.

ONNX defines ``HardSigmoid(x) = max(0, min(1, alpha * x + beta))``. TensorRT has no DLA HardSigmoid,
but the replacement maps onto DLA layers: Mul and Add by constants become a Scale layer and
``Clip(0, 1)`` a clipped ReLU. The result matches to float rounding (one multiply, one add).
Conditions: none beyond a float input.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


def hard_sigmoid_nodes(
    graph: Graph, node: onnx.NodeProto, x: str, out: str, alpha: float, beta: float
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Mul, Add and Clip nodes computing clip(alpha * x + beta, 0, 1) into ``out``."""
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.dtypes.get(x, 1))
    base = node.name
    inits = [
        graph.initializer(f"{base}.alpha", np.array(alpha, dtype)),
        graph.initializer(f"{base}.beta", np.array(beta, dtype)),
    ]
    scaled, shifted = graph.fresh(f"{base}.scaled"), graph.fresh(f"{base}.shifted")
    nodes = [
        helper.make_node("Mul", [x, inits[0].name], [scaled], name=graph.fresh(f"{base}/mul")),
        helper.make_node(
            "Add", [scaled, inits[1].name], [shifted], name=graph.fresh(f"{base}/add")
        ),
    ]
    clip_name = graph.fresh(f"{base}/clip")
    if graph.opset >= 11:
        lo = graph.initializer(f"{base}.zero", np.array(0, dtype))
        hi = graph.initializer(f"{base}.one", np.array(1, dtype))
        inits += [lo, hi]
        nodes.append(helper.make_node("Clip", [shifted, lo.name, hi.name], [out], name=clip_name))
    else:
        nodes.append(helper.make_node("Clip", [shifted], [out], name=clip_name, min=0.0, max=1.0))
    return nodes, inits


class HardSigmoidPass(RewritePass):
    """HardSigmoid(X) -> Clip(Add(Mul(X, alpha), beta), 0, 1)"""

    name = "hard-sigmoid"
    op_types = ("HardSigmoid",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        a = attrs(node)
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        nodes, inits = hard_sigmoid_nodes(graph, node, node.input[0], node.output[0], alpha, beta)
        return Change(
            remove=[node],
            add=nodes,
            initializers=inits,
            description=f"Mul {alpha:.6g}, Add {beta:.6g}, Clip [0, 1]",
        )
