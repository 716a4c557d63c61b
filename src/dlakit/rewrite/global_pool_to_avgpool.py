"""GlobalPoolToAveragePoolPass: ``GlobalAveragePool`` / ``ReduceMean(axes=[2, 3])`` -> AveragePool.

TensorRT does not expose GlobalAveragePool on the DLA, but an AveragePool whose window is the whole
H x W plane computes the same mean. The DLA pools windows of at most 8 (``pool_window_max``), so a
larger plane is averaged by a cascade of non-overlapping pools (kernel = stride, no padding) whose
windows multiply to H and W exactly: 14 = 7 x 2, 20 = 5 x 4, 160 = 8 x 5 x 4. Every block has the
same size, so the mean of block means is the mean. Conditions: a 4-D input with static H, W; a
ReduceMean over exactly H and W (``keepdims = 0`` adds a Reshape to ``[N, C]``). H or W with a
prime factor above the window limit (e.g. 13) cannot be factored and is refused with that reason.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


def window_factors(size: int, limit: int) -> list[int] | None:
    """Factors of ``size``, each <= ``limit``, largest first; None when a prime factor is larger."""
    factors: list[int] = []
    while size > limit:
        divisor = next((d for d in range(limit, 1, -1) if size % d == 0), None)
        if divisor is None:
            return None
        factors.append(divisor)
        size //= divisor
    if size > 1 or not factors:
        factors.append(size)
    return factors


class GlobalPoolToAveragePoolPass(RewritePass):
    """GlobalAveragePool(X) | ReduceMean(X, axes=[2,3]) -> AveragePool(k = H x W), or a cascade"""

    name = "global-pool-to-avgpool"
    op_types = ("GlobalAveragePool", "ReduceMean")

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        shape = graph.shape(node.input[0])
        keepdims = True
        if node.op_type == "ReduceMean":
            a = attrs(node)
            axes = a.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                value = graph.const(node.input[1])
                if value is None:
                    return self.refuse(node, "axes are computed at run time")
                axes = value.tolist()
            if axes is None or shape is None:
                return None
            if sorted(ax % len(shape) for ax in axes) != [2, 3] or len(shape) != 4:
                return None
            keepdims = bool(a.get("keepdims", 1))
        if shape is None or len(shape) != 4:
            return self.refuse(node, f"input is not 4-D NCHW (shape {shape})")
        limit = int(self.limits["pool_window_max"])
        n, c, h, w = shape
        fh, fw = window_factors(h, limit), window_factors(w, limit)
        if fh is None or fw is None:
            bad = h if fh is None else w
            return self.refuse(
                node,
                f"{bad} has a prime factor above the {limit}-wide pool window: no exact cascade",
            )
        stages = max(len(fh), len(fw))
        fh += [1] * (stages - len(fh))
        fw += [1] * (stages - len(fw))
        new_nodes, inits = [], []
        current = node.input[0]
        for index, (kh, kw) in enumerate(zip(fh, fw, strict=True)):
            last = index == stages - 1
            out = node.output[0] if last and keepdims else graph.fresh(f"{node.name}.avg{index}")
            new_nodes.append(
                helper.make_node(
                    "AveragePool",
                    [current],
                    [out],
                    name=graph.fresh(f"{node.name}/avgpool{index}"),
                    kernel_shape=[kh, kw],
                    strides=[kh, kw],
                )
            )
            current = out
        if not keepdims:
            shape2 = graph.initializer(f"{node.name}.shape2", np.array([n, c], np.int64))
            inits.append(shape2)
            new_nodes.append(
                helper.make_node(
                    "Reshape",
                    [current, shape2.name],
                    [node.output[0]],
                    name=graph.fresh(f"{node.name}/to2d"),
                )
            )
        windows = " then ".join(f"{kh}x{kw}" for kh, kw in zip(fh, fw, strict=True))
        return Change(
            remove=[node],
            add=new_nodes,
            initializers=inits,
            description=f"mean over {h}x{w} as AveragePool {windows}",
        )
