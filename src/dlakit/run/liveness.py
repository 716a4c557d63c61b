"""When each value of a host graph dies, and how many bytes per image are alive at once.

A fallback segment is a chain of elementwise ops on full activation maps (a residual Add on
nv_small is ~14 nodes, half of them float64): kept to the end of the segment, every
intermediate of a batch stays resident together. The engines drop each value after its last use
(:class:`Liveness`), and the runner plans the batch by :attr:`Liveness.peak_bytes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx


class Liveness:
    """For a node list: the values to drop after each node, and the largest number of bytes
    per image (batch axis 1) alive at once while it runs, inputs included, constants not."""

    def __init__(self, model: onnx.ModelProto, keep: Iterable[str] = ()) -> None:
        g = model.graph
        consts = {t.name for t in g.initializer}
        kept = set(keep) | {o.name for o in g.output}
        last: dict[str, int] = {}
        for index, node in enumerate(g.node):
            for name in node.input:
                if name and name not in consts:
                    last[name] = index
        self.drops: list[list[str]] = [[] for _ in g.node]
        for name, index in last.items():
            if name not in kept:
                self.drops[index].append(name)
        sizes = _image_bytes(model)
        live = {i.name for i in g.input if i.name not in consts}
        peak = sum(sizes.get(n, 0) for n in live)
        for node, drops in zip(g.node, self.drops, strict=True):
            live.update(n for n in node.output if n)
            peak = max(peak, sum(sizes.get(n, 0) for n in live))
            live.difference_update(drops)
            # An output nothing reads dies at once (after it was counted above).
            live.difference_update(n for n in node.output if n not in last and n not in kept)
        self.peak_bytes = peak


def drop(values: dict, names: Sequence[str]) -> None:
    for name in names:
        values.pop(name, None)


def _image_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Bytes of each value for one image (the leading axis, symbolic or not, counts as 1)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    sizes = {}
    for value in [*g.input, *g.value_info, *g.output]:
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim][1:]
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize if t.elem_type else 8
        sizes[value.name] = int(np.prod(dims, dtype=np.int64)) * itemsize
    return sizes
