"""The GPU + DLA planner: how the GPU and the DLA cores should share one or several models.

:func:`plan_models` evaluates every strategy (gpu, dla, streams, data-parallel, pipeline,
layer-map) on one shared cost model (:mod:`dlakit.perf`) with an event simulation of the
devices and their shared DRAM, and keeps the best for the objective; :func:`emit_plan` writes
the chosen plan as ONNX pieces, plan.json, trtexec lines and a runner. Every number is modeled.
"""

from dlakit.plan.api import OBJECTIVES, STRATEGIES, PlanResult, costs_for, plan_models
from dlakit.plan.emit import emit_plan, run_emitted
from dlakit.plan.plans import Candidate, Stage

__all__ = [
    "OBJECTIVES",
    "STRATEGIES",
    "Candidate",
    "PlanResult",
    "Stage",
    "costs_for",
    "emit_plan",
    "plan_models",
    "run_emitted",
]
