"""Shards as Ray tasks on a local Ray instance the test starts: equal to one process byte for
byte, a killed worker's shard retried. Skipped with a note where Ray is not installed (never
under CI, which installs the 'ray' extra)."""

import os
from pathlib import Path

import numpy as np
import pytest
from scale_jobs import DieOnceJob, SquareJob, need_ray, payload_of

from dlakit.scale import InProcess, RayBackend, merge_arrays, plan_shards, run_shards

pytestmark = pytest.mark.ray

X = np.random.default_rng(1).standard_normal((40, 5)).astype(np.float32)


@pytest.fixture(scope="module")
def ray():
    ray = need_ray()
    # Ray's workers are processes of their own: they find dlakit and these test jobs through the
    # environment they inherit.
    here = str(Path(__file__).parent)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, saved) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = saved


def _run(job, backend):
    return run_shards(job, plan_shards(len(X), 6), payload_of(X), backend)


def test_ray_shards_equal_one_process(ray):
    one = merge_arrays(_run(SquareJob(), InProcess()).results)
    run = _run(SquareJob(), RayBackend("auto"))
    got = merge_arrays(run.results)
    assert run.backend == "Ray" and run.slots == 2 and ray.is_initialized()
    for name in one:
        assert one[name].tobytes() == got[name].tobytes()


def test_ray_worker_killed_is_retried(ray, tmp_path):
    job = DieOnceJob(marker=str(tmp_path / "died"), victim=12, how="sigkill")
    run = _run(job, RayBackend("auto"))
    assert (tmp_path / "died").exists()
    assert merge_arrays(run.results)["square"].tobytes() == (X * X).tobytes()
    assert list(run.retried) == ["shard-0002"]
    assert run.retried["shard-0002"] == ["the Ray worker running it died"]
