"""SpaceToDepthToConvPass: ``SpaceToDepth(X, b) -> Conv(X, one-hot W, kernel = stride = b)``.

``Y[(i*b + j)*C + c, h, w] = X[c, h*b + i, w*b + j]``: a convolution with kernel = stride = b and
weights ``W[(i*b + j)*C + c, c, i, j] = 1`` (zero elsewhere) computes exactly that, since every
output is one input times 1 plus zeros. The recipe is NVIDIA's DLA-SW op_reconstruction
(SpaceToDepth.py). Conditions: 4-D input, H and W divisible by b, b within the conv kernel and
stride limits.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


def one_hot_gather(channels: int, block: int) -> np.ndarray:
    """Weights [C*b^2, C, b, b]: output channel (i*b + j)*C + c reads channel c at (i, j)."""
    weight = np.zeros((channels * block * block, channels, block, block), np.float32)
    for i in range(block):
        for j in range(block):
            for c in range(channels):
                weight[(i * block + j) * channels + c, c, i, j] = 1.0
    return weight


class SpaceToDepthToConvPass(RewritePass):
    """SpaceToDepth(X, b) -> Conv(X, one-hot W[C*b^2, C, b, b], kernel = stride = b)"""

    name = "space-to-depth-to-conv"
    op_types = ("SpaceToDepth",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        block = int(attrs(node)["blocksize"])
        shape = graph.shape(node.input[0])
        if shape is None or len(shape) != 4:
            return self.refuse(node, f"input is not 4-D NCHW (shape {shape})")
        if shape[2] % block or shape[3] % block:
            return self.refuse(node, f"H x W {shape[2]}x{shape[3]} is not divisible by {block}")
        if block > min(int(self.limits["conv_kernel_max"]), int(self.limits["conv_stride_max"])):
            return self.refuse(node, f"block {block} exceeds the conv kernel/stride limits")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.dtypes.get(node.input[0], 1))
        weight = graph.initializer(
            f"{node.name}.onehot", one_hot_gather(shape[1], block).astype(dtype)
        )
        new = helper.make_node(
            "Conv",
            [node.input[0], weight.name],
            list(node.output),
            name=node.name,
            kernel_shape=[block, block],
            strides=[block, block],
        )
        return Change(
            remove=[node],
            add=[new],
            initializers=[weight],
            description=f"block {block}: a one-hot Conv, kernel = stride = {block}",
        )
