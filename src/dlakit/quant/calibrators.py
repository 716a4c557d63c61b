"""Activation range (amax) from an |x| histogram: entropy (KL), percentile, max.

Every method works on the same summary of a tensor, a :class:`RangeHistogram`: counts of |x| in
``NUM_BINS`` equal bins over ``[0, absmax]``, where ``absmax`` is the largest |x| seen over the
whole calibration set. The INT8 scale is then ``amax / 127`` (symmetric, zero point 0), as
TensorRT and the NVDLA compiler use it.

Entropy follows TensorRT's EntropyCalibrator2 as NVIDIA described it (Migacz, "8-bit Inference with
TensorRT", GTC 2017): for each candidate bin count ``i`` in 128..2048, the reference distribution P
is ``hist[:i]`` with every count beyond it added to the last bin, and the candidate Q is
``hist[:i]`` merged into 128 levels and spread back evenly over the non-empty bins of each level.
The ``i`` with the smallest KL(P||Q) gives ``threshold = (i + 0.5) * bin_width``.

The KL is computed in closed form per level with prefix sums, so all 1921 candidates cost
O(1921 x 128) instead of O(1921 x 2048) (see :func:`entropy_amax`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlakit.errors import DlakitError

NUM_BINS = 2048
NUM_LEVELS = 128  # INT8 magnitudes 0..127
# P can hold counts where Q has none only in the last bin (the clipped outliers when that bin of
# the histogram is empty); Q gets this tiny count there so the KL stays finite but large.
EMPTY_BIN_EPS = 1e-4
METHODS = ("entropy", "percentile", "max")


@dataclass
class RangeHistogram:
    """Counts of |x| in ``len(counts)`` equal bins over ``[0, absmax]``."""

    counts: np.ndarray
    absmax: float
    zeros: int = 0  # how many of counts[0] are exact zeros

    @property
    def bin_width(self) -> float:
        return self.absmax / len(self.counts)


def max_amax(hist: RangeHistogram) -> float:
    """The largest |x| seen: nothing is clipped."""
    return float(hist.absmax)


def percentile_amax(hist: RangeHistogram, percentile: float) -> float:
    """The ``percentile`` of |x|, read from the histogram with linear interpolation in its bin."""
    if not 0.0 < percentile <= 100.0:
        raise DlakitError(f"--percentile {percentile}: must be in (0, 100]")
    counts = np.asarray(hist.counts, dtype=np.float64)
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


def entropy_divergences(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL(P||Q) for every candidate bin count ``i`` in 128..len(counts); returns (i, kl).

    With N the total count, M = sum(hist[:i]) and level g spanning bins [S_g, S_g+1) with sum G_g
    over n_g non-empty bins, Q_b = G_g / n_g on non-empty bins, and

        N * KL = sum_b P_b log P_b - sum_b P_b log Q_b + N log(M / N)

    Both sums are prefix sums over bins or sums over 128 levels, except for the last bin, where P
    also holds the outliers and is handled on its own.
    """
    h = np.asarray(counts, dtype=np.float64)
    nbins = len(h)
    total = h.sum()
    cands = np.arange(NUM_LEVELS, nbins + 1)
    if total <= 0:
        return cands, np.full(len(cands), np.inf)

    cum = np.concatenate(([0.0], np.cumsum(h)))
    cum_nonempty = np.concatenate(([0], np.cumsum(h > 0)))
    hlogh = np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0)
    cum_hlogh = np.concatenate(([0.0], np.cumsum(hlogh)))

    # Level g of candidate i covers bins [ceil(g*i/128), ceil((g+1)*i/128)).
    edges = -((-np.arange(NUM_LEVELS + 1)[None, :] * cands[:, None]) // NUM_LEVELS)
    level_sum = cum[edges[:, 1:]] - cum[edges[:, :-1]]
    level_nonempty = cum_nonempty[edges[:, 1:]] - cum_nonempty[edges[:, :-1]]
    safe_n = np.maximum(level_nonempty, 1)
    level_q = level_sum / safe_n
    level_term = np.where(
        level_sum > 0, level_sum * np.log(np.where(level_q > 0, level_q, 1.0)), 0.0
    )

    last = cands - 1
    h_last = h[last]
    outliers = total - cum[cands]
    p_last = h_last + outliers
    q_last_level = level_q[:, -1]
    q_last = np.where(h_last > 0, q_last_level, EMPTY_BIN_EPS)
    mass_q = cum[cands] + np.where((h_last == 0) & (outliers > 0), EMPTY_BIN_EPS, 0.0)

    # Bins before the last: sum h log h minus sum over levels of G log(G/n), less the last bin's
    # own share of level 127 (the last bin always falls in level 127).
    first_plogp = cum_hlogh[last]
    first_plogq = level_term.sum(axis=1) - np.where(
        h_last > 0, h_last * np.log(np.where(q_last_level > 0, q_last_level, 1.0)), 0.0
    )
    last_term = np.where(
        p_last > 0,
        p_last * (np.log(np.where(p_last > 0, p_last, 1.0)) - np.log(q_last)),
        0.0,
    )
    with np.errstate(divide="ignore"):
        kl = (first_plogp - first_plogq + last_term) / total + np.log(mass_q / total)
    kl = np.where(cum[cands] > 0, kl, np.inf)
    return cands, kl


def entropy_amax(hist: RangeHistogram) -> float:
    """TensorRT-style entropy threshold: the clip point whose 128-level Q best matches P.

    Exact zeros are left out of the histogram: they quantize exactly at any threshold, and after a
    ReLU their spike in bin 0 (often half of all values) would dominate the KL and always pick
    the smallest candidate (pytorch-quantization flattens bin 0 for the same reason).
    """
    counts = np.array(hist.counts, dtype=np.float64)
    counts[0] -= hist.zeros
    if hist.absmax <= 0 or counts.sum() <= 0:
        return 0.0
    cands, kl = entropy_divergences(counts)
    best = int(cands[int(np.argmin(kl))])
    return float(min((best + 0.5) * hist.bin_width, hist.absmax))


def clipped_fraction(hist: RangeHistogram, amax: float) -> float:
    """Share of all values whose |x| exceeds ``amax`` (to bin resolution): what clipping costs."""
    counts = np.asarray(hist.counts, dtype=np.float64)
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
