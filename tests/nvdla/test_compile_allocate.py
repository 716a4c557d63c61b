"""memory allocation: buffers alive at the same time never share bytes; reuse actually happens."""

import numpy as np

from dlakit.nvdla.allocate import ALIGN, Buffer, align, place


def test_live_buffers_never_overlap_and_dead_ones_are_reused():
    rng = np.random.default_rng(0)
    buffers = []
    for i in range(200):
        first = int(rng.integers(0, 100))
        buffers.append(Buffer(f"t{i}", int(rng.integers(1, 50_000)), first,
                              first + int(rng.integers(0, 10))))  # fmt: skip
    peak = place(buffers)
    for a in buffers:
        assert a.offset % ALIGN == 0 and a.offset + a.size <= peak
        for b in buffers:
            if a is b or a.last < b.first or b.last < a.first:
                continue
            assert a.offset + align(a.size) <= b.offset or b.offset + align(b.size) <= a.offset
    # Reuse: the allocation is far smaller than every buffer side by side.
    assert peak < 0.5 * sum(align(b.size) for b in buffers)
