"""Strategy ``layer-map`` (HaX-CoNN): each layer group of one or several concurrent models on
the GPU or a DLA, at most ``transitions`` device changes per model, solved with OR-Tools CP-SAT.

The space is (1 + DLA cores) ^ groups per model, beyond exhaustive search for two ResNet-class
models, so it is a constraint model: a Boolean per (model, group, device), a change indicator per
consecutive pair, at most ``transitions`` changes per model, and

* objective ``throughput`` (models streaming concurrently, rounds overlapping): minimise the
  busiest device's time per round, each group at its device's time for the batch, each change
  adding the switch and its reformat on the GPU;
* objectives ``latency`` and ``energy``: minimise the makespan of one round, with an optional
  interval per (group, device), no overlap on a device, groups of a model in order and a
  change's switch time between them.

Contention is not linear, so it enters by iteration (as HaX-CoNN feeds its PCCS slowdowns to
its solver): each device's group times are scaled by the slowdown the event simulation of the
previous solution showed on it, and the model is solved again (three solves in all).
"""

from __future__ import annotations

from dlakit.extras import missing_extra
from dlakit.perf.transition import reformat_phase
from dlakit.plan.plans import (
    Candidate,
    Context,
    NotApplicable,
    Plan,
    Step,
    TaskList,
    evaluate,
)

TICKS_PER_S = 1e7  # solver time unit: 0.1 us
SOLVES = 3
SOLVER_SECONDS = 8.0


def _solver():
    try:
        from ortools.sat.python import cp_model
    except ModuleNotFoundError as exc:  # auto lists layer-map as not applicable, with this reason
        raise NotApplicable(str(missing_extra(exc, "the layer mapping"))) from None
    return cp_model


def plans(ctx: Context) -> list[Plan]:
    if not ctx.dla_cores:
        raise NotApplicable("no DLA core to map layers to (--dla-cores 0)")
    if not any(g.dla_ok for c in ctx.models for g in c.groups):
        raise NotApplicable("no layer group runs on the DLA")
    devices = ["gpu", *ctx.dlas]
    slow = dict.fromkeys(devices, 1.0)
    found: list[Plan] = []
    seen: set[tuple] = set()
    for _ in range(SOLVES):
        assign, starts = _solve(ctx, devices, slow)
        key = tuple(tuple(a) for a in assign)
        plan = _plan(ctx, assign, starts)
        if key not in seen:
            seen.add(key)
            found.append(plan)
        cand = evaluate(plan, ctx)
        slow = _slowdowns(ctx, assign, cand, devices)
    return found


def _times(
    ctx: Context, m: int, devices: list[str], slow: dict[str, float]
) -> list[dict[str, float]]:
    costs = ctx.models[m]
    b = ctx.batch
    gpu = costs.gpu_times(b)
    out = []
    for g, group in enumerate(costs.groups):
        t = {"gpu": float(gpu[g]) * slow["gpu"]}
        if group.dla_ok:
            for d in devices[1:]:
                t[d] = b * float(costs.dla_group_times[g]) * slow[d]
        out.append(t)
    return out


def _change_cost(ctx: Context, m: int, g: int) -> tuple[float, float]:
    """(switch seconds, GPU reformat seconds) of a device change before group ``g``."""
    costs = ctx.models[m]
    elems = costs.crossing(g) * ctx.batch
    phase = reformat_phase(elems, costs.gpu, costs.gpu_params)
    return ctx.switch_s, phase.time_at(costs.gpu.bytes_per_s)


def _solve(ctx: Context, devices: list[str], slow: dict[str, float]):
    cp_model = _solver()
    model = cp_model.CpModel()

    def ticks(s: float) -> int:
        return max(0, round(s * TICKS_PER_S))

    x: list[list[dict[str, object]]] = []
    changes: list[list[object]] = []
    times = [_times(ctx, m, devices, slow) for m in range(len(ctx.models))]
    for m, costs in enumerate(ctx.models):
        xm = []
        for g in range(costs.n_groups):
            options = {d: model.NewBoolVar(f"x{m}_{g}_{d}") for d in times[m][g]}
            model.AddExactlyOne(options.values())
            xm.append(options)
        cm = []
        for g in range(1, costs.n_groups):
            y = model.NewBoolVar(f"y{m}_{g}")
            for d in devices:
                a, b = xm[g].get(d), xm[g - 1].get(d)
                if a is not None and b is not None:
                    model.Add(y >= a - b)
                elif a is not None:
                    model.Add(y >= a)
            cm.append(y)
        model.Add(sum(cm) <= ctx.transitions)
        x.append(xm)
        changes.append(cm)
    horizon = sum(
        ticks(max(t.values())) + ticks(sum(_change_cost(ctx, m, g)))
        for m in range(len(ctx.models))
        for g, t in enumerate(times[m])
    )
    starts: list[list[object]] = []
    if ctx.objective == "throughput":
        loads = []
        for d in devices:
            terms = [
                ticks(times[m][g][d]) * x[m][g][d]
                for m in range(len(ctx.models))
                for g in range(len(times[m]))
                if d in x[m][g]
            ]
            if d == "gpu":
                terms += [
                    ticks(_change_cost(ctx, m, g + 1)[1]) * y
                    for m in range(len(ctx.models))
                    for g, y in enumerate(changes[m])
                ]
            loads.append(sum(terms))
        bottleneck = model.NewIntVar(0, horizon, "bottleneck")
        for load in loads:
            model.Add(bottleneck >= load)
        # Ties: fewer changes (shorter latency, fewer loadables).
        model.Minimize(bottleneck * 1000 + sum(y for cm in changes for y in cm))
    else:
        per_device: dict[str, list] = {d: [] for d in devices}
        ends = []
        for m in range(len(ctx.models)):
            sm = []
            prev_end = None
            for g, t in enumerate(times[m]):
                s = model.NewIntVar(0, horizon, f"s{m}_{g}")
                e = model.NewIntVar(0, horizon, f"e{m}_{g}")
                for d, dt in t.items():
                    iv = model.NewOptionalFixedSizeIntervalVar(
                        s, ticks(dt), x[m][g][d], f"i{m}_{g}_{d}"
                    )
                    per_device[d].append(iv)
                    model.Add(e == s + ticks(dt)).OnlyEnforceIf(x[m][g][d])
                if prev_end is not None:
                    switch, reformat = _change_cost(ctx, m, g)
                    model.Add(s >= prev_end + ticks(switch + reformat) * changes[m][g - 1])
                prev_end = e
                sm.append(s)
            ends.append(prev_end)
            starts.append(sm)
        for ivs in per_device.values():
            model.AddNoOverlap(ivs)
        makespan = model.NewIntVar(0, horizon, "makespan")
        model.AddMaxEquality(makespan, ends)
        model.Minimize(makespan)
    solver = cp_model.CpSolver()
    # One worker and a deterministic time limit: the same request gives the same mapping on any
    # machine and under any load (a sweep's shards, run anywhere, equal one process's run).
    solver.parameters.max_deterministic_time = SOLVER_SECONDS
    solver.parameters.num_workers = 1
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise NotApplicable(f"the solver found no mapping ({solver.StatusName(status)})")
    assign = [[next(d for d, v in xg.items() if solver.Value(v)) for xg in xm] for xm in x]
    start_values = [[solver.Value(s) for s in sm] for sm in starts] if starts else None
    return assign, start_values


def _runs(assign: list[str]) -> list[tuple[int, int, str]]:
    runs: list[tuple[int, int, str]] = []
    for g, d in enumerate(assign):
        if runs and runs[-1][2] == d:
            runs[-1] = (runs[-1][0], g + 1, d)
        else:
            runs.append((g, g + 1, d))
    return runs


def _plan(ctx: Context, assign: list[list[str]], starts) -> Plan:
    b = ctx.batch
    runs = [_runs(a) for a in assign]
    # Queue order: by the solver's start times (latency), else round-robin over the models.
    items = []
    for m, rm in enumerate(runs):
        for k, (lo, _, _) in enumerate(rm):
            key = starts[m][lo] if starts else k
            items.append((key, m, k))
    items.sort()

    def build(tl: TaskList, r: int) -> None:
        last: dict[int, tuple[int, str]] = {}
        for _, m, k in items:
            lo, hi, dev = runs[m][k]
            if m not in last:
                deps = tl.start(r, m)
                delay = ctx.switch_s if dev.startswith("dla") else 0.0
            else:
                prev, prev_dev = last[m]
                deps, delay = tl.handoff(m, prev, prev_dev, dev, lo, b, r)
            i = tl.work(m, lo, hi, dev, b, deps, f"{ctx.models[m].name} {lo}-{hi - 1}", r, delay)
            last[m] = (i, dev)
            if k == len(runs[m]) - 1:
                tl.end(r, m, [i])

    steps = [Step(m, lo, hi, dev, 0, b) for m, rm in enumerate(runs) for lo, hi, dev in rm]
    batches: dict[str, int] = {}
    for rm in runs:
        for _, _, dev in rm:
            batches[dev] = b
    text = "; ".join(
        f"{ctx.models[m].name}: " + ", ".join(f"{lo}-{hi - 1} {dev}" for lo, hi, dev in rm)
        for m, rm in enumerate(runs)
    )
    detail = {"assignment": [list(a) for a in assign], "transitions": ctx.transitions}
    return Plan("layer-map", text, build, steps, batches, detail)


def _slowdowns(
    ctx: Context, assign: list[list[str]], cand: Candidate, devices: list[str]
) -> dict[str, float]:
    """Simulated busy time over the time alone, per device (1 where a device ran nothing)."""
    alone = dict.fromkeys(devices, 0.0)
    for m, a in enumerate(assign):
        times = _times(ctx, m, devices, dict.fromkeys(devices, 1.0))
        for g, d in enumerate(a):
            alone[d] += times[g][d]
    slow = {}
    for d in devices:
        busy = cand.devices.get(d, {}).get("busy_ms", 0.0) / 1e3
        slow[d] = max(1.0, busy / alone[d]) if alone[d] > 0 else 1.0
    return slow
