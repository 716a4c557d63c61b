"""The verbs' side of dlakit.scale: the scale options as one request, a pass over shards with
its progress bar, and the summary line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlakit.errors import DlakitError
from dlakit.report.console import Output
from dlakit.report.scale import shard_progress, shard_summary
from dlakit.scale import ResultsFile, ShardRun, make_backend, merge_arrays, plan_shards, run_shards
from dlakit.scale.job import Job, config_of, digest
from dlakit.scale.shards import default_shard_size


@dataclass(frozen=True)
class Sharding:
    """``--workers``, ``--ray``, ``--resume``, ``--retries``, ``--shard-size`` of one verb."""

    workers: int = 1
    ray: str | None = None
    resume: Path | None = None
    retries: int = 2
    shard_size: int | None = None

    def check(self) -> None:
        if self.ray is not None and not self.ray.strip():
            raise DlakitError("--ray: give auto or a cluster address")
        if self.resume is not None and self.resume.is_dir():
            raise DlakitError(f"--resume {self.resume} is a folder; name a results file")
        if self.ray is not None:
            from dlakit.scale.backends import check_ray

            check_ray(self.ray)


def run_pass(
    out: Output,
    job: Job,
    count: int,
    payload: Callable[[Any], Any],
    config: dict[str, Any],
    sharding: Sharding,
    description: str,
    unit: str,
    align: int = 1,
) -> ShardRun:
    """``count`` items through ``job`` in shards, with one progress bar; ``config`` identifies
    the job in the results file (the shard plan is added to it)."""
    size = sharding.shard_size or default_shard_size(count, align)
    shards = plan_shards(count, size)
    config = {**config, "items": count, "shard_size": size}
    results = ResultsFile.open(sharding.resume, config, len(shards)) if sharding.resume else None
    backend = make_backend(sharding.workers, sharding.ray)
    with shard_progress(out, description, count, unit) as progress:
        run = run_shards(job, shards, payload, backend, results=results,
                         retries=sharding.retries, progress=progress, warn=out.warn)  # fmt: skip
    if sharding.workers > 1 or sharding.ray or sharding.resume or run.retried:
        out.line(shard_summary(run, unit))
    else:
        out.detail(shard_summary(run, unit))
    return run


def worker_batch(asked: int | None, default: int, sharding: Sharding) -> int | None:
    """Images per batch in each worker: the asked batch; else, for local workers, this process's
    default shared out between them (they share the machine's memory); else each worker's own
    default (None). The outputs do not depend on it (batched runs equal image-by-image ones)."""
    if asked is not None:
        return asked
    if sharding.ray is None and sharding.workers > 1:
        return max(1, default // sharding.workers)
    return None


def accuracy_outputs(
    out: Output,
    loaded: Any,
    graph: Any,
    x: Any,
    sharding: Sharding,
    batch: int | None = None,
    **identity: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """FP32 and DLA-INT8 outputs of ``x`` in shards, the integer reference ``batch`` inputs at a
    time; ``identity`` names what the quantized graph was made from (scales file, target,
    layers, ...) for the results file."""
    from dlakit.accuracy.compare import check_finite
    from dlakit.lower.intref import default_batch
    from dlakit.scale.jobs import AccuracyJob, accuracy_outputs

    check_finite(x)
    if batch is not None and batch < 1:
        raise DlakitError(f"--batch {batch}: must be at least 1")
    config = config_of("accuracy", model=_model_digest(loaded), inputs=digest(x), **identity)
    job = AccuracyJob(loaded, graph, worker_batch(batch, default_batch(graph), sharding))
    run = run_pass(out, job, len(x), lambda s: x[s.start : s.stop], config, sharding,
                   "FP32 and DLA-INT8", "images")  # fmt: skip
    return accuracy_outputs(merge_arrays(run.results))


def _model_digest(loaded: Any) -> str:
    return digest(loaded.proto.SerializeToString(deterministic=True))


def run_outputs(
    out: Output,
    runner: Any,
    artifact: Path,
    x: Any,
    device: str,
    fallback_engine: str,
    sharding: Sharding,
    batch: int | None = None,
) -> tuple[dict[str, Any], Any]:
    """The artifact's outputs on ``x`` in shards, and the run statistics summed over shards
    (simulator time; the summary line gives the wall clock). ``runner`` (decoded here) runs the
    shards in this process; workers decode their own."""
    from dlakit.scale.jobs import RunJob, run_outputs

    data = artifact.read_bytes()
    config = config_of("run", artifact=digest(data), inputs=digest(x), device=device,
                       fallback_engine=fallback_engine)  # fmt: skip
    job = RunJob(data, device, fallback_engine, worker_batch(batch, runner.batch, sharding),
                 runner=runner)  # fmt: skip
    run = run_pass(out, job, len(x), lambda s: x[s.start : s.stop], config, sharding,
                   f"simulated {runner.comp.target.name}", "images")  # fmt: skip
    return run_outputs(merge_arrays(run.results))
