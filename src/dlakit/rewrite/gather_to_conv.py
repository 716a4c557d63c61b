"""GatherToConvPass: ``Gather(X, I, axis=1)`` with constant indices -> one-hot 1x1 ``Conv``.

Selecting channels ``I`` of an NCHW tensor is a 1x1 convolution with weights
``W[k, c] = 1 if c == I[k]`` (zero elsewhere); each output is one input times 1 plus zeros, so the
result is exact (repeated and reordered indices work too). The recipe is NVIDIA's DLA-SW
op_reconstruction (Gather.py), there also for axes 2 and 3 through Transposes. Conditions: 4-D
input, axis 1, a constant 1-D index tensor. Scalar indices (which drop the axis) and other axes are
refused.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


class GatherToConvPass(RewritePass):
    """Gather(X[N,C,H,W], I, axis=1) -> Conv1x1(X, one-hot W[len(I), C, 1, 1])"""

    name = "gather-to-conv"
    op_types = ("Gather",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        shape = graph.shape(node.input[0])
        indices = graph.const(node.input[1])
        if shape is None or len(shape) != 4:
            return None  # not a feature map: shape arithmetic, embeddings, ...
        axis = attrs(node).get("axis", 0) % 4
        if axis != 1:
            return self.refuse(node, f"gathers along axis {axis}, not channels (axis 1)")
        if indices is None:
            return self.refuse(node, "indices are computed at run time")
        if indices.ndim != 1:
            return self.refuse(node, f"indices of rank {indices.ndim} (only a 1-D list keeps NCHW)")
        channels = shape[1]
        picks = np.where(indices < 0, indices + channels, indices)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.dtypes.get(node.input[0], 1))
        weight = np.zeros((len(picks), channels, 1, 1), dtype)
        weight[np.arange(len(picks)), picks, 0, 0] = 1
        init = graph.initializer(f"{node.name}.onehot", weight)
        new = helper.make_node(
            "Conv",
            [node.input[0], init.name],
            list(node.output),
            name=node.name,
            kernel_shape=[1, 1],
        )
        return Change(
            remove=[node],
            add=[new],
            initializers=[init],
            description=f"{len(picks)} of {channels} channels picked by a one-hot 1x1 Conv",
        )
