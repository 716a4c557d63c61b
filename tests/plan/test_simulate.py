"""The event loop: in-order device queues, dependencies, switches, shared DRAM."""

import pytest

from dlakit.errors import DlakitError
from dlakit.perf.contention import Phase
from dlakit.plan.simulate import Task, simulate

CAPS = {"gpu": 100.0, "dla0": 100.0, "dla1": 100.0}


def test_devices_run_side_by_side_and_a_dependency_waits_with_its_delay():
    tasks = [
        Task("gpu", "a", [Phase(0.0, 1.0, 0.0)]),
        Task("dla0", "b", [Phase(0.0, 2.0, 0.0)]),
        Task("gpu", "c", [Phase(0.0, 1.0, 0.0)], deps=[1], delay_s=0.5),
    ]
    tl = simulate(tasks, CAPS, 1000.0)
    assert tl.ends == pytest.approx([1.0, 2.0, 3.5])
    assert tl.busy_s["gpu"] == pytest.approx(2.0)


def test_two_memory_bound_phases_share_the_pool():
    alone = simulate([Task("dla0", "x", [Phase(0.0, 0.0, 100.0)])], CAPS, 100.0)
    assert alone.makespan == pytest.approx(1.0)
    both = simulate(
        [Task("dla0", "x", [Phase(0.0, 0.0, 100.0)]), Task("dla1", "y", [Phase(0.0, 0.0, 100.0)])],
        CAPS,
        100.0,
    )
    assert both.makespan == pytest.approx(2.0)  # half the bandwidth each
    assert both.dram_bytes["dla0"] == pytest.approx(100.0)


def test_a_compute_bound_phase_keeps_its_speed_beside_a_memory_bound_one():
    tl = simulate(
        [Task("gpu", "c", [Phase(0.0, 1.0, 10.0)]), Task("dla0", "m", [Phase(0.0, 0.0, 180.0)])],
        CAPS,
        100.0,
    )
    assert tl.ends[0] == pytest.approx(1.0)  # wants 10 B/s, gets it
    assert tl.ends[1] == pytest.approx(1.9)  # 90 B/s while the other runs, then 100


def test_a_dependency_on_a_later_task_is_refused():
    with pytest.raises(DlakitError, match="depends on a later task"):
        simulate([Task("gpu", "a", [Phase(0, 1, 0)], deps=[0])], CAPS, 1.0)
