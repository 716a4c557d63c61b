"""Activation range (amax) from histograms: entropy (KL), percentile, max.

Every method works on the same summary of a tensor, a :class:`RangeHistogram`: counts of |x| in
``NUM_BINS`` equal bins over ``[0, absmax]`` (percentile, clipping statistics) and counts of x in
``SIGNED_BINS`` = 2 x 2048 - 1 equal bins over ``[-absmax, absmax]``, zero in the centre bin
(entropy), where ``absmax`` is the largest |x| seen over the whole calibration set. The INT8
scale is then ``amax / 127`` (symmetric, zero point 0), as TensorRT and the NVDLA compiler use it.

Entropy is the KL-divergence search NVIDIA described for TensorRT's calibrator (Migacz, "8-bit
Inference with TensorRT", GTC 2017), on the signed histogram as MXNet's and TVM's calibrators
implement it: for each candidate half-width ``i`` in 128..2047 bins, the reference P is the
window of ``2i + 1`` bins around zero with the counts beyond it added to its first (negative
outliers) and last (positive outliers) bin, and the candidate Q is the window merged into the
255 INT8 levels and spread back evenly over each level's non-empty bins. The ``i`` with the
smallest KL(P||Q) gives ``threshold = (i + 0.5) * bin_width``.

Why signed: folding to |x| puts a tensor's positive outliers in the same last bin as a spike of
negative values of the same magnitude. A constant image background (MNIST's -0.42 after
normalisation) is such a spike: on |x| the search then clips just past it, cutting every
stroke, and INT8 MNIST falls from 94.6% to 33% (measured); on the signed histogram the
outliers stay on their own side and the threshold covers the strokes.

The KL is computed in closed form per level with prefix sums, so all 1920 candidates cost
O(1920 x 255) instead of O(1920 x 4095), and the per-level logarithms once per level start and
width (16 x 4095), not per candidate (see :func:`entropy_divergences`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from dlakit.errors import DlakitError

NUM_BINS = 2048
NUM_LEVELS = 128  # INT8 magnitudes 0..127: the smallest half-width the entropy search tries
SIGNED_BINS = 2 * NUM_BINS - 1
SIGNED_LEVELS = 255  # INT8 values -127..127
# P holds counts where Q has none only in a window's edge bins (the clipped outliers when that
# bin of the histogram is empty); Q gets this tiny count there so the KL stays finite but large.
EMPTY_BIN_EPS = 1e-4
METHODS = ("entropy", "percentile", "max")
# The histograms each method reads: the calibration pass counts only those.
HISTOGRAMS = {"entropy": ("signed",), "percentile": ("abs",), "max": ()}


@dataclass
class RangeHistogram:
    """Counts of |x| in ``NUM_BINS`` equal bins over ``[0, absmax]`` and of x in SIGNED_BINS
    bins over [-absmax, absmax], each None where it was not counted."""

    counts: np.ndarray | None
    absmax: float
    signed: np.ndarray | None = None

    @property
    def bin_width(self) -> float:
        return self.absmax / (NUM_BINS if self.counts is None else len(self.counts))

    def abs_counts(self) -> np.ndarray:
        if self.counts is None:
            raise ValueError("this method needs the |x| histogram, which was not counted")
        return np.asarray(self.counts, dtype=np.float64)


def max_amax(hist: RangeHistogram) -> float:
    """The largest |x| seen: nothing is clipped."""
    return float(hist.absmax)


def percentile_amax(hist: RangeHistogram, percentile: float) -> float:
    """The ``percentile`` of |x|, read from the histogram with linear interpolation in its bin."""
    if not 0.0 < percentile <= 100.0:
        raise DlakitError(f"--percentile {percentile}: must be in (0, 100]")
    counts = hist.abs_counts()
    total = counts.sum()
    if total <= 0 or hist.absmax <= 0:
        return 0.0
    target = total * percentile / 100.0
    cumulative = np.cumsum(counts)
    index = int(np.searchsorted(cumulative, target, side="left"))
    index = min(index, len(counts) - 1)
    before = cumulative[index - 1] if index > 0 else 0.0
    inside = counts[index]
    fraction = (target - before) / inside if inside > 0 else 1.0
    return float(min((index + fraction) * hist.bin_width, hist.absmax))


def _xlogx(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


@cache
def _level_starts(centre: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every candidate half-width: (half, start, per_level) and, for each of its levels,
    the index of its term in the per-level terms: a ``(per_level, bin)`` table of the levels
    but the last, flattened, then the last level of each candidate."""
    half = np.arange(NUM_LEVELS, centre + 1)
    start = centre - half
    per_level = (2 * half + 1) // SIGNED_LEVELS
    lo = start[:, None] + np.arange(SIGNED_LEVELS - 1)[None, :] * per_level[:, None]
    bins = 2 * centre + 1
    table = (per_level[:, None] - 1) * bins + lo
    last = int(per_level.max()) * bins + np.arange(len(half))
    return half, start, per_level, np.concatenate((table, last[:, None]), axis=1)


def entropy_divergences(signed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL(P||Q) for every candidate half-width ``i`` in 128..2047; returns (i, kl).

    With N the total count, M the window's count, level l holding G_l over k_l non-empty bins
    (Q_b = G_l / k_l there) and L, R the outliers left and right of the window:

        N * KL = sum_b P_b log P_b - sum_l G_l log(G_l / k_l) - L log Q_first - R log Q_last
                 + N log(M / N)

    where P equals the histogram inside the window except its two edge bins, which also hold
    L and R. Every sum is a difference of prefix sums. A level's term G_l log(G_l / k_l)
    depends only on its first bin and width (1..16 bins), so each is computed once in a
    table and gathered per candidate, not once per candidate (1920 x 255 logarithms); the
    last level, which takes the remainder, is computed per candidate.
    """
    h = np.asarray(signed, dtype=np.float64)
    total = h.sum()
    centre = len(h) // 2
    half, start, per_level, flat = _level_starts(centre)
    if total <= 0:
        return half, np.full(len(half), np.inf)
    stop = centre + half + 1

    cum = np.concatenate(([0.0], np.cumsum(h)))
    cum_nonempty = np.concatenate(([0], np.cumsum(h > 0)))
    cum_hlogh = np.concatenate(([0.0], np.cumsum(_xlogx(h))))

    def level_terms(level_sum: np.ndarray, nonempty: np.ndarray) -> tuple[np.ndarray, ...]:
        level_q = level_sum / np.maximum(nonempty, 1)
        plogq = np.where(
            level_sum > 0, level_sum * np.log(np.where(level_q > 0, level_q, 1.0)), 0.0
        )
        return plogq, level_q

    # Row w - 1: levels w bins wide, by first bin (slices, not gathers); the entries past a
    # row's last start are never gathered.
    bins = len(h)
    widths = range(1, int(per_level.max()) + 1)
    sums = np.zeros((len(widths), bins))
    nonempty = np.zeros((len(widths), bins), dtype=np.int64)
    for w in widths:
        sums[w - 1, : bins + 1 - w] = cum[w:] - cum[:-w]
        nonempty[w - 1, : bins + 1 - w] = cum_nonempty[w:] - cum_nonempty[:-w]
    table_plogq, table_q = level_terms(sums, nonempty)
    last_lo = start + (SIGNED_LEVELS - 1) * per_level  # the last level takes the remainder
    last_plogq, last_q = level_terms(
        cum[stop] - cum[last_lo], cum_nonempty[stop] - cum_nonempty[last_lo]
    )
    terms = np.concatenate((table_plogq.reshape(-1), last_plogq))
    plogq_levels = terms[flat].sum(axis=1)

    left, right = cum[start], total - cum[stop]
    h_first, h_last = h[start], h[stop - 1]
    q_first = np.where(h_first > 0, table_q.reshape(-1)[flat[:, 0]], EMPTY_BIN_EPS)
    q_last = np.where(h_last > 0, last_q, EMPTY_BIN_EPS)
    mass_q = cum[stop] - cum[start]
    mass_q = mass_q + np.where((h_first == 0) & (left > 0), EMPTY_BIN_EPS, 0.0)
    mass_q = mass_q + np.where((h_last == 0) & (right > 0), EMPTY_BIN_EPS, 0.0)

    plogp = (
        cum_hlogh[stop]
        - cum_hlogh[start]
        - _xlogx(h_first)
        - _xlogx(h_last)
        + _xlogx(h_first + left)
        + _xlogx(h_last + right)
    )
    plogq = plogq_levels + left * np.log(q_first) + right * np.log(q_last)
    with np.errstate(divide="ignore"):
        kl = (plogp - plogq) / total + np.log(mass_q / total)
    kl = np.where(cum[stop] - cum[start] > 0, kl, np.inf)
    return half, kl


def entropy_amax(hist: RangeHistogram) -> float:
    """The clip point whose 255-level Q best matches P on the signed histogram."""
    if hist.signed is None:
        raise DlakitError("entropy calibration needs the signed histogram of the tensor")
    if hist.absmax <= 0 or np.sum(hist.signed) <= 0:
        return 0.0
    half, kl = entropy_divergences(hist.signed)
    best = int(half[int(np.argmin(kl))])
    width = 2.0 * hist.absmax / len(hist.signed)
    return float(min((best + 0.5) * width, hist.absmax))


def clipped_fraction(hist: RangeHistogram, amax: float) -> float:
    """Share of all values whose |x| exceeds ``amax`` (to bin resolution): what clipping costs.
    From the |x| histogram, or the signed one where only that was counted (a bin counts as
    clipped when it lies wholly beyond ``amax``; entropy's amax is a bin edge of it)."""
    if hist.counts is None and hist.signed is not None:
        signed = np.asarray(hist.signed, dtype=np.float64)
        total = signed.sum()
        if total <= 0 or hist.absmax <= 0 or amax >= hist.absmax:
            return 0.0
        centre, edge = len(signed) // 2, amax / (2.0 * hist.absmax / len(signed))
        # Bin j covers [j - centre - 0.5, j - centre + 0.5) bin widths; a tolerance for amax
        # computed as (half + 0.5) * width.
        first = int(np.ceil(centre + 0.5 + edge - 1e-6))
        last = int(np.floor(centre - 0.5 - edge + 1e-6))
        return float((signed[first:].sum() + signed[: max(last + 1, 0)].sum()) / total)
    counts = hist.abs_counts()
    total = counts.sum()
    if total <= 0 or hist.absmax <= 0 or amax >= hist.absmax:
        return 0.0
    first_clipped = int(np.ceil(amax / hist.bin_width))
    return float(counts[first_clipped:].sum() / total)


def compute_amax(hist: RangeHistogram, method: str, percentile: float | None = None) -> float:
    """amax of one tensor by ``method`` (one of :data:`METHODS`)."""
    if method == "max":
        return max_amax(hist)
    if method == "percentile":
        if percentile is None:
            raise DlakitError("method 'percentile' needs --percentile (e.g. 99.99)")
        return percentile_amax(hist, percentile)
    if method == "entropy":
        return entropy_amax(hist)
    raise DlakitError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
