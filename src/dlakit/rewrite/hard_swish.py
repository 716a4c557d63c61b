"""HardSwishPass: ``HardSwish(X) -> Mul(X, Clip(Add(Mul(X, 1/6), 0.5), 0, 1))``.

ONNX defines ``HardSwish(x) = x * HardSigmoid(x)`` with alpha = 1/6 and beta = 0.5. TensorRT has no
DLA HardSwish; the replacement uses a Scale layer (Mul/Add by constants), a clipped ReLU (Clip) and
an elementwise product of two tensors, all DLA layers. Conditions: none beyond a float input.
"""

from __future__ import annotations

import onnx
from onnx import helper

from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass
from dlakit.rewrite.hard_sigmoid import hard_sigmoid_nodes


class HardSwishPass(RewritePass):
    """HardSwish(X) -> Mul(X, Clip(Add(Mul(X, 1/6), 0.5), 0, 1))"""

    name = "hard-swish"
    op_types = ("HardSwish",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        gate = graph.fresh(f"{node.name}.gate")
        nodes, inits = hard_sigmoid_nodes(graph, node, node.input[0], gate, 1.0 / 6.0, 0.5)
        nodes.append(
            helper.make_node(
                "Mul",
                [node.input[0], gate],
                list(node.output),
                name=graph.fresh(f"{node.name}/mul_x"),
            )
        )
        return Change(
            remove=[node],
            add=nodes,
            initializers=inits,
            description="x * Clip(x/6 + 0.5, 0, 1): Mul, Add, Clip, Mul",
        )
