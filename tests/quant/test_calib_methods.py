"""Calibration methods against known answers: numpy max/percentile and a literal KL search."""

import numpy as np
import pytest

from dlakit.errors import DlakitError
from dlakit.quant.calibrators import (
    EMPTY_BIN_EPS,
    NUM_BINS,
    NUM_LEVELS,
    SIGNED_BINS,
    SIGNED_LEVELS,
    RangeHistogram,
    clipped_fraction,
    compute_amax,
    entropy_amax,
    entropy_divergences,
    percentile_amax,
)


def _hist(x: np.ndarray) -> RangeHistogram:
    magnitude = np.abs(x)
    absmax = float(magnitude.max())
    counts, _ = np.histogram(magnitude, bins=NUM_BINS, range=(0, absmax))
    signed, _ = np.histogram(x, bins=SIGNED_BINS, range=(-absmax, absmax))
    return RangeHistogram(counts, absmax, signed)


def _literal_kl(signed: np.ndarray, i: int) -> float:
    """KL(P||Q) for half-width i written out bin by bin and level by level (MXNet/TVM's loop)."""
    h = signed.astype(np.float64)
    centre = len(h) // 2
    lo, hi = centre - i, centre + i + 1
    window = h[lo:hi]
    reference = window.copy()
    reference[0] += h[:lo].sum()
    reference[-1] += h[hi:].sum()
    n = hi - lo
    per_level = n // SIGNED_LEVELS
    candidate = np.zeros(n)
    for level in range(SIGNED_LEVELS):
        a = level * per_level
        b = n if level == SIGNED_LEVELS - 1 else a + per_level
        nonempty = window[a:b] > 0
        if nonempty.any():
            candidate[a:b][nonempty] = window[a:b].sum() / nonempty.sum()
    for edge in (0, -1):
        if reference[edge] > 0 and candidate[edge] == 0:
            candidate[edge] = EMPTY_BIN_EPS
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
    x = np.concatenate([rng.normal(size=100_000), rng.uniform(-30, 10, size=30)])
    counts = _hist(x).signed.copy()
    counts[2050:2054] = 0  # empty bins inside the body and gaps in the tails exercise the edges
    counts[3500:3600] = 0
    counts[100:400] = 0
    cands, kl = entropy_divergences(counts)
    assert cands[0] == NUM_LEVELS and cands[-1] == NUM_BINS - 1
    literal = np.array([_literal_kl(counts, int(i)) for i in cands])
    np.testing.assert_allclose(kl, literal, rtol=1e-9, atol=1e-12)


def test_entropy_threshold_is_the_window_edge_of_the_argmin(gaussian_with_outliers):
    hist = _hist(gaussian_with_outliers)
    cands, _ = entropy_divergences(hist.signed)
    literal = [_literal_kl(hist.signed, int(i)) for i in cands]
    best = cands[int(np.argmin(literal))]
    width = 2 * hist.absmax / SIGNED_BINS
    assert entropy_amax(hist) == pytest.approx((best + 0.5) * width)


def test_entropy_clips_gaussian_outliers_well_below_their_max(gaussian_with_outliers):
    amax = entropy_amax(_hist(gaussian_with_outliers))
    assert 2.5 < amax < 10.0  # sigma is 1, the outliers reach 50


def test_entropy_keeps_the_full_range_of_a_uniform_distribution():
    x = np.random.default_rng(2).uniform(-1, 1, size=200_000)
    assert entropy_amax(_hist(x)) > 0.95


def test_entropy_keeps_most_of_a_relu_despite_its_zero_spike():
    relu = np.maximum(np.random.default_rng(3).normal(size=400_000), 0)
    hist = _hist(relu)
    assert np.count_nonzero(relu == 0) > 150_000  # the spike
    assert entropy_amax(hist) > 2.0  # sigma 1: the spike at 0 must not collapse the range


def test_entropy_is_not_pulled_to_a_background_spike_of_the_other_sign():
    # MNIST after normalisation: ~80% of pixels at -0.42, strokes spread up to 2.8. Folding to
    # |x| would clip just past 0.42 and cut every stroke.
    rng = np.random.default_rng(4)
    x = np.concatenate([np.full(320_000, -0.4242), rng.uniform(-0.42, 2.82, size=80_000)])
    assert entropy_amax(_hist(x)) > 2.0


def test_entropy_needs_the_signed_histogram(gaussian_with_outliers):
    hist = _hist(gaussian_with_outliers)
    with pytest.raises(DlakitError, match="signed"):
        entropy_amax(RangeHistogram(hist.counts, hist.absmax))


def test_unknown_method_is_an_error(gaussian_with_outliers):
    with pytest.raises(DlakitError, match="--method"):
        compute_amax(_hist(gaussian_with_outliers), "mse")


def test_empty_histogram_gives_zero():
    empty = RangeHistogram(np.zeros(NUM_BINS), 0.0, np.zeros(SIGNED_BINS))
    assert entropy_amax(empty) == 0.0
    assert percentile_amax(empty, 99.0) == 0.0


def test_clipped_share_from_the_signed_histogram_alone():
    """Where only the signed histogram was counted (entropy), the clipped share at entropy's
    amax, a bin edge, is the share of values beyond it exactly; off an edge, to a bin."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(200_000), rng.standard_normal(300) * 20])
    hist = _hist(x)
    signed_only = RangeHistogram(None, hist.absmax, hist.signed)
    width = 2 * hist.absmax / SIGNED_BINS
    for half in (128, 300, 1000, 2000):
        amax = (half + 0.5) * width
        assert clipped_fraction(signed_only, amax) == pytest.approx(
            np.mean(np.abs(x) > amax), abs=1e-12
        ), half
    amax = compute_amax(signed_only, "entropy")
    assert 0 < clipped_fraction(signed_only, amax) == pytest.approx(np.mean(np.abs(x) > amax))
    off_edge = 400.2 * width
    share = clipped_fraction(signed_only, off_edge)
    assert np.mean(np.abs(x) > 400.5 * width) <= share <= np.mean(np.abs(x) > 399.5 * width)
    with pytest.raises(ValueError, match="not counted"):
        percentile_amax(signed_only, 99.9)
