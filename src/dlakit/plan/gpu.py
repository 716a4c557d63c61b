"""Strategy ``gpu``: every layer of every model on the GPU, one model after the other.

The baseline every other strategy is compared with; ``auto`` always evaluates it, so the plan it
chooses is never worse than GPU only.
"""

from __future__ import annotations

from dlakit.plan.plans import Context, Plan, Step, TaskList


def plans(ctx: Context) -> list[Plan]:
    b = ctx.batch

    def build(tl: TaskList, r: int) -> None:
        for m, costs in enumerate(ctx.models):
            last = tl.work(m, 0, costs.n_groups, "gpu", b, tl.start(r, m), costs.name, r)
            tl.end(r, m, [last])

    steps = [Step(m, 0, c.n_groups, "gpu", 0, b) for m, c in enumerate(ctx.models)]
    return [Plan("gpu", f"every layer on the GPU at batch {b}", build, steps, {"gpu": b})]
