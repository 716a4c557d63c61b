"""``plan_models``: every strategy that applies, evaluated on one shared cost model.

The request is checked first (bad input ends in one :class:`DlakitError` line); each model is
cut into groups and costed once (:mod:`dlakit.plan.costs`); each strategy searches its own
space and the best of its plans is simulated (:mod:`dlakit.plan.simulate`). ``auto`` keeps the
best candidate for the objective among all strategies, GPU only always among them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from dlakit.errors import DlakitError, TargetError
from dlakit.graph import LoadedModel
from dlakit.perf.gpu_model import gpu_model_version, jetson_gpu, load_gpu_params
from dlakit.perf.hw import dla_config, load_params, model_version
from dlakit.perf.power import load_power_model
from dlakit.perf.transition import switch_s
from dlakit.plan import data_parallel, dla, gpu, layer_map, pipeline, streams
from dlakit.plan.costs import ModelCosts, model_costs
from dlakit.plan.plans import Candidate, Context, NotApplicable, Stage, best
from dlakit.targets import Target, load_target

STRATEGIES: dict[str, ModuleType] = {
    "gpu": gpu,
    "dla": dla,
    "streams": streams,
    "data-parallel": data_parallel,
    "pipeline": pipeline,
    "layer-map": layer_map,
}
OBJECTIVES = ("throughput", "latency", "energy")
PRECISIONS = ("int8", "fp16")


@dataclass
class PlanResult:
    target: str
    power_mode: str
    precision: str
    batch: int
    objective: str
    models: list[str]
    gpu_only: Candidate
    candidates: list[Candidate]
    chosen: Candidate
    skipped: dict[str, str] = field(default_factory=dict)  # strategy -> why it did not apply
    versions: dict[str, str] = field(default_factory=dict)


def check_request(
    target: str | Target,
    power_mode: str | None,
    precision: str,
    batches: list[int],
    objective: str,
    strategy: str,
    dla_cores: int | None,
) -> tuple[Target, str, int]:
    """The target, power mode and DLA core count of a valid request (else one error line)."""
    tgt = load_target(target) if isinstance(target, str) else target
    if strategy != "auto" and strategy not in STRATEGIES:
        raise DlakitError(f"--strategy {strategy}: unknown (known: auto, {', '.join(STRATEGIES)})")
    if objective not in OBJECTIVES:
        raise DlakitError(f"--objective {objective}: must be one of {', '.join(OBJECTIVES)}")
    if precision not in PRECISIONS:
        raise DlakitError(f"--precision {precision}: must be int8 or fp16")
    if tgt.gpu is None or tgt.kind != "jetson":
        raise TargetError(
            f"target '{tgt.name}' has no modeled GPU: the planner shares work between a Jetson "
            "GPU and its DLAs (orin, xavier, xavier-nx)"
        )
    mode = tgt.power_mode(power_mode).name
    for b in batches:
        if b < 1:
            raise DlakitError(f"--batch {b}: the batch must be at least 1")
        if tgt.dla.max_batch and b > tgt.dla.max_batch:
            raise DlakitError(
                f"--batch {b}: target '{tgt.name}' allows at most {tgt.dla.max_batch}"
            )
    cores = tgt.dla_cores if dla_cores is None else dla_cores
    if cores < 0 or cores > tgt.dla_cores:
        raise TargetError(
            f"--dla-cores {cores}: target '{tgt.name}' has {tgt.dla_cores} DLA core(s)"
        )
    if precision not in tgt.dla.precisions:
        raise TargetError(f"--precision {precision}: target '{tgt.name}' DLA does not run it")
    return tgt, mode, cores


def costs_for(
    models: list[tuple[str, LoadedModel]], target: Target, mode: str, precision: str, cores: int
) -> list[ModelCosts]:
    gpu_cfg = jetson_gpu(target, mode, precision)
    dla_cfg = dla_config(target, mode, cores=1, precision=precision) if cores else None
    params = load_params()
    return [
        model_costs(name, model, target, gpu_cfg, load_gpu_params(), dla_cfg, params)
        for name, model in models
    ]


def plan_models(
    models: list[tuple[str, LoadedModel]],
    target: str | Target = "orin",
    power_mode: str | None = None,
    *,
    precision: str = "int8",
    batch: int = 1,
    objective: str = "throughput",
    strategy: str = "auto",
    gpu_batch: int | None = None,
    dla_batch: int | None = None,
    dla_cores: int | None = None,
    transitions: int = 2,
    pre: Stage | None = None,
    post: Stage | None = None,
    costs: list[ModelCosts] | None = None,
) -> PlanResult:
    """Plan ``models`` (name, loaded model) at ``batch`` images each; see the module docstring."""
    tgt, mode, cores = check_request(
        target, power_mode, precision, [batch], objective, strategy, dla_cores
    )
    for flag, value in (("--gpu-batch", gpu_batch), ("--dla-batch", dla_batch)):
        if value is not None and value < (0 if flag == "--gpu-batch" else 1):
            raise DlakitError(
                f"{flag} {value}: must be at least {0 if flag == '--gpu-batch' else 1}"
            )
    if transitions < 0:
        raise DlakitError(f"--transitions {transitions}: must be >= 0")
    costs = costs or costs_for(models, tgt, mode, precision, cores)
    pool = tgt.power_mode(mode).dram_gbps * 1e9 * load_params().dram_efficiency
    ctx = Context(
        target=tgt,
        power_mode=mode,
        precision=precision,
        batch=batch,
        models=costs,
        dla_cores=cores,
        switch_s=switch_s(),
        pool_bytes_per_s=pool,
        power=load_power_model(),
        objective=objective,
        gpu_batch=gpu_batch,
        dla_batch=dla_batch,
        transitions=transitions,
        pre=pre,
        post=post,
    )
    gpu_only = best(gpu.plans(ctx), ctx)
    wanted = list(STRATEGIES) if strategy == "auto" else [strategy]
    found: list[Candidate] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        if name == "gpu":
            found.append(gpu_only)
            continue
        try:
            found.append(best(_plans(STRATEGIES[name], ctx), ctx))
        except NotApplicable as exc:
            if strategy != "auto":
                raise DlakitError(f"--strategy {name} cannot apply: {exc}") from None
            skipped[name] = str(exc)
    for c in found:
        c.speedup_vs_gpu_only = (
            c.images_per_second / gpu_only.images_per_second if gpu_only.images_per_second else 0.0
        )
    chosen = max(found, key=lambda c: c.score(objective))
    return PlanResult(
        target=tgt.name,
        power_mode=mode,
        precision=precision,
        batch=batch,
        objective=objective,
        models=[c.name for c in costs],
        gpu_only=gpu_only,
        candidates=found,
        chosen=chosen,
        skipped=skipped,
        versions={"dla": model_version(), "gpu": gpu_model_version()},
    )


def _plans(module: ModuleType, ctx: Context) -> list:
    planner: Callable[[Context], list] = module.plans
    return planner(ctx)
