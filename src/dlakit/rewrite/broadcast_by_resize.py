"""BroadcastByResizePass: ``Mul|Add|Sub(A[N,C,H,W], B[N,C,1,1])`` -> the op on ``Resize(B)``.

A squeeze-and-excitation gate multiplies a feature map by a per-channel vector computed at run
time. The DLA's elementwise layer takes two tensors of equal shape, but its resize layer takes
nearest-neighbour integer scales up to 32 (``resize_nearest_scale_max``). Resizing B from 1x1 to
H x W by nearest neighbour copies its one value to every pixel, so the elementwise op then sees
equal shapes and computes exactly what the broadcast did. H or W above the scale limit is reached
by a cascade of resizes whose scales multiply to it (160 = 32 x 5). Conditions: both operands
computed at run time (a constant operand is a Scale layer already), 4-D, one of them ``[N,C,1,1]``
and the other ``[N,C,H,W]``; opset >= 11; sizes whose prime factors fit the scale limit.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass
from dlakit.rewrite.global_pool_to_avgpool import window_factors


class BroadcastByResizePass(RewritePass):
    """Mul|Add|Sub(A[N,C,H,W], B[N,C,1,1]) -> Mul|Add|Sub(A, Resize_nearest(B, scales [1,1,H,W]))"""

    name = "broadcast-by-resize"
    op_types = ("Mul", "Add", "Sub")

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        if len(node.input) != 2 or any(graph.const(name) is not None for name in node.input):
            return None
        shapes = [graph.shape(name) for name in node.input]
        if any(s is None or len(s) != 4 for s in shapes) or shapes[0] == shapes[1]:
            return None
        small = next((i for i, s in enumerate(shapes) if s[2:] == (1, 1)), None)
        if small is None:
            return None
        big = shapes[1 - small]
        if shapes[small][:2] != big[:2]:
            return self.refuse(node, f"broadcast over N or C too ({shapes[0]} and {shapes[1]})")
        if graph.opset < 11:
            return self.refuse(node, f"opset {graph.opset} Resize has no nearest 'asymmetric' mode")
        limit = int(self.limits["resize_nearest_scale_max"])
        fh, fw = window_factors(big[2], limit), window_factors(big[3], limit)
        if fh is None or fw is None:
            return self.refuse(node, f"{big[2]}x{big[3]} has a prime factor above scale {limit}")
        stages = max(len(fh), len(fw))
        fh, fw = fh + [1] * (stages - len(fh)), fw + [1] * (stages - len(fw))
        roi = graph.initializer(f"{node.name}.roi", np.zeros(0, np.float32))
        inits, nodes, current = [roi], [], node.input[small]
        for index, (sh, sw) in enumerate(zip(fh, fw, strict=True)):
            scales = graph.initializer(
                f"{node.name}.scales{index}", np.array([1, 1, sh, sw], np.float32)
            )
            inits.append(scales)
            out = graph.fresh(f"{node.name}.expanded{index}")
            nodes.append(
                helper.make_node(
                    "Resize",
                    [current, roi.name, scales.name],
                    [out],
                    name=graph.fresh(f"{node.name}/resize{index}"),
                    mode="nearest",
                    coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor",
                )
            )
            current = out
        inputs = list(node.input)
        inputs[small] = current
        nodes.append(helper.make_node(node.op_type, inputs, list(node.output), name=node.name))
        steps = " then ".join(f"{sh}x{sw}" for sh, sw in zip(fh, fw, strict=True))
        return Change(
            remove=[node],
            add=nodes,
            initializers=inits,
            description=f"[N,C,1,1] operand resized (nearest, scale {steps}) to {big[2]}x{big[3]}",
        )
