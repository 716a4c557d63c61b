"""Memory images of constants in the hardware layouts.

* Direct-convolution weights (``nvdla.md`` §3): kernels in groups of ``atomic_k``; inside a
  group, channel blocks of ``atomic_c`` (the last one partial), then R, then S, then the group's
  kernels, then the block's channels; the image is padded to 128 bytes (CDMA fetch unit).
* SDP per-channel operands read by the B/N-RDMA in ``PER_KERNEL`` mode: one INT16 (two bytes,
  little endian) per channel, or an (ALU, MUL) pair per channel when both are per-channel.
"""

from __future__ import annotations

import numpy as np

WEIGHT_ALIGN = 128


def pack_weights(w: np.ndarray, atomic_k: int, atomic_c: int) -> bytes:
    """INT8 weights (K, C, R, S) as the CDMA reads them."""
    k, c, r, s = w.shape
    out = np.zeros(-(-(k * c * r * s) // WEIGHT_ALIGN) * WEIGHT_ALIGN, dtype=np.int8)
    pos = 0
    for k0 in range(0, k, atomic_k):
        group = w[k0 : k0 + atomic_k]  # (gk, C, R, S)
        for c0 in range(0, c, atomic_c):
            block = group[:, c0 : c0 + atomic_c]  # (gk, bc, R, S)
            # order R -> S -> kernel -> channel
            flat = np.ascontiguousarray(block.transpose(2, 3, 0, 1)).reshape(-1)
            out[pos : pos + flat.size] = flat
            pos += flat.size
    return out.tobytes()


def pack_operands(first: np.ndarray, second: np.ndarray | None, channels: int) -> bytes:
    """INT16 per-channel operands padded to ``channels``; pairs interleave (first, second)."""
    cols = [first] if second is None else [first, second]
    table = np.zeros((channels, len(cols)), dtype="<i2")
    for i, col in enumerate(cols):
        table[: len(col), i] = np.asarray(col, dtype=np.int64)
    return table.tobytes()
