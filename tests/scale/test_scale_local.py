"""The sharding layer on its own: shards merged in input order, byte for byte one process's
result; a killed worker's shard retried; failures named by shard; resume from a results file."""

import json

import numpy as np
import pytest
from scale_jobs import DieOnceJob, FailsJob, SquareJob, need_ray, payload_of

from dlakit.errors import DlakitError
from dlakit.scale import InProcess, LocalPool, ResultsFile, merge_arrays, plan_shards, run_shards
from dlakit.scale.job import config_of
from dlakit.scale.shards import default_shard_size

X = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)


def _run(job, backend, shards=None, **kw):
    shards = shards or plan_shards(len(X), 7)
    return run_shards(job, shards, payload_of(X), backend, **kw)


def test_shards_cover_the_inputs_in_order():
    shards = plan_shards(50, 7)
    assert [(s.start, s.stop) for s in shards][-2:] == [(42, 49), (49, 50)]
    assert [s.name for s in shards[:2]] == ["shard-0000", "shard-0001"]
    assert default_shard_size(50) == 8 and default_shard_size(50_000) == 256
    assert default_shard_size(100, align=64) == 64
    with pytest.raises(DlakitError, match="--shard-size 0"):
        plan_shards(10, 0)


def test_local_pool_equals_one_process_byte_for_byte():
    one = merge_arrays(_run(SquareJob(), InProcess()).results)
    seen = []
    run = _run(SquareJob(), LocalPool(2), progress=seen.append)
    pool = merge_arrays(run.results)
    assert one.keys() == pool.keys() == {"square", "sum"}
    for name in one:
        assert one[name].tobytes() == pool[name].tobytes()
    assert one["square"].tobytes() == (X * X).tobytes()
    assert run.computed == run.items == 50 and run.backend == "local pool" and run.slots == 2
    assert seen[-1] == 50 and seen == sorted(seen)  # one bar over all shards, never backwards


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_a_killed_worker_is_retried(tmp_path, how):
    job = DieOnceJob(marker=str(tmp_path / "died"), victim=14, how=how)
    warnings = []
    run = _run(job, LocalPool(2), warn=warnings.append)
    assert (tmp_path / "died").exists()  # the worker did die once
    assert merge_arrays(run.results)["square"].tobytes() == (X * X).tobytes()
    assert list(run.retried) == ["shard-0002"]
    expected = "signal 9" if how == "sigkill" else "exit code 3"
    assert f"the worker running it died ({expected})" in run.retried["shard-0002"][0]
    assert warnings == [f"shard-0002: {run.retried['shard-0002'][0]}; retrying (1/2)"]


def test_a_shard_that_keeps_failing_is_named_after_the_retries(tmp_path):
    results = ResultsFile.open(tmp_path / "r.json", config_of("square"), 8)
    with pytest.raises(DlakitError) as err:
        _run(FailsJob(victim=21), LocalPool(2), retries=1, results=results)
    text = str(err.value)
    assert text.startswith("1 of 8 shard(s) failed after 2 attempt(s): shard-0003: ValueError")
    assert "bad rows from 21" in text and "the 7 finished shard(s) are in" in text
    assert "\n" not in text
    assert sorted(json.loads((tmp_path / "r.json").read_text())["done"]) == [
        f"shard-{i:04d}" for i in range(8) if i != 3
    ]


def test_resume_skips_finished_shards(tmp_path):
    config = config_of("square", inputs="x")
    path = tmp_path / "r.json"
    with pytest.raises(DlakitError):
        _run(FailsJob(victim=21), InProcess(), retries=0, results=ResultsFile.open(path, config, 8))
    again = SquareJob()
    run = _run(again, InProcess(), results=ResultsFile.open(path, config, 8))
    assert again.calls == [21]  # only the shard that had failed
    assert run.computed == 7 and len(run.resumed) == 7
    assert merge_arrays(run.results)["square"].tobytes() == (X * X).tobytes()
    third = SquareJob()
    run = _run(third, InProcess(), results=ResultsFile.open(path, config, 8))
    assert third.calls == [] and run.computed == 0


def test_resume_refuses_another_job_in_one_line(tmp_path):
    path = tmp_path / "r.json"
    _run(
        SquareJob(), InProcess(), results=ResultsFile.open(path, config_of("square", target="a"), 8)
    )
    with pytest.raises(DlakitError) as err:
        ResultsFile.open(path, config_of("square", target="b"), 8)
    assert str(err.value) == (
        f'--resume {path}: results of another job (target "a", not "b"); '
        "name a new file to start over"
    )
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(DlakitError, match="not a dlakit results file"):
        ResultsFile.open(tmp_path / "junk.json", config_of("square"), 8)


def test_a_damaged_part_is_recomputed(tmp_path):
    config = config_of("square")
    path = tmp_path / "r.json"
    _run(SquareJob(), InProcess(), results=ResultsFile.open(path, config, 8))
    part = tmp_path / "r.json.parts" / "shard-0005.npz"
    part.write_bytes(part.read_bytes()[:-10])
    job, warnings = SquareJob(), []
    run = _run(job, InProcess(), results=ResultsFile.open(path, config, 8), warn=warnings.append)
    assert job.calls == [35] and warnings == [f"shard-0005: its part {part} was changed; "
                                              "recomputing it"]  # fmt: skip
    assert merge_arrays(run.results)["square"].tobytes() == (X * X).tobytes()


@pytest.mark.ray
def test_a_ray_address_where_nothing_answers_is_one_line(capsys):
    from dlakit.cli import main

    need_ray()
    assert main(["sweep", "mnist-cnn", "--ray", "127.0.0.1:1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "error: --ray 127.0.0.1:1: no Ray cluster answers at 127.0.0.1:1 (Connection refused)"
    )
    assert main(["sweep", "mnist-cnn", "--ray", "nohost", "-q"]) == 2
    assert "not HOST:PORT or ray://HOST:PORT" in capsys.readouterr().err


def test_a_worker_that_died_idle_is_replaced():
    import os
    import signal

    pool = LocalPool(1)
    pool.start(SquareJob())
    victim = pool._workers[0].process
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    shard = plan_shards(len(X), 50)[0]
    pool.submit(shard, payload_of(X)(shard))
    outcomes = []
    while not outcomes:  # a wait may return only progress
        outcomes = pool.wait(None)
    pool.close()
    (outcome,) = outcomes
    assert outcome.error is None and outcome.result["square"].tobytes() == (X * X).tobytes()
