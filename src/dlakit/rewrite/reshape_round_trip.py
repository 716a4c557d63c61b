"""ReshapeRoundTripPass: ``Reshape(f(Reshape(X, B)), A) -> f(X)`` when X has shape A and f is a
chain of elementwise ops of one input.

An elementwise op of one input computes each element alone, so it gives the same values in any
shape: a reshape to B, the ops, and a reshape back to X's own shape A are the ops on X. Such round
trips appear between fully-connected layers once ``gemm-to-conv`` has turned them into 1x1
convolutions (``[N, M, 1, 1] -> [N, M] -> Relu -> [N, M, 1, 1]``); TensorRT runs the rank-changing
reshapes on the GPU (rule ``shuffle.rank``), so removing them keeps the classifier head on the DLA.
Conditions: every intermediate tensor has exactly one reader and is no graph output; Clip's bounds
are constants.
"""

from __future__ import annotations

import onnx

from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass

# Ops of one computed input whose every output element depends only on the same input element.
ELEMENTWISE = frozenset(
    {
        "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
        "Selu", "Softplus", "Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Erf",
        "Identity", "Dropout", "Gelu", "Mish", "ThresholdedRelu", "Celu",
    }
)  # fmt: skip


class ReshapeRoundTripPass(RewritePass):
    """Reshape(f(Reshape(X, B)), shape(X)) -> f(X) for elementwise f"""

    name = "reshape-round-trip"
    op_types = ("Reshape",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        chain: list[onnx.NodeProto] = []
        tensor = node.input[0]
        while True:
            producer = graph.producer.get(tensor)
            if producer is None or graph.only_consumer(tensor) is None:
                return None
            if producer.op_type == "Reshape":
                break
            if producer.op_type not in ELEMENTWISE or not self._one_data_input(graph, producer):
                return None
            chain.insert(0, producer)
            tensor = producer.input[0]
        first = graph.producer[tensor]
        source = first.input[0]
        src_shape, out_shape = graph.shape(source), graph.shape(node.output[0])
        if src_shape is None or out_shape is None:
            return self.refuse(node, "shapes unknown")
        if tuple(src_shape) != tuple(out_shape):
            return None  # not a round trip
        add = []
        for index, op in enumerate(chain):
            copy = onnx.NodeProto()
            copy.CopyFrom(op)
            if index == 0:
                copy.input[0] = source
            if index == len(chain) - 1:
                copy.output[0] = node.output[0]
            add.append(copy)
        if not add:
            add = [onnx.helper.make_node("Identity", [source], [node.output[0]], name=node.name)]
        ops = " -> ".join(op.op_type for op in chain) or "nothing"
        return Change(
            remove=[first, *chain, node],
            add=add,
            description=f"{ops} on the {list(src_shape)} tensor itself, both reshapes removed",
        )

    @staticmethod
    def _one_data_input(graph: Graph, node: onnx.NodeProto) -> bool:
        rest = [name for name in node.input[1:] if name]
        return all(graph.const(name) is not None for name in rest)
