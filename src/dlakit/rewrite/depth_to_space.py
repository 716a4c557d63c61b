"""DepthToSpaceToConvTransposePass: ``DepthToSpace(X, b) -> ConvTranspose(X, one-hot W)``.

A transposed convolution with kernel = stride = b writes each input pixel's C channels to a
b x b output block: ``Y[co, h*b + i, w*b + j] = sum_ci X[ci, h, w] * W[ci, co, i, j]``. Choosing
``W[ci, co, i, j] = 1`` exactly when input channel ci holds output channel co at offset (i, j)
reproduces DepthToSpace: ``ci = (i*b + j) * C' + co`` in DCR mode, ``ci = co*b*b + i*b + j`` in
CRD mode (C' = C / b^2). One-hot sums are exact. The recipe is NVIDIA's DLA-SW op_reconstruction
(DepthToSpace.py). Conditions: 4-D input, C divisible by b^2, b within the deconvolution
kernel limit.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


def one_hot_blocks(channels: int, block: int, crd: bool) -> np.ndarray:
    """Weights [C, C / b^2, b, b]: 1 where input channel ci lands at (co, i, j)."""
    out_c = channels // (block * block)
    weight = np.zeros((channels, out_c, block, block), np.float32)
    for co in range(out_c):
        for i in range(block):
            for j in range(block):
                ci = co * block * block + i * block + j if crd else (i * block + j) * out_c + co
                weight[ci, co, i, j] = 1.0
    return weight


class DepthToSpaceToConvTransposePass(RewritePass):
    """DepthToSpace(X, b) -> ConvTranspose(X, one-hot W[C, C/b^2, b, b], kernel = stride = b)"""

    name = "depth-to-space-to-deconv"
    op_types = ("DepthToSpace",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        a = attrs(node)
        block = int(a["blocksize"])
        shape = graph.shape(node.input[0])
        if shape is None or len(shape) != 4:
            return self.refuse(node, f"input is not 4-D NCHW (shape {shape})")
        if shape[1] % (block * block):
            return self.refuse(
                node, f"{shape[1]} channels do not split into {block}x{block} blocks"
            )
        if block > int(self.limits["deconv_kernel_max"]):
            return self.refuse(node, f"block {block} exceeds the deconvolution kernel limit")
        crd = a.get("mode", "DCR") == "CRD"
        dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.dtypes.get(node.input[0], 1))
        weight = graph.initializer(
            f"{node.name}.onehot", one_hot_blocks(shape[1], block, crd).astype(dtype)
        )
        new = helper.make_node(
            "ConvTranspose",
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
            description=f"{'CRD' if crd else 'DCR'}, block {block}: a one-hot "
            f"ConvTranspose {block}x{block} stride {block}",
        )
