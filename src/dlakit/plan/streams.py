"""Strategy ``streams``: every device runs its own stream of whole-model inferences at once.

jetson_benchmarks' one stream per device, or the DLA FAQ's two trtexec processes: the GPU runs
``gpu_batch`` images per inference, each DLA core ``dla_batch`` (its non-DLA layers on the GPU),
all at the same time, sharing the DRAM. One model: the request's batch is split over the
devices; the search balances the devices' latencies (throughput = sum of batch / latency). Several
models: each model gets one device for all its images (every assignment is tried).
"""

from __future__ import annotations

import itertools

import numpy as np

from dlakit.errors import DlakitError
from dlakit.plan.costs import ModelCosts
from dlakit.plan.plans import Context, NotApplicable, Plan, Step, TaskList, dla_runs

MAX_ASSIGNMENTS = 81  # 4 models on 3 devices


def dla_stream_time(costs: ModelCosts, images: int, switch_s: float) -> tuple[float, float]:
    """(DLA seconds, GPU seconds) of one whole-model inference of ``images`` on one core."""
    dla = gpu = 0.0
    for lo, hi, on_dla in dla_runs(costs):
        if on_dla:
            dla += images * costs.dla_time(lo, hi) + switch_s
        else:
            gpu += costs.gpu_time(lo, hi, images)
    return dla, gpu


def plans(ctx: Context) -> list[Plan]:
    if not ctx.dla_cores:
        raise NotApplicable("no DLA core to run a stream on (--dla-cores 0)")
    if len(ctx.models) == 1:
        return _one_model(ctx)
    return _assignments(ctx)


def _one_model(ctx: Context) -> list[Plan]:
    costs = ctx.models[0]
    if not any(g.dla_ok for g in costs.groups):
        raise NotApplicable(f"{costs.name}: no layer runs on the DLA")
    b = ctx.batch
    runs = dla_runs(costs)
    options = []
    for n in range(1, ctx.dla_cores + 1):  # cores used
        per_core = np.arange(1, b // n + 1)
        if ctx.dla_batch is not None:
            per_core = per_core[per_core == ctx.dla_batch]
        gpu_b = b - n * per_core
        if ctx.gpu_batch is not None:
            per_core, gpu_b = per_core[gpu_b == ctx.gpu_batch], gpu_b[gpu_b == ctx.gpu_batch]
        if not len(per_core):
            continue
        dla_s = sum(per_core * costs.dla_time(lo, hi) + ctx.switch_s for lo, hi, ok in runs if ok)
        fallback_s = sum(
            (costs.gpu_curve(lo, hi, per_core) for lo, hi, ok in runs if not ok),
            np.zeros(len(per_core)),
        )
        gpu_s = costs.gpu_curve(0, costs.n_groups, gpu_b) + n * fallback_s
        # The devices' streams run side by side: a round lasts as long as its slowest stream.
        round_s = np.maximum(dla_s, gpu_s)
        for i in np.argsort(round_s)[:3]:
            options.append((float(round_s[i]), n, int(per_core[i]), int(gpu_b[i])))
    if not options:
        if ctx.gpu_batch is None and ctx.dla_batch is None:
            raise NotApplicable(f"batch {b} leaves no image for a DLA stream")
        raise DlakitError(
            f"--gpu-batch/--dla-batch: {ctx.gpu_batch} + cores x {ctx.dla_batch} images "
            f"do not make --batch {b}"
        )
    options.sort()
    return [_plan(ctx, n, per_core, gpu_b) for _, n, per_core, gpu_b in options[:3]]


def _plan(ctx: Context, n: int, per_core: int, gpu_b: int) -> Plan:
    costs = ctx.models[0]
    cores = ctx.dlas[:n]

    def build(tl: TaskList, r: int) -> None:
        start = tl.start(r, 0)
        last = []
        if gpu_b:
            last.append(tl.work(0, 0, costs.n_groups, "gpu", gpu_b, start, f"gpu b={gpu_b}", r))
        for core in cores:
            last.append(tl.dla_with_fallback(0, core, per_core, start, r, f"{core} b={per_core}"))
        tl.end(r, 0, last)

    steps = [Step(0, 0, costs.n_groups, "gpu", 0, gpu_b)] if gpu_b else []
    first = gpu_b
    for core in cores:
        steps.append(Step(0, 0, costs.n_groups, core, first, first + per_core, fallback=True))
        first += per_core
    batches = {"gpu": gpu_b, **dict.fromkeys(cores, per_core)}
    text = f"whole model: gpu b={gpu_b}, " + ", ".join(f"{c} b={per_core}" for c in cores)
    return Plan("streams", text, build, steps, batches, {"gpu_batch": gpu_b, "dla_batch": per_core})


def _assignments(ctx: Context) -> list[Plan]:
    devices = ["gpu", *ctx.dlas]
    options = []
    for assign in itertools.islice(
        itertools.product(devices, repeat=len(ctx.models)), MAX_ASSIGNMENTS
    ):
        if all(d == "gpu" for d in assign):
            continue  # that is the gpu strategy
        if any(
            d != "gpu" and not any(g.dla_ok for g in c.groups)
            for d, c in zip(assign, ctx.models, strict=True)
        ):
            continue
        load = dict.fromkeys(devices, 0.0)
        for d, c in zip(assign, ctx.models, strict=True):
            if d == "gpu":
                load["gpu"] += c.gpu_time(0, c.n_groups, ctx.batch)
            else:
                dla_s, gpu_s = dla_stream_time(c, ctx.batch, ctx.switch_s)
                load[d] += dla_s
                load["gpu"] += gpu_s
        options.append((max(load.values()), assign))
    if not options:
        raise NotApplicable("no model has a layer that runs on the DLA")
    options.sort()
    return [_assigned(ctx, assign) for _, assign in options[:3]]


def _assigned(ctx: Context, assign: tuple[str, ...]) -> Plan:
    b = ctx.batch

    def build(tl: TaskList, r: int) -> None:
        for m, (dev, costs) in enumerate(zip(assign, ctx.models, strict=True)):
            start = tl.start(r, m)
            if dev == "gpu":
                last = tl.work(m, 0, costs.n_groups, "gpu", b, start, costs.name, r)
            else:
                last = tl.dla_with_fallback(m, dev, b, start, r, costs.name)
            tl.end(r, m, [last])

    steps = [
        Step(m, 0, c.n_groups, d, 0, b, fallback=d != "gpu")
        for m, (d, c) in enumerate(zip(assign, ctx.models, strict=True))
    ]
    batches: dict[str, int] = {}
    for d in assign:
        batches[d] = batches.get(d, 0) + b
    text = ", ".join(f"{c.name} on {d}" for d, c in zip(assign, ctx.models, strict=True))
    return Plan("streams", text, build, steps, batches, {"assignment": list(assign)})
