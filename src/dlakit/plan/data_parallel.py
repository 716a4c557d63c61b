"""Strategy ``data-parallel`` (seed 004, KSC 2022): the front on sub-batches over every device.

The DLA-able front of the model (its first groups, all on the DLA by ``check``) runs on
sub-batches at once: ``dla_batch`` images on each DLA core and ``gpu_batch`` on the GPU; the
features are gathered (a reformat pass on the GPU for each DLA's share) and the tail runs on the
GPU over the whole sub-batch. The batch may be processed in ``repeats`` rounds of smaller
sub-batches, so that one repeat's tail overlaps the next repeat's front. The search tries every
front length (cut), repeat count (1, 2, 4, ..., 16) and DLA sub-batch with a closed-form
estimate, then simulates the three best. At least one image goes to a DLA: with none it is the
``gpu`` strategy, which ``auto`` compares against anyway.
"""

from __future__ import annotations

import math

import numpy as np

from dlakit.errors import DlakitError
from dlakit.plan.plans import Context, NotApplicable, Plan, Step, TaskList

REPEATS = (1, 2, 4, 8, 16)


def plans(ctx: Context) -> list[Plan]:
    if len(ctx.models) != 1:
        raise NotApplicable("data-parallel splits one model's batch: give one model")
    if not ctx.dla_cores:
        raise NotApplicable("no DLA core for the front (--dla-cores 0)")
    costs = ctx.models[0]
    if costs.front == 0:
        raise NotApplicable(f"{costs.name}: no DLA-able front (its first layers run on the GPU)")
    b = ctx.batch
    options = []
    for n in range(1, ctx.dla_cores + 1):  # cores used
        options += _search(ctx, n)
    if not options:
        if ctx.gpu_batch is None and ctx.dla_batch is None:
            raise NotApplicable(f"batch {b} leaves no image for a DLA")
        raise DlakitError(
            f"--gpu-batch/--dla-batch: {ctx.gpu_batch} + cores x {ctx.dla_batch} images "
            f"do not make --batch {b} (or a repeat of it)"
        )
    options.sort()
    return [_plan(ctx, n, f, reps, k, gb) for _, n, f, reps, k, gb in options[:3]]


def _search(ctx: Context, n: int) -> list[tuple]:
    """Closed-form estimates of every front length, repeat count and split on ``n`` cores."""
    costs, b = ctx.models[0], ctx.batch
    gpu = costs.gpu
    options = []
    for reps in REPEATS:
        per_rep = math.ceil(b / reps)
        if reps > 1 and per_rep < n + 1:
            break
        k = np.arange(1, per_rep // n + 1)
        if ctx.dla_batch is not None:
            k = k[k == ctx.dla_batch]
        gb = per_rep - n * k
        if ctx.gpu_batch is not None:
            k, gb = k[gb == ctx.gpu_batch], gb[gb == ctx.gpu_batch]
        if not len(k):
            continue
        # GPU time of the front's first f groups at each GPU sub-batch, for every f at once.
        per_group = np.array([costs.gpu_curve(g, g + 1, gb) for g in range(costs.front)])
        front_gpu = np.cumsum(per_group, axis=0)
        for f in range(1, costs.front + 1):
            dla = k * costs.dla_time(0, f) + ctx.switch_s
            tail = ref = 0.0
            if f < costs.n_groups:
                tail = costs.gpu_time(f, costs.n_groups, per_rep)
                # One reformat per DLA share: a launch, then the features read and written.
                moved = 2.0 * costs.crossing(f) * k * gpu.bytes_per_elem / gpu.bytes_per_s
                ref = n * (costs.gpu_params.launch_us * 1e-6 + moved)
            front = front_gpu[f - 1]
            period = np.maximum(dla, front + ref + tail)
            total = (reps - 1) * period + np.maximum(dla, front) + ref + tail
            # Batches follow each other: the next batch's fronts overlap this one's last tail.
            score = total if ctx.objective == "latency" else reps * period
            for i in np.argsort(score)[:2]:
                options.append((float(score[i]), n, f, reps, int(k[i]), int(gb[i])))
    return options


def _plan(ctx: Context, n: int, f: int, reps: int, k: int, gb: int) -> Plan:
    costs = ctx.models[0]
    n_groups, cores, b = costs.n_groups, ctx.dlas[:n], ctx.batch
    # Repeat j covers images [j * per_rep, ...): the last repeat takes what is left.
    per_rep = math.ceil(b / reps)
    spans = [(j * per_rep, min(b, (j + 1) * per_rep)) for j in range(reps)]
    spans = [s for s in spans if s[1] > s[0]]

    def shares(first: int, last: int) -> list[tuple[str, int, int]]:
        """(device, first, last) of one repeat: DLA cores first, the GPU takes the rest."""
        out, at = [], first
        for core in cores:
            take = min(k, last - at)
            if take > 0:
                out.append((core, at, at + take))
                at += take
        if last > at:
            out.append(("gpu", at, last))
        return out

    def build(tl: TaskList, r: int) -> None:
        start = tl.start(r, 0)
        pending: list[tuple[list[tuple[str, int]], int]] = []

        def finish(fronts: list[tuple[str, int]], images: int) -> None:
            if f == n_groups:
                tl.end(r, 0, [i for _, i in fronts])
                return
            deps = []
            for dev, i in fronts:
                got, _ = tl.handoff(0, i, dev, "gpu", f, images_of[i], r)
                deps += got
            tail = tl.work(0, f, n_groups, "gpu", images, deps, f"tail b={images}", r)
            tl.end(r, 0, [tail])

        images_of: dict[int, int] = {}
        for first, last in spans:
            fronts = []
            for dev, a, z in shares(first, last):
                delay = ctx.switch_s if dev.startswith("dla") else 0.0
                i = tl.work(0, 0, f, dev, z - a, start, f"front b={z - a}", r, delay)
                images_of[i] = z - a
                fronts.append((dev, i))
            if pending:  # the previous repeat's gather and tail, after this repeat's fronts
                finish(*pending.pop())
            pending.append((fronts, last - first))
        finish(*pending.pop())

    steps = []
    for first, last in spans:
        for dev, a, z in shares(first, last):
            steps.append(Step(0, 0, f, dev, a, z))
        if f < n_groups:
            steps.append(Step(0, f, n_groups, "gpu", first, last))
    batches = {**dict.fromkeys(cores, k), "gpu": gb}
    text = (
        f"front (groups 0-{f - 1}) on "
        + ", ".join(f"{c} b={k}" for c in cores)
        + f", gpu b={gb}; tail on the gpu"
        + (f"; {reps} repeats" if reps > 1 else "")
    )
    detail = {"front_groups": f, "repeats": reps, "dla_batch": k, "gpu_batch": gb}
    return Plan("data-parallel", text, build, steps, batches, detail)
