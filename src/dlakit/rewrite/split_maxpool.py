"""SplitMaxPoolPass: ``MaxPool(X, k > 8, stride 1) -> MaxPool(k1) ∘ MaxPool(k2) ∘ ...`` (SPPF).

At stride 1 a max pool's window at output i covers inputs ``[i - b, i - b + k - 1]`` (b = begin
pad; padding is -inf, so it never wins). Chaining two stride-1 max pools (k1, b1, e1) and
(k2, b2, e2)
gives the window ``[i - b1 - b2, i - b1 - b2 + (k1 - 1) + (k2 - 1)]``: windows compose by adding
``k - 1`` and the pads. Clipping at the borders composes too, provided no window lies wholly in the
padding (``b_i, e_i <= k_i - 1``). So 9x9 pad 4 = two 5x5 pad 2, and 13x13 pad 6 = three 5x5 pad 2.
When X already feeds a smaller stride-1 max pool (the SPP block: 5, 9, 13 on one tensor), the
chain starts from that pool's output, which turns SPP into SPPF. Conditions, per spatial axis:
stride 1, dilation 1, pads ``<= k - 1``, one output (no Indices); ``auto_pad`` is resolved first.
"""

from __future__ import annotations

import math

import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass

Window = tuple[int, int, int]  # (kernel, pad_begin, pad_end) along one axis


def pool_windows(graph: Graph, node: onnx.NodeProto) -> list[Window] | str:
    """Per spatial axis (k, begin, end) of a stride-1 MaxPool, or the reason it is not one."""
    a = attrs(node)
    kernel = list(a.get("kernel_shape", []))
    rank = len(kernel)
    if rank == 0:
        return "no kernel_shape"
    if any(s != 1 for s in a.get("strides", [1] * rank)):
        return f"stride {a.get('strides')} is not 1"
    if any(d != 1 for d in a.get("dilations", [1] * rank)):
        return f"dilation {a.get('dilations')} is not 1"
    if len([o for o in node.output if o]) > 1:
        return "the Indices output is used"
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [k - 1 for k in kernel]
        small = [t // 2 for t in totals]
        begins = (
            small
            if auto_pad == "SAME_UPPER"
            else [t - s for t, s in zip(totals, small, strict=True)]
        )
        pads = begins + [t - b for t, b in zip(totals, begins, strict=True)]
    elif auto_pad == "VALID":
        pads = [0] * (2 * rank)
    else:
        pads = list(a.get("pads", [0] * (2 * rank)))
    windows = [(kernel[i], pads[i], pads[i + rank]) for i in range(rank)]
    if any(b > k - 1 or e > k - 1 for k, b, e in windows):
        return f"pads {pads} reach past the window {kernel} (a window lies wholly in padding)"
    return windows


def split_axis(kernel: int, begin: int, end: int, stages: int) -> list[Window]:
    """Spread k - 1, the begin pad and the end pad evenly over ``stages`` windows."""

    def spread(total: int) -> list[int]:
        return [total // stages + (i < total % stages) for i in range(stages)]

    return [
        (w + 1, b, e)
        for w, b, e in zip(spread(kernel - 1), spread(begin), spread(end), strict=True)
    ]


class SplitMaxPoolPass(RewritePass):
    """MaxPool(X, k > limit, stride 1) -> chain of stride-1 MaxPools whose (k_i - 1) sum to k - 1"""

    name = "split-maxpool"
    op_types = ("MaxPool",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        limit = int(self.limits["pool_window_max"])
        kernel = attrs(node).get("kernel_shape", [])
        if all(k <= limit for k in kernel):
            return None
        windows = pool_windows(graph, node)
        if isinstance(windows, str):
            return self.refuse(node, f"window {kernel} exceeds {limit}, but {windows}")
        start, start_windows, via = self._best_sibling(graph, node, windows)
        rest = [
            (k - sk + 1, b - sb, e - se)
            for (k, b, e), (sk, sb, se) in zip(windows, start_windows, strict=True)
        ]
        stages = max(math.ceil((k - 1) / (limit - 1)) for k, _, _ in rest)
        per_axis = [split_axis(k, b, e, stages) for k, b, e in rest]
        new_nodes, sizes = [], []
        for index in range(stages):
            stage = [axis[index] for axis in per_axis]
            sizes.append("x".join(str(k) for k, _, _ in stage))
            out = node.output[0] if index == stages - 1 else graph.fresh(f"{node.name}.max{index}")
            new_nodes.append(
                helper.make_node(
                    "MaxPool",
                    [start],
                    [out],
                    name=graph.fresh(f"{node.name}/maxpool{index}"),
                    kernel_shape=[k for k, _, _ in stage],
                    pads=[b for _, b, _ in stage] + [e for _, _, e in stage],
                    strides=[1] * len(stage),
                )
            )
            start = out
        source = f" after {via}'s output" if via else ""
        window = "x".join(map(str, kernel))
        return Change(
            remove=[node],
            add=new_nodes,
            description=f"{window} window as MaxPool {' then '.join(sizes)}{source}",
        )

    def _best_sibling(
        self, graph: Graph, node: onnx.NodeProto, windows: list[Window]
    ) -> tuple[str, list[Window], str | None]:
        """The largest stride-1 max pool on the same input whose window fits inside ours."""
        best: tuple[str, list[Window], str | None] = (
            node.input[0],
            [(1, 0, 0)] * len(windows),
            None,
        )
        for other in graph.consumers.get(node.input[0], []):
            if other is node or other.op_type != "MaxPool" or other.input[0] != node.input[0]:
                continue
            theirs = pool_windows(graph, other)
            if isinstance(theirs, str) or len(theirs) != len(windows):
                continue
            fits = all(
                sk <= k and sb <= b and se <= e and (k - sk) >= (b - sb) and (k - sk) >= (e - se)
                for (k, b, e), (sk, sb, se) in zip(windows, theirs, strict=True)
            )
            grows = sum(k for k, _, _ in theirs) > sum(k for k, _, _ in best[1])
            if fits and grows and theirs != windows:
                best = (other.output[0], theirs, other.name)
        return best
