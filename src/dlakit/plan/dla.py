"""Strategy ``dla``: each model on the DLA cores, the layers ``check`` keeps off the DLA on the
GPU (TensorRT's GPU fallback in one engine), the batch split over the cores.

Each core runs its share of the batch as one loop through each DLA run of layers, hands over
to the GPU for a fallback run, and back: the partition ``check`` computes, costed.
"""

from __future__ import annotations

from dlakit.plan.plans import Context, NotApplicable, Plan, Step, TaskList


def split(images: int, parts: int) -> list[int]:
    """``images`` over ``parts`` as evenly as possible (the first ones take the remainder)."""
    base, rest = divmod(images, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def plans(ctx: Context) -> list[Plan]:
    if not ctx.dla_cores:
        raise NotApplicable("no DLA core to run on (--dla-cores 0)")
    for costs in ctx.models:
        if not any(g.dla_ok for g in costs.groups):
            raise NotApplicable(f"{costs.name}: no layer runs on the DLA")
    shares = [n for n in split(ctx.batch, ctx.dla_cores) if n > 0]
    cores = ctx.dlas[: len(shares)]

    def build(tl: TaskList, r: int) -> None:
        for m in range(len(ctx.models)):
            start = tl.start(r, m)
            last = [
                tl.dla_with_fallback(m, core, n, start, r, f"dla b={n}")
                for core, n in zip(cores, shares, strict=True)
            ]
            tl.end(r, m, last)

    steps = []
    for m, costs in enumerate(ctx.models):
        first = 0
        for core, n in zip(cores, shares, strict=True):
            steps.append(Step(m, 0, costs.n_groups, core, first, first + n, fallback=True))
            first += n
    text = ", ".join(f"{c} b={n}" for c, n in zip(cores, shares, strict=True))
    batches = dict(zip(cores, shares, strict=True))
    if any(not g.dla_ok for c in ctx.models for g in c.groups):
        batches["gpu"] = ctx.batch
        text += "; fallback layers on the GPU"
    return [Plan("dla", text, build, steps, batches)]
