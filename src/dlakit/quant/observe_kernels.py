"""The histogram pass's per-value work as a compiled loop (numba, CPU), in parallel.

:func:`histograms` fills the |x| and signed histograms of
:func:`dlakit.quant.observe.observe_histograms` in one pass, with the same float32 arithmetic
as its numpy code (``(x + absmax) * signed_factor`` and ``|x| * factor``, truncated to bin
indices), so every count is the same; ``tests/quant/test_calib_fast.py`` checks it against the
numpy code. (Min and max stay numpy's, which is vectorised already.)
"""

from __future__ import annotations

import numba
import numpy as np

from dlakit.system import numba_thread_pool

numba_thread_pool()

_CHUNKS = 64  # work items per pass at most: enough to balance the threads
_CHUNK_VALUES = 1 << 16  # values per work item at least: small tensors run in one


@numba.njit(cache=True)
def _bin_chunk(x, lo, hi, absmax, factor, signed_factor, counts, signed):
    """Bin x[lo:hi] into ``counts`` and ``signed``, leaving out the zeros; returns them."""
    bins, signed_bins = counts.size, signed.size
    # Four interleaved copies break the chains of increments to one bin, and zeros (half of a
    # ReLU's outputs; binned once at the end) go to an extra last bin instead of a branch:
    # 1.8x faster on ReLU outputs (measured), the same counts.
    local = np.zeros((4, bins + 1), dtype=np.int64)
    local_signed = np.zeros((4, signed_bins + 1), dtype=np.int64)
    zeros = 0
    for i in range(lo, hi):
        v = x[i]
        zero = v == 0
        zeros += zero
        s = min(max(np.intp((v + absmax) * signed_factor), 0), signed_bins - 1)
        c = min(np.intp(abs(v) * factor), bins - 1)
        copy = i & 3
        local_signed[copy, signed_bins if zero else s] += 1
        local[copy, bins if zero else c] += 1
    for copy in range(4):
        counts += local[copy, :bins]
        signed += local_signed[copy, :signed_bins]
    return zeros


@numba.njit(
    "int64(float32[::1], float32, float32, float32, int64[::1], int64[::1])",
    cache=True,
    parallel=True,
)
def _histograms(x, absmax, factor, signed_factor, counts, signed):
    n = x.size
    bins, signed_bins = counts.size, signed.size
    chunks = min(_CHUNKS, n // _CHUNK_VALUES + 1)
    local = np.zeros((chunks, bins), dtype=np.int64)
    local_signed = np.zeros((chunks, signed_bins), dtype=np.int64)
    zeros = np.zeros(chunks, dtype=np.int64)
    step = (n + chunks - 1) // chunks
    for t in numba.prange(chunks):
        zeros[t] = _bin_chunk(x, t * step, min(n, (t + 1) * step), absmax, factor,
                              signed_factor, local[t], local_signed[t])  # fmt: skip
    total = zeros.sum()
    counts += local.sum(axis=0)
    signed += local_signed.sum(axis=0)
    # 0 + absmax is absmax exactly, and |0| * factor is 0: the bins the zeros fall in.
    counts[0] += total
    zero_bin = np.intp((np.float32(0) + absmax) * signed_factor)
    signed[min(max(zero_bin, 0), signed_bins - 1)] += total
    return total


def histograms(
    x: np.ndarray,
    absmax: np.float32,
    factor: np.float32,
    signed_factor: np.float32,
    counts: np.ndarray,
    signed: np.ndarray,
) -> int:
    """Add ``x``'s values to ``counts`` (|x|) and ``signed``; returns how many are exactly 0."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    return int(_histograms(flat, absmax, factor, signed_factor, counts, signed))
