"""DRAM sharing and the energy model."""

import pytest

from dlakit.perf.contention import Phase, share_bandwidth
from dlakit.perf.hw import perf_data
from dlakit.perf.power import load_power_model
from dlakit.perf.power_fit import ratio_points
from dlakit.targets import load_target


def test_no_slowdown_while_what_the_phases_want_fits_the_pool():
    assert share_bandwidth([10.0, 20.0], 100.0) == [10.0, 20.0]


def test_oversubscribed_pool_is_shared_max_min_fairly():
    shares = share_bandwidth([10.0, 80.0, 80.0], 100.0)
    assert shares[0] == 10.0  # its want fits its fair share: it keeps its speed
    assert shares[1] == shares[2] == pytest.approx(45.0)
    assert sum(shares) == pytest.approx(100.0)


def test_memory_bound_phase_slows_in_proportion_compute_bound_does_not():
    memory_bound = Phase(0.0, 1.0, 100.0)
    assert memory_bound.wants(1000.0) == 100.0
    assert memory_bound.time_at(50.0) == pytest.approx(2.0)
    assert memory_bound.time_at(200.0) == pytest.approx(1.0)  # compute-bound above its want


def test_power_fit_error_is_the_recorded_one():
    pts = ratio_points(load_power_model())
    assert len(pts) == 24
    mape = sum(abs(p.error) for p in pts) / len(pts)
    assert mape == pytest.approx(perf_data("power.toml")["fit"]["ratio_mape"], abs=1e-3)
    assert mape < 0.15


def test_xavier_dla_power_is_within_nvidias_half_to_one_and_a_half_watts():
    """NVIDIA: each Xavier DLA "0.5-1.5 W"; the model's busy array at the MAXN clock."""
    target = load_target("xavier")
    model = load_power_model()
    macs_per_s = 2048 * target.power_mode().dla_mhz * 1e6  # the array fully busy
    watts = macs_per_s * model.dla_joules_per_mac(target)
    assert 0.5 <= watts <= 1.5
