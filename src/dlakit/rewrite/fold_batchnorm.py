"""FoldBatchNormPass: ``BatchNormalization(Conv(X, W, B)) -> Conv(X, W', B')``.

With ``s = gamma / sqrt(var + eps)``: ``W' = W * s`` (per output channel) and
``B' = (B - mean) * s + beta``. Conditions: inference-mode BatchNormalization (one output), the Conv
output read by nothing else, every BatchNormalization parameter and the Conv weights constant.
A BatchNormalization not fed by such a Conv is left alone: the DLA runs it as a Scale layer.
"""

from __future__ import annotations

import numpy as np
import onnx

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


class FoldBatchNormPass(RewritePass):
    """BatchNormalization(Conv(X, W, B)) -> Conv(X, W * s, (B - mean) * s + beta)"""

    name = "fold-batchnorm"
    op_types = ("BatchNormalization",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        conv = graph.producer.get(node.input[0])
        if conv is None or conv.op_type != "Conv":
            return None
        if len([o for o in node.output if o]) != 1 or attrs(node).get("training_mode", 0):
            return self.refuse(node, "training-mode BatchNormalization (extra outputs)")
        if graph.only_consumer(conv.output[0]) is not node:
            return self.refuse(node, f"Conv {conv.name} output is also read by other nodes")
        params = [graph.const(name) for name in node.input[1:5]]
        if any(p is None for p in params):
            return self.refuse(node, "scale, bias, mean or variance is not a constant")
        weight = graph.const(conv.input[1])
        if weight is None:
            return self.refuse(node, f"Conv {conv.name} weights are not a constant")
        bias = graph.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if len(conv.input) > 2 and conv.input[2] and bias is None:
            return self.refuse(node, f"Conv {conv.name} bias is not a constant")
        gamma, beta, mean, var = (p.astype(np.float64) for p in params)  # type: ignore[union-attr]
        eps = float(attrs(node).get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        dtype = weight.dtype
        shape = (-1,) + (1,) * (weight.ndim - 1)
        new_w = (weight.astype(np.float64) * scale.reshape(shape)).astype(dtype)
        old_b = np.zeros_like(mean) if bias is None else bias.astype(np.float64)
        new_b = ((old_b - mean) * scale + beta).astype(dtype)
        w_init = graph.initializer(f"{conv.name}.weight_bn", new_w)
        b_init = graph.initializer(f"{conv.name}.bias_bn", new_b)
        fused = onnx.NodeProto()
        fused.CopyFrom(conv)
        del fused.input[:]
        fused.input.extend([conv.input[0], w_init.name, b_init.name])
        fused.output[0] = node.output[0]
        return Change(
            remove=[conv, node],
            add=[fused],
            initializers=[w_init, b_init],
            description=f"scale and shift folded into the weights and bias of {conv.name}",
        )
