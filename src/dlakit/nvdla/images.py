"""Memory images of constants in the hardware layouts.

* Direct-convolution weights (``nvdla.md`` §3): kernels in groups of ``atomic_k``; inside a
  group, channel blocks of ``atomic_c`` (the last one partial), then R, then S, then the group's
  kernels, then the block's channels; the image is padded to 128 bytes (CDMA fetch unit). FP16
  weights take the same order in 2-byte elements with the 16-bit atomic K (``sim/conv.py``
  reads them so; the official 16-bit regression loadables pass through it bit-exactly).
* SDP per-channel operands read by the B/N-RDMA in ``PER_KERNEL`` mode: one INT16 (two bytes,
  little endian) per channel, or an (ALU, MUL) pair per channel when both are per-channel.
"""

from __future__ import annotations

import numpy as np

WEIGHT_ALIGN = 128


def _group_bytes(w: np.ndarray, atomic_c: int) -> np.ndarray:
    """Kernel groups (G, gk, C, R, S) -> (G, bytes): full channel blocks, then the partial one,
    each ordered R -> S -> kernel -> channel."""
    g, gk, c, r, s = w.shape
    full = c - c % atomic_c
    blocks = w[:, :, :full].reshape(g, gk, full // atomic_c, atomic_c, r, s)
    parts = [blocks.transpose(0, 2, 4, 5, 1, 3).reshape(g, gk * full * r * s)]
    if full < c:
        parts.append(w[:, :, full:].transpose(0, 3, 4, 1, 2).reshape(g, gk * (c - full) * r * s))
    return np.concatenate(parts, axis=1)


def pack_weights(w: np.ndarray, atomic_k: int, atomic_c: int) -> bytes:
    """INT8 or FP16 weights (K, C, R, S) as the CDMA reads them (FP16: little-endian elements,
    ``atomic_k`` the 16-bit atomic K, blocks of ``atomic_c`` elements)."""
    k, c, r, s = w.shape
    per_align = WEIGHT_ALIGN // w.dtype.itemsize
    out = np.zeros(-(-(k * c * r * s) // per_align) * per_align, dtype=w.dtype.newbyteorder("<"))
    whole = k - k % atomic_k
    head = _group_bytes(w[:whole].reshape(whole // atomic_k, atomic_k, c, r, s), atomic_c)
    out[: head.size] = head.reshape(-1)
    if whole < k:  # the last, partial kernel group
        tail = _group_bytes(w[whole:][None], atomic_c).reshape(-1)
        out[head.size : head.size + tail.size] = tail
    return out.tobytes()


def pack_operands(first: np.ndarray, second: np.ndarray | None, channels: int) -> bytes:
    """INT16 per-channel operands padded to ``channels``; pairs interleave (first, second)."""
    cols = [first] if second is None else [first, second]
    table = np.zeros((channels, len(cols)), dtype="<i2")
    for i, col in enumerate(cols):
        table[: len(col), i] = np.asarray(col, dtype=np.int64)
    return table.tobytes()
