"""StridedSliceToConvPass: ``Slice(X, start a, step s)`` on H/W -> depthwise one-hot ``Conv``.

TensorRT's DLA Slice takes stride 1 only, so the space-to-depth "Focus" of YOLOv5/YOLOX
(``x[..., ::2, ::2]``, ``x[..., 1::2, ::2]``, ...) falls back to the GPU. A depthwise convolution
with kernel ``a + 1``, stride ``s`` and weight 1 at offset ``a`` (zero elsewhere) picks exactly
the inputs ``a, a + s, a + 2s, ...``: its ``floor((H - a - 1) / s) + 1`` outputs equal the slice's
``ceil((H - a) / s)``. Every output is one input times 1 plus zeros, so the result is exact.
Conditions: 4-D input, constant starts/ends/axes/steps, slicing H and/or W only, positive steps,
and each slice running to the end of its axis (the convolution cannot stop early); kernel and
stride within the conv limits.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


class StridedSliceToConvPass(RewritePass):
    """Slice(X, starts=a, steps=s>1 on H/W) -> Conv(X, one-hot W, kernel a+1, stride s, group C)"""

    name = "strided-slice-to-conv"
    op_types = ("Slice",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        if graph.opset < 10 or len(node.input) < 5 or not node.input[4]:
            return None  # no steps: a stride-1 slice, which the DLA takes as it is
        shape = graph.shape(node.input[0])
        values = [graph.const(name) if name else None for name in node.input[1:5]]
        if values[2] is None and not node.input[3] and values[0] is not None:
            values[2] = np.arange(len(values[0]))  # axes omitted: the first len(starts) axes
        if any(v is None for v in values):
            return self.refuse(node, "starts, ends, axes or steps are computed at run time")
        starts, ends, axes, steps = (np.asarray(v).astype(np.int64).tolist() for v in values)
        if all(s == 1 for s in steps):
            return None
        if shape is None or len(shape) != 4:
            return None  # not a feature map (shape arithmetic)
        offset, stride = [0, 0], [1, 1]
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            axis %= 4
            size = shape[axis]
            if axis < 2:
                return self.refuse(node, f"slices axis {axis} (N or C), not H or W")
            if step < 1:
                return self.refuse(node, f"step {step} on axis {axis} is not positive")
            first = min(max(start + size if start < 0 else start, 0), size)
            stop = min(max(end + size if end < 0 else end, 0), size)
            if len(range(first, stop, step)) != len(range(first, size, step)):
                return self.refuse(
                    node, f"slice on axis {axis} stops at {stop} before the end {size}"
                )
            offset[axis - 2], stride[axis - 2] = first, step
        kernel = [o + 1 for o in offset]
        if max(kernel) > int(self.limits["conv_kernel_max"]) or max(stride) > int(
            self.limits["conv_stride_max"]
        ):
            return self.refuse(node, f"kernel {kernel} or stride {stride} exceeds the conv limits")
        channels = shape[1]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(graph.dtypes.get(node.input[0], 1))
        weight = np.zeros((channels, 1, kernel[0], kernel[1]), dtype)
        weight[:, 0, offset[0], offset[1]] = 1
        init = graph.initializer(f"{node.name}.onehot", weight)
        new = helper.make_node(
            "Conv",
            [node.input[0], init.name],
            list(node.output),
            name=node.name,
            kernel_shape=kernel,
            strides=stride,
            group=channels,
        )
        return Change(
            remove=[node],
            add=[new],
            initializers=[init],
            description=f"offset {offset} step {stride}: a depthwise one-hot Conv "
            f"{kernel[0]}x{kernel[1]} stride {stride[0]}x{stride[1]}",
        )
