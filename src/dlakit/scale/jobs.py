"""The sharded jobs: FP32 and DLA-INT8 outputs of a data set (``accuracy``), a compiled artifact
on the simulator (``run``) and the points of a design sweep (``sweep``).

Each job is what every worker needs, pickled once; a shard's payload is its slice of the inputs
(or of the grid). Outputs are row-independent (checked byte for byte by tests/scale), so the
shards' outputs joined in input order are the outputs of one process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlakit.graph.load import LoadedModel
from dlakit.lower.qgraph import QGraph
from dlakit.scale.job import Progress, Result


@dataclass
class AccuracyJob:
    """onnxruntime FP32 and the integer reference on a slice of inputs."""

    loaded: LoadedModel
    graph: QGraph
    batch: int | None = None  # integer-reference inputs per batch (None: the worker's default)
    kind: str = "accuracy"

    def setup(self) -> None:
        return None

    def run(self, state: None, x: np.ndarray, progress: Progress | None) -> Result:
        from dlakit.accuracy.compare import float_run, int8_run

        fp32 = float_run(self.loaded, x)
        int8 = int8_run(self.graph, self.loaded.input_names[0], x, batch=self.batch,
                        progress=progress)  # fmt: skip
        return {f"fp32/{k}": v for k, v in fp32.items()} | {f"int8/{k}": v for k, v in int8.items()}


def accuracy_outputs(merged: Result) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The merged shards as (FP32 outputs, INT8 outputs), as :func:`evaluate` takes them."""
    fp32 = {k.removeprefix("fp32/"): v for k, v in merged.items() if k.startswith("fp32/")}
    int8 = {k.removeprefix("int8/"): v for k, v in merged.items() if k.startswith("int8/")}
    return fp32, int8


# Run statistics a shard returns, in this order (stats/values); summed over shards but batch.
_RUN_STATS = ("images", "seconds", "dla_seconds", "fallback_seconds", "operations", "batch")


@dataclass
class RunJob:
    """A compiled artifact on the simulator (DLA segments) and PyTorch/onnxruntime (fallback),
    ``batch`` images per simulator pass (None: the worker's default).

    The job carries the artifact's bytes (a worker on another machine has no copy of the file),
    decoded once per worker; ``runner``, the caller's decoded one, serves shards run in the
    caller's process and is not sent to workers."""

    artifact: bytes
    device: str
    fallback_engine: str
    batch: int | None = None
    runner: Any = field(default=None, repr=False, compare=False)
    kind: str = "run"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "runner": None}

    def setup(self) -> Any:
        if self.runner is not None:
            return self.runner
        import tempfile
        from pathlib import Path

        from dlakit.nvdla import read_artifact
        from dlakit.run.runner import Runner

        with tempfile.TemporaryDirectory(prefix="dlakit-run-") as folder:
            path = Path(folder) / "job.dla"
            path.write_bytes(self.artifact)
            comp = read_artifact(path)
        return Runner(comp, self.device, self.fallback_engine, self.batch)

    def run(self, runner: Any, x: np.ndarray, progress: Progress | None) -> Result:
        outs, stats = runner.run({runner.comp.inputs[0]: x}, progress=progress)
        values = np.array([float(getattr(stats, s)) for s in _RUN_STATS], dtype=np.float64)
        return {f"out/{k}": v for k, v in outs.items()} | {"stats/values": values[None]}


def run_outputs(merged: Result) -> tuple[dict[str, np.ndarray], Any]:
    """The merged shards as (outputs, RunStats summed over shards: worker seconds)."""
    from dlakit.run.runner import RunStats

    outs = {k.removeprefix("out/"): v for k, v in merged.items() if k.startswith("out/")}
    per_shard = merged["stats/values"]
    values = dict(zip(_RUN_STATS, per_shard.sum(axis=0).tolist(), strict=True))
    stats = RunStats(
        images=int(values["images"]),
        batch=int(per_shard[:, _RUN_STATS.index("batch")].max()),
        seconds=values["seconds"],
        dla_seconds=values["dla_seconds"],
        fallback_seconds=values["fallback_seconds"],
        operations=int(values["operations"]),
    )
    return outs, stats


@dataclass(frozen=True)
class SweepPoint:
    """One point of a design sweep: a model on a target, power mode, precision and batch."""

    model: str
    target: str
    power_mode: str | None
    precision: str
    batch: int


@dataclass
class SweepJob:
    """Points of a sweep through the performance model (``profile``) and, with ``plan``, the
    planner's best GPU+DLA plan for the ``objective``."""

    models: dict[str, LoadedModel]
    plan: bool = False
    objective: str = "throughput"
    kind: str = "sweep"

    def setup(self) -> dict[str, Any]:
        return {}

    def run(self, costs: dict[str, Any], points: list[SweepPoint], progress: Progress | None
            ) -> Result:  # fmt: skip
        rows = []
        for done, point in enumerate(points, 1):
            rows.append(json.dumps(self.point(point, costs), sort_keys=True))
            if progress:
                progress(done)
        return {"rows": np.array(rows, dtype=np.str_)}

    def point(self, point: SweepPoint, costs: dict[str, Any]) -> dict[str, Any]:
        from dlakit.perf import images_per_second, profile_model
        from dlakit.perf.model import summary
        from dlakit.targets import load_target

        tgt = load_target(point.target)
        loaded = self.models[point.model]
        prof = profile_model(loaded, tgt, point.power_mode, batch=point.batch,
                             precision=point.precision)  # fmt: skip
        totals = summary(prof)
        engines: dict[str, int] = {}
        for cost in prof.costs:
            engines[cost.engine] = engines.get(cost.engine, 0) + 1
        row: dict[str, Any] = {
            "model": point.model,
            "target": tgt.name,
            "power_mode": prof.power_mode,
            "precision": point.precision,
            "batch": point.batch,
            "layers": engines,
            "latency_ms": totals["latency_ms"],
            "dla_ms_per_image": totals["dla_ms_per_image"],
            "gpu_ms_per_image": totals["gpu_ms_per_image"],
            "images_per_second_one_core": images_per_second(prof, loaded, 1),
            "images_per_second_all_cores": images_per_second(prof, loaded, max(1, tgt.dla_cores)),
            "math_utilization": totals["math_utilization"],
        }
        if self.plan:
            row["plan"] = self._plan(point, tgt, prof.power_mode, loaded, costs)
        return row

    def _plan(self, point: SweepPoint, tgt, mode: str, loaded: LoadedModel, costs) -> Any:
        """The planner's chosen plan; None where the target has no GPU+DLA pair to plan for."""
        from dlakit.plan import costs_for, plan_models
        from dlakit.plan.api import check_request
        from dlakit.plan.result import candidate_json

        if tgt.gpu is None or tgt.kind != "jetson":
            return None
        tgt, mode, cores = check_request(tgt, point.power_mode, point.precision, [point.batch],
                                         self.objective, "auto", None)  # fmt: skip
        key = f"{point.model}|{tgt.name}|{mode}|{point.precision}"
        if key not in costs:
            costs[key] = costs_for([(point.model, loaded)], tgt, mode, point.precision, cores)
        res = plan_models([(point.model, loaded)], tgt, mode, precision=point.precision,
                          batch=point.batch, objective=self.objective, dla_cores=cores,
                          costs=costs[key])  # fmt: skip
        chosen = candidate_json(res.chosen)
        return {
            "strategy": chosen.get("strategy"),
            "images_per_second": chosen.get("images_per_second"),
            "latency_ms": chosen.get("latency_ms"),
            "gpu_only_images_per_second": res.gpu_only.images_per_second,
        }


def sweep_rows(merged: Result) -> list[dict[str, Any]]:
    return [json.loads(text) for text in merged["rows"].tolist()]
