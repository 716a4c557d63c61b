"""Strategy ``pipeline`` (JEDI): the model cut into stages on the GPU, DLA0 and DLA1.

One or two cut points split the model into 2 or 3 stages, each on its own device in any order
(a DLA stage must be DLA-able). Micro-batches of ``m`` images flow through the stages; each
stage hands its output to the next through one of two buffers (a stage may run at most two
micro-batches ahead of its consumer). Throughput is ``m`` over the slowest stage, contention
included once simulated. The search costs every cut pair, device order and micro-batch (powers of
two, at most 32 micro-batches per batch) in closed form and simulates the three best.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from dlakit.perf.transition import reformat_phase
from dlakit.plan.plans import Context, NotApplicable, Plan, Step, TaskList

MAX_MICRO_BATCHES = 32
BUFFERS = 2  # hand-off buffers between two stages


def plans(ctx: Context) -> list[Plan]:
    if len(ctx.models) != 1:
        raise NotApplicable("pipeline stages one model: give one model")
    if not ctx.dla_cores:
        raise NotApplicable("no DLA core for a stage (--dla-cores 0)")
    costs = ctx.models[0]
    n = costs.n_groups
    if n < 2 or not any(g.dla_ok for g in costs.groups):
        raise NotApplicable(f"{costs.name}: no cut leaves a DLA-able stage")
    b = ctx.batch
    devices = ["gpu", *ctx.dlas]
    bad = np.concatenate([[0], np.cumsum([not g.dla_ok for g in costs.groups])])
    dla_pre = np.concatenate([[0.0], np.cumsum(costs.dla_group_times)])
    micro = sorted({m for m in (2**i for i in range(13)) if m <= b and b % m == 0} | {b})
    micro = [m for m in micro if b // m <= MAX_MICRO_BATCHES] or [b]
    options = []
    for m in micro:
        gpu_pre = np.concatenate([[0.0], np.cumsum(costs.gpu_times(m))])
        for stages in (2, 3):
            if stages > len(devices) or stages > n:
                continue
            for cuts in itertools.combinations(range(1, n), stages - 1):
                bounds = [0, *cuts, n]
                for order in itertools.permutations(devices, stages):
                    times = []
                    for s, dev in enumerate(order):
                        lo, hi = bounds[s], bounds[s + 1]
                        if dev == "gpu":
                            t = gpu_pre[hi] - gpu_pre[lo]
                            before = order[s - 1] if s else ""
                            after = order[s + 1] if s + 1 < stages else ""
                            for cut, other in ((lo, before), (hi, after)):
                                if other.startswith("dla"):
                                    t += _reformat_s(costs, costs.crossing(cut) * m)
                        else:
                            if bad[hi] - bad[lo]:
                                break
                            t = m * (dla_pre[hi] - dla_pre[lo]) + ctx.switch_s
                        times.append(t)
                    else:
                        slow = max(times)
                        latency = sum(times) + (b // m - 1) * slow
                        # Rounds follow each other through the stages: a round's period is
                        # its micro-batches times the slowest stage.
                        score = latency if ctx.objective == "latency" else (b // m) * slow
                        options.append((score, latency, m, tuple(bounds), order))
    if not options:
        raise NotApplicable(f"{costs.name}: no cut leaves a DLA-able stage")
    options.sort()
    return [_plan(ctx, m, bounds, order) for _, _, m, bounds, order in options[:3]]


def _reformat_s(costs, elems: int) -> float:
    return reformat_phase(elems, costs.gpu, costs.gpu_params).time_at(costs.gpu.bytes_per_s)


def _plan(ctx: Context, m: int, bounds: tuple[int, ...], order: tuple[str, ...]) -> Plan:
    b = ctx.batch
    micro = math.ceil(b / m)

    def build(tl: TaskList, r: int) -> None:
        start = tl.start(r, 0)
        done: dict[tuple[int, int], int] = {}
        last = []
        for j in range(micro):
            images = min(m, b - j * m)
            for s, dev in enumerate(order):
                lo, hi = bounds[s], bounds[s + 1]
                if s == 0:
                    deps, delay = list(start), ctx.switch_s if dev.startswith("dla") else 0.0
                else:
                    deps, delay = tl.handoff(0, done[(s - 1, j)], order[s - 1], dev, lo, images, r)
                if (s + 1, j - BUFFERS) in done:  # both hand-off buffers still full
                    deps.append(done[(s + 1, j - BUFFERS)])
                label = f"stage {s} b={images}"
                done[(s, j)] = tl.work(0, lo, hi, dev, images, deps, label, r, delay)
            last.append(done[(len(order) - 1, j)])
        tl.end(r, 0, last)

    steps = []
    for j in range(micro):
        first, stop = j * m, min(b, (j + 1) * m)
        for s, dev in enumerate(order):
            steps.append(Step(0, bounds[s], bounds[s + 1], dev, first, stop))
    stages = ", ".join(
        f"groups {bounds[s]}-{bounds[s + 1] - 1} on {dev}" for s, dev in enumerate(order)
    )
    text = f"{stages}; micro-batch {m}"
    detail = {"cuts": list(bounds[1:-1]), "devices": list(order), "micro_batch": m}
    return Plan("pipeline", text, build, steps, dict.fromkeys(order, m), detail)
