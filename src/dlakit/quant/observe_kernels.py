"""The calibration passes' per-value work as compiled loops (numba, CPU), in parallel.

Both passes read an *arena*: a float32 array of rows, one row per model run, holding every
calibrated tensor's values at its offset (:class:`dlakit.quant.observe.Layout`). The work is
split into items of about :data:`ITEM_VALUES` values (one tensor, some rows, some of its
elements), sorted by tensor; thread ``k`` of ``n`` takes items ``k, k + n, ...``, so a call
covers every tensor of every row at once instead of one call per tensor and run.

- :func:`ranges`: per tensor the least and largest value, found as integer keys (the float32
  bit pattern with the lower 31 bits flipped where the sign is set orders like the float, and
  integer min and max vectorise where float min and max with NaN rules do not). NaN sorts past
  the infinities, so the extremes tell whether a tensor holds NaN or infinite values.
- :class:`Histograms`: per tensor the |x| and signed histograms with the same float32
  arithmetic as :func:`dlakit.quant.observe.reference_histograms` (``(x + absmax) *
  signed_factor`` and ``|x| * factor``, truncated to bin indices), so every count is the same;
  ``tests/quant/test_calib_fast.py`` checks both against numpy on random and real tensors.
"""

from __future__ import annotations

import numba
import numpy as np

from dlakit.system import numba_thread_pool

numba_thread_pool()

ITEM_VALUES = 1 << 16  # values per work item: enough to amortise a histogram flush
_BLOCK = 512  # bin indices computed (vectorised) per block before they are counted
_COPIES = 4  # interleaved local histograms: breaks the chains of increments to one bin
_BINS, _SIGNED_BINS = 2048, 4095  # calibrators.NUM_BINS and SIGNED_BINS (checked by Histograms)
_KEY_MAX = np.iinfo(np.int32).max
_KEY_MIN = np.iinfo(np.int32).min
# Which histograms a pass fills: a method reads one (entropy the signed, percentile the |x|),
# and each costs about half the pass.
ABS, SIGNED = 1, 2


def work_items(sizes: np.ndarray, rows: int) -> np.ndarray:
    """Items (tensor, first row, end row, first element, end element) covering ``rows`` rows
    of every tensor of ``sizes`` values: a large tensor split within each row, small ones over
    several rows."""
    items = []
    for tensor, size in enumerate(int(s) for s in sizes):
        if size == 0:
            continue
        if size >= ITEM_VALUES:
            for row in range(rows):
                for lo in range(0, size, ITEM_VALUES):
                    items.append((tensor, row, row + 1, lo, min(size, lo + ITEM_VALUES)))
        else:
            per_item = max(1, ITEM_VALUES // size)
            for row in range(0, rows, per_item):
                items.append((tensor, row, min(rows, row + per_item), 0, size))
    return np.array(items, dtype=np.int64).reshape(-1, 5)


@numba.njit(cache=True)
def _extremes(bits, a, b):
    """The least and largest key of ``bits`` and (a, b): integer min and max vectorise."""
    for i in range(bits.size):
        v = bits[i]
        # numba widens int32 arithmetic to int64; the cast keeps the vectors int32.
        key = np.int32(v ^ ((v >> 31) & 0x7FFFFFFF))
        a = min(a, key)
        b = max(b, key)
    return a, b


@numba.njit("void(float32[:, ::1], int64[::1], int64[:, ::1], int32[:, ::1], int32[:, ::1])",
            cache=True, parallel=True)  # fmt: skip
def _ranges(arena, offsets, items, low, high):
    bits = arena.view(np.int32)
    threads = low.shape[0]
    for k in numba.prange(threads):
        for j in range(k, items.shape[0], threads):
            tensor, r0, r1, lo, hi = items[j]
            a, b = low[k, tensor], high[k, tensor]
            start = offsets[tensor]
            for row in range(r0, r1):
                a, b = _extremes(bits[row, start + lo : start + hi], a, b)
            low[k, tensor], high[k, tensor] = a, b


def ranges(arena: np.ndarray, offsets: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, ...]:
    """(least, largest) float32 value per tensor over the rows of ``arena`` the items cover;
    a tensor no item covers gets (+inf, -inf)."""
    threads = numba.get_num_threads()
    low = np.full((threads, len(offsets)), _KEY_MAX, dtype=np.int32)
    high = np.full((threads, len(offsets)), _KEY_MIN, dtype=np.int32)
    _ranges(arena, offsets, items, low, high)
    keys = np.stack([low.min(axis=0), high.max(axis=0)])
    values = (keys ^ ((keys >> 31) & 0x7FFFFFFF)).view(np.float32)
    values[values == 0] = 0.0  # -0.0 sorts below 0.0 as a key; an extreme of zero is 0.0
    empty = low.min(axis=0) == _KEY_MAX
    values[0, empty], values[1, empty] = np.inf, -np.inf
    return values[0], values[1]


@numba.njit(cache=True)
def _flush(local, local_signed, counts, signed):
    bins, signed_bins = counts.size, signed.size
    for copy in range(_COPIES):
        for b in range(bins):
            counts[b] += local[copy * bins + b]
            local[copy * bins + b] = 0
        for b in range(signed_bins):
            signed[b] += local_signed[copy * signed_bins + b]
            local_signed[copy * signed_bins + b] = 0


@numba.njit(cache=True)
def _bin_indices(values, clip, low, high, absmax, factor, signed_factor, index, signed_index,
                 fill):  # fmt: skip
    """Bin indices of ``values`` (clipped to [low, high] first if ``clip``) into the local
    histograms ``fill`` names (ABS, SIGNED or both), copy ``i % _COPIES`` for value i. The
    clamps come before the truncation, in float32: the same indices as truncating first
    (every bin index is >= 0), and they vectorise; unsigned indices spare the scatter loops
    numba's negative-index checks."""
    top = np.float32(_BINS - 1)
    signed_top = np.float32(_SIGNED_BINS - 1)
    zero = np.float32(0)
    if fill & SIGNED:
        for i in range(values.size):
            v = min(max(values[i], low), high) if clip else values[i]
            copy = np.uint32(i & (_COPIES - 1))
            signed_index[i] = np.uint32(min(max((v + absmax) * signed_factor, zero), signed_top))
            signed_index[i] += copy * np.uint32(_SIGNED_BINS)
    if fill & ABS:
        for i in range(values.size):
            v = min(max(values[i], low), high) if clip else values[i]
            copy = np.uint32(i & (_COPIES - 1))
            index[i] = np.uint32(min(abs(v) * factor, top)) + copy * np.uint32(_BINS)


@numba.njit(
    "void(float32[:, ::1], int64[::1], int64[:, ::1], float32[::1], float32[::1], float32[::1],"
    " float32[::1], float32[::1], int64[:, :, ::1], int64[:, :, ::1], int64)",
    cache=True,
    parallel=True,
)
def _histograms(arena, offsets, items, low, high, absmax, factor, signed_factor, counts, signed,
                fill):  # fmt: skip
    threads = counts.shape[0]
    for k in numba.prange(threads):
        local = np.zeros(_COPIES * _BINS, dtype=np.int32)
        local_signed = np.zeros(_COPIES * _SIGNED_BINS, dtype=np.int32)
        index = np.empty(_BLOCK, dtype=np.uint32)
        signed_index = np.empty(_BLOCK, dtype=np.uint32)
        current = -1
        pending = 0  # values counted in the local histograms since the last flush
        for j in range(k, items.shape[0], threads):
            tensor, r0, r1, lo, hi = items[j]
            if tensor != current or pending + (r1 - r0) * (hi - lo) >= 1 << 30:
                if current >= 0:
                    _flush(local, local_signed, counts[k, current], signed[k, current])
                current, pending = tensor, 0
            pending += (r1 - r0) * (hi - lo)
            clip = low[tensor] > -np.inf or high[tensor] < np.inf
            start = offsets[tensor]
            for row in range(r0, r1):
                for b0 in range(start + lo, start + hi, _BLOCK):
                    values = arena[row, b0 : min(start + hi, b0 + _BLOCK)]
                    _bin_indices(values, clip, low[tensor], high[tensor], absmax[tensor],
                                 factor[tensor], signed_factor[tensor], index,
                                 signed_index, fill)  # fmt: skip
                    if fill & SIGNED:
                        for i in range(values.size):
                            local_signed[signed_index[i]] += 1
                    if fill & ABS:
                        for i in range(values.size):
                            local[index[i]] += 1
        if current >= 0:
            _flush(local, local_signed, counts[k, current], signed[k, current])


class Histograms:
    """Per-thread |x| and signed histograms of ``tensors`` tensors (those ``fill`` names: ABS,
    SIGNED or both; the other stays zero), filled by :meth:`add` over any number of calls and
    summed by :meth:`totals`."""

    def __init__(self, tensors: int, bins: int, signed_bins: int, fill: int = ABS | SIGNED):
        if (bins, signed_bins) != (_BINS, _SIGNED_BINS):
            raise ValueError(f"the compiled loops count {_BINS} and {_SIGNED_BINS} bins")
        if fill not in (ABS, SIGNED, ABS | SIGNED):
            raise ValueError(f"fill {fill}: ABS, SIGNED or both")
        self.fill = fill
        threads = numba.get_num_threads()
        self.counts = np.zeros((threads, tensors, bins), dtype=np.int64)
        self.signed = np.zeros((threads, tensors, signed_bins), dtype=np.int64)

    def add(
        self,
        arena: np.ndarray,
        offsets: np.ndarray,
        items: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        absmax: np.ndarray,
        factor: np.ndarray,
        signed_factor: np.ndarray,
    ) -> None:
        """Count the values the items cover, each clipped to its tensor's [low, high] first;
        ``offsets``, the bounds, ``absmax`` and the factors are per tensor (float32)."""
        _histograms(arena, offsets, items, low, high, absmax, factor, signed_factor,
                    self.counts, self.signed, self.fill)  # fmt: skip

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """(counts, signed) per tensor, over every thread."""
        return self.counts.sum(axis=0), self.signed.sum(axis=0)
