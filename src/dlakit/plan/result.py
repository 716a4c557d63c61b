"""The planner's JSON document (schema ``dlakit.plan`` v1, docs/plan.md), for ``--json`` and
for the ``plan.json`` that ``--emit`` writes beside the pieces."""

from __future__ import annotations

from typing import Any

from dlakit import __version__
from dlakit.plan.api import PlanResult
from dlakit.plan.plans import Candidate

PLAN_SCHEMA = "dlakit.plan"
PLAN_SCHEMA_VERSION = 1


def candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "strategy": c.strategy,
        "images_per_second": c.images_per_second,
        "latency_ms": c.latency_ms,
        "speedup_vs_gpu_only": c.speedup_vs_gpu_only,
        "devices": {
            dev: {k: stats[k] for k in ("batch", "busy_ms", "utilization", "dram_gbps")}
            for dev, stats in c.devices.items()
        },
        "watts": c.watts,
        "images_per_joule": c.images_per_joule,
        "description": c.plan.description,
        "detail": c.plan.detail,
    }


def result_json(res: PlanResult) -> dict[str, Any]:
    return {
        "schema": PLAN_SCHEMA,
        "schema_version": PLAN_SCHEMA_VERSION,
        "modeled": True,
        "model_version": res.versions,
        "dlakit_version": __version__,
        "target": res.target,
        "power_mode": res.power_mode,
        "precision": res.precision,
        "batch": res.batch,
        "objective": res.objective,
        "models": res.models,
        "gpu_only": {
            "images_per_second": res.gpu_only.images_per_second,
            "latency_ms": res.gpu_only.latency_ms,
        },
        "candidates": [candidate_json(c) for c in res.candidates],
        "chosen": candidate_json(res.chosen),
        "not_applicable": res.skipped,
    }


def curve_json(results: list[PlanResult]) -> dict[str, Any]:
    """A batch list: the request once, then one document per batch under ``curve``."""
    first = result_json(results[0])
    keep = ("schema", "schema_version", "modeled", "model_version", "dlakit_version", "target",
            "power_mode", "precision", "objective", "models")  # fmt: skip
    return {
        **{k: first[k] for k in keep},
        "batch": [r.batch for r in results],
        "curve": [result_json(r) for r in results],
    }
