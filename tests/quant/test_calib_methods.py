"""Calibration methods against known answers: numpy max/percentile and a literal KL search."""

import numpy as np
import pytest

from dlakit.errors import DlakitError
from dlakit.quant.calibrators import (
    NUM_BINS,
    NUM_LEVELS,
    RangeHistogram,
    compute_amax,
    entropy_amax,
    entropy_divergences,
    percentile_amax,
)


def _hist(x: np.ndarray) -> RangeHistogram:
    magnitude = np.abs(x)
    counts, _ = np.histogram(magnitude, bins=NUM_BINS, range=(0, magnitude.max()))
    zeros = int(np.count_nonzero(magnitude == 0))
    return RangeHistogram(counts, float(magnitude.max()), zeros)


def _literal_kl(counts: np.ndarray, i: int) -> float:
    """KL(P||Q) for candidate i written out bin by bin, as the TensorRT description reads."""
    h = counts.astype(np.float64)
    reference = h[:i].copy()
    reference[i - 1] += h[i:].sum()
    sliced = h[:i]
    level = (np.arange(i) * NUM_LEVELS) // i
    level_sum = np.bincount(level, weights=sliced, minlength=NUM_LEVELS)
    level_nonempty = np.bincount(level, weights=(sliced > 0), minlength=NUM_LEVELS)
    candidate = np.zeros(i)
    nonempty = sliced > 0
    candidate[nonempty] = level_sum[level[nonempty]] / level_nonempty[level[nonempty]]
    if reference[i - 1] > 0 and candidate[i - 1] == 0:
        candidate[i - 1] = 1e-4
    p = reference / reference.sum()
    q = candidate / candidate.sum()
    used = p > 0
    return float(np.sum(p[used] * np.log(p[used] / q[used])))


@pytest.fixture(scope="module")
def gaussian_with_outliers() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(size=400_000), rng.uniform(-50, 50, size=40), [50.0]])


def test_max_is_the_exact_largest_magnitude(gaussian_with_outliers):
    x = gaussian_with_outliers
    assert compute_amax(_hist(x), "max") == np.abs(x).max()


@pytest.mark.parametrize("pct", [50.0, 99.0, 99.9, 99.99, 100.0])
def test_percentile_matches_numpy_within_one_bin(gaussian_with_outliers, pct):
    x = gaussian_with_outliers
    hist = _hist(x)
    want = np.percentile(np.abs(x), pct)
    assert abs(percentile_amax(hist, pct) - want) <= hist.bin_width


def test_percentile_out_of_range_is_an_error(gaussian_with_outliers):
    with pytest.raises(DlakitError, match="percentile"):
        percentile_amax(_hist(gaussian_with_outliers), 0.0)


def test_entropy_kl_equals_the_literal_computation_for_every_candidate():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=100_000), rng.uniform(-30, 30, size=30)])
    counts = _hist(x).counts.copy()
    counts[5:9] = 0  # empty bins inside the body and a gap in the tail exercise the edge cases
    counts[1500:1600] = 0
    cands, kl = entropy_divergences(counts)
    assert cands[0] == NUM_LEVELS and cands[-1] == NUM_BINS
    literal = np.array([_literal_kl(counts, int(i)) for i in cands])
    np.testing.assert_allclose(kl, literal, rtol=1e-9, atol=1e-12)


def test_entropy_threshold_is_the_argmin_bin_plus_half(gaussian_with_outliers):
    hist = _hist(gaussian_with_outliers)
    cands, _ = entropy_divergences(hist.counts)
    literal = [_literal_kl(hist.counts, int(i)) for i in cands]
    best = cands[int(np.argmin(literal))]
    assert entropy_amax(hist) == pytest.approx((best + 0.5) * hist.bin_width)


def test_entropy_clips_gaussian_outliers_well_below_their_max(gaussian_with_outliers):
    amax = entropy_amax(_hist(gaussian_with_outliers))
    assert 2.5 < amax < 10.0  # sigma is 1, the outliers reach 50


def test_entropy_keeps_the_full_range_of_a_uniform_distribution():
    x = np.random.default_rng(2).uniform(-1, 1, size=200_000)
    assert entropy_amax(_hist(x)) > 0.95


def test_entropy_ignores_the_zero_spike_of_a_relu():
    x = np.random.default_rng(3).normal(size=400_000)
    relu = np.maximum(x, 0)
    positive = _hist(x[x > 0])
    with_zeros = _hist(relu)
    assert with_zeros.zeros > 150_000
    assert entropy_amax(with_zeros) == pytest.approx(entropy_amax(positive), rel=0.02)
    assert entropy_amax(with_zeros) > 2.5


def test_unknown_method_is_an_error(gaussian_with_outliers):
    with pytest.raises(DlakitError, match="--method"):
        compute_amax(_hist(gaussian_with_outliers), "mse")


def test_empty_histogram_gives_zero():
    empty = RangeHistogram(np.zeros(NUM_BINS), 0.0)
    assert entropy_amax(empty) == 0.0
    assert percentile_amax(empty, 99.0) == 0.0
