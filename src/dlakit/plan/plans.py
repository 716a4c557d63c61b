"""What every strategy shares: the request's context, a plan, its tasks, and its evaluation.

A :class:`Plan` says which device runs which groups of which model for which images (its
``steps``, also what ``--emit`` writes) and builds the tasks of one *round* (the request's
batch of every model). :func:`evaluate` simulates three rounds back to back: the latency is the
end of the first round, the throughput the images of a round over the steady-state period
(the mean gap between round ends), so work of one round that overlaps the next (a tail on the
GPU while the DLAs start the next batch, a CPU pre-processing stage) counts as it would in a
stream of batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dlakit.errors import DlakitError
from dlakit.perf.contention import Phase
from dlakit.perf.power import PowerModel
from dlakit.perf.transition import reformat_phase
from dlakit.plan.costs import ModelCosts
from dlakit.plan.simulate import Task, Timeline, simulate
from dlakit.targets import Target

ROUNDS = 3
MAX_LOOP_PHASES = 120  # a DLA batch loop longer than this is simulated in chunks of images


class NotApplicable(DlakitError):
    """A strategy that cannot apply to this request (the message says why)."""


@dataclass(frozen=True)
class Stage:
    """Pre- or post-processing of every image: on ``device``, ``s_per_image`` seconds (None:
    estimated, on the GPU only: one read and one write of the model's input or outputs)."""

    device: str
    s_per_image: float | None = None


@dataclass
class Context:
    target: Target
    power_mode: str
    precision: str
    batch: int
    models: list[ModelCosts]
    dla_cores: int
    switch_s: float
    pool_bytes_per_s: float
    power: PowerModel
    objective: str = "throughput"
    gpu_batch: int | None = None
    dla_batch: int | None = None
    transitions: int = 2
    pre: Stage | None = None
    post: Stage | None = None

    @property
    def dlas(self) -> list[str]:
        return [f"dla{i}" for i in range(self.dla_cores)]

    @property
    def caps(self) -> dict[str, float]:
        caps = {"gpu": self.models[0].gpu.bytes_per_s, "cpu": 0.0}
        for d in self.dlas:
            caps[d] = self.models[0].dla_bytes_per_s
        return caps


@dataclass(frozen=True)
class Step:
    """Run groups ``[lo, hi)`` of model ``model`` on ``device`` for images ``[first, last)``.
    ``fallback``: a DLA step whose non-DLA layers TensorRT runs on the GPU (one engine)."""

    model: int
    lo: int
    hi: int
    device: str
    first: int
    last: int
    fallback: bool = False

    @property
    def images(self) -> int:
        return self.last - self.first


@dataclass
class Plan:
    strategy: str
    description: str
    build: Callable[[TaskList, int], None]  # adds one round's tasks
    steps: list[Step]
    batches: dict[str, int]  # images per round each device starts inferences on
    detail: dict[str, Any] = field(default_factory=dict)
    evaluated: Candidate | None = None  # memo of :func:`evaluate`


@dataclass
class Candidate:
    """An evaluated plan: the numbers every strategy reports."""

    plan: Plan
    images_per_second: float
    latency_ms: float
    devices: dict[str, dict[str, float]]
    watts: float
    images_per_joule: float
    timeline: Timeline
    speedup_vs_gpu_only: float = 1.0

    @property
    def strategy(self) -> str:
        return self.plan.strategy

    def score(self, objective: str) -> float:
        """Larger is better."""
        if objective == "latency":
            return -self.latency_ms
        if objective == "energy":
            return self.images_per_joule
        return self.images_per_second


class TaskList:
    """The tasks of a plan in a topological order, with the helpers strategies build from."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tasks: list[Task] = []
        self._pre: dict[tuple[int, int], int] = {}

    def add(self, task: Task) -> int:
        task.phases = [p for p in task.phases if p.fixed_s or p.compute_s or p.dram_bytes]
        self.tasks.append(task)
        return len(self.tasks) - 1

    def start(self, r: int, m: int) -> list[int]:
        """Dependencies of round ``r``'s first work on model ``m`` (its pre-processing)."""
        stage = self.ctx.pre
        if stage is None:
            return []
        key = (r, m)
        if key not in self._pre:
            costs = self.ctx.models[m]
            elems = sum(_per_image(costs, t) for t in costs.model.input_names)
            phase = _stage_phase(stage, elems, self.ctx.batch, costs, "pre")
            self._pre[key] = self.add(Task(stage.device, "pre", [phase], round=r, model=m))
        return [self._pre[key]]

    def end(self, r: int, m: int, last: list[int]) -> None:
        """Post-processing of round ``r``'s model ``m`` after the tasks ``last``."""
        stage = self.ctx.post
        if stage is None:
            return
        costs = self.ctx.models[m]
        elems = sum(_per_image(costs, t) for t in costs.model.output_names)
        phase = _stage_phase(stage, elems, self.ctx.batch, costs, "post")
        self.add(Task(stage.device, "post", [phase], deps=list(last), round=r, model=m))

    def work(
        self,
        m: int,
        lo: int,
        hi: int,
        device: str,
        images: int,
        deps: list[int],
        label: str,
        r: int,
        delay_s: float = 0.0,
    ) -> int:
        """Groups ``[lo, hi)`` of model ``m`` for ``images`` images on ``device``."""
        costs = self.ctx.models[m]
        if device.startswith("dla"):
            if not costs.dla_ok(lo, hi):
                raise DlakitError(f"internal: groups {lo}-{hi} of {costs.name} are not DLA-able")
            phases = loop_phases(costs.dla_phases(lo, hi), images)
        else:
            phases = costs.gpu_phases(lo, hi, images)
        task = Task(device, label, phases, deps=list(deps), delay_s=delay_s, round=r, model=m)
        return self.add(task)

    def handoff(
        self, m: int, src: int, src_device: str, dst_device: str, cut: int, images: int, r: int
    ) -> tuple[list[int], float]:
        """Hand the tensors at cut ``cut`` from ``src_device`` to ``dst_device``: returns the
        dependencies and the delay for the consumer (a reformat on the GPU between a DLA and
        the GPU, a switch whenever a DLA is on either side)."""
        if src_device == dst_device:
            return [src], 0.0
        ctx = self.ctx
        costs = ctx.models[m]
        crosses_gpu = "gpu" in (src_device, dst_device)
        touches_dla = src_device.startswith("dla") or dst_device.startswith("dla")
        if crosses_gpu and touches_dla:
            elems = costs.crossing(cut) * images
            phase = reformat_phase(elems, costs.gpu, costs.gpu_params)
            delay = ctx.switch_s if src_device.startswith("dla") else 0.0
            i = self.add(
                Task("gpu", "reformat", [phase], deps=[src], delay_s=delay, round=r, model=m)
            )
            return [i], ctx.switch_s if dst_device.startswith("dla") else 0.0
        return [src], ctx.switch_s if touches_dla else 0.0

    def dla_with_fallback(
        self, m: int, device: str, images: int, deps: list[int], r: int, label: str
    ) -> int:
        """The whole model on DLA core ``device``, its non-DLA groups on the GPU (TensorRT's
        GPU fallback), with a handoff at every switch; returns the last task."""
        costs = self.ctx.models[m]
        runs = dla_runs(costs)
        prev: int | None = None
        prev_device = ""
        for lo, hi, on_dla in runs:
            dev = device if on_dla else "gpu"
            if prev is None:
                wait, delay = list(deps), self.ctx.switch_s if on_dla else 0.0
            else:
                wait, delay = self.handoff(m, prev, prev_device, dev, lo, images, r)
            prev = self.work(m, lo, hi, dev, images, wait, label, r, delay)
            prev_device = dev
        assert prev is not None
        return prev


def dla_runs(costs: ModelCosts) -> list[tuple[int, int, bool]]:
    """Maximal runs of groups that are (or are not) DLA-able: (lo, hi, on_dla)."""
    runs: list[tuple[int, int, bool]] = []
    for i, g in enumerate(costs.groups):
        ok = g.dla_ok and costs.dla is not None
        if runs and runs[-1][2] == ok:
            runs[-1] = (runs[-1][0], i + 1, ok)
        else:
            runs.append((i, i + 1, ok))
    return runs


def loop_phases(per_image: list[Phase], images: int) -> list[Phase]:
    """A DLA batch loop: the per-image phases ``images`` times (chunks of images beyond
    :data:`MAX_LOOP_PHASES` phases, each layer's phase scaled by the chunk)."""
    if images <= 0 or not per_image:
        return []
    if images * len(per_image) <= MAX_LOOP_PHASES:
        return per_image * images
    chunk = math.ceil(images * len(per_image) / MAX_LOOP_PHASES)
    full, rest = divmod(images, chunk)
    scaled = [_scale(p, chunk) for p in per_image]
    phases = scaled * full
    if rest:
        phases += [_scale(p, rest) for p in per_image]
    return phases


def _scale(p: Phase, k: int) -> Phase:
    return Phase(p.fixed_s * k, p.compute_s * k, p.dram_bytes * k, p.macs * k)


def _per_image(costs: ModelCosts, name: str) -> int:
    shape = costs.model.shapes.get(name, ())
    return math.prod(shape[1:]) if len(shape) >= 2 else 1


def _stage_phase(stage: Stage, elems: int, batch: int, costs: ModelCosts, what: str) -> Phase:
    if stage.s_per_image is not None:
        return Phase(stage.s_per_image * batch, 0.0, 0.0)
    if stage.device != "gpu":
        raise DlakitError(f"--{what} {stage.device}: give its time (--{what} {stage.device}:MS)")
    # One pass over the model's input (or outputs): read the source, write the tensor.
    gpu = costs.gpu
    nbytes = 2.0 * elems * batch * max(1, gpu.bytes_per_elem)
    return Phase(costs.gpu_params.launch_us * 1e-6, 0.0, nbytes)


def evaluate(plan: Plan, ctx: Context, rounds: int = ROUNDS) -> Candidate:
    """Simulate ``rounds`` rounds of ``plan`` and read off its numbers."""
    if plan.evaluated is not None:
        return plan.evaluated
    tl = TaskList(ctx)
    for r in range(rounds):
        plan.build(tl, r)
    timeline = simulate(tl.tasks, ctx.caps, ctx.pool_bytes_per_s)
    ends = [0.0] * rounds
    for i, task in enumerate(tl.tasks):
        ends[task.round] = max(ends[task.round], timeline.ends[i])
    latency = ends[0]
    period = (ends[-1] - ends[0]) / (rounds - 1) if rounds > 1 else latency
    period = period if period > 0 else latency
    images = ctx.batch * len(ctx.models)
    devices: dict[str, dict[str, float]] = {}
    energy = 0.0
    for dev in sorted(timeline.busy_s):
        busy = timeline.busy_s[dev] / rounds
        devices[dev] = {
            "batch": plan.batches.get(dev, 0),
            "busy_ms": busy * 1e3,
            "utilization": min(1.0, busy / period) if period else 0.0,
            "dram_gbps": timeline.dram_bytes[dev] / rounds / period / 1e9 if period else 0.0,
        }
        energy += _energy(ctx, dev, timeline.macs[dev] / rounds, busy)
    watts = energy / period if period else 0.0
    plan.evaluated = Candidate(
        plan=plan,
        images_per_second=images / period if period else 0.0,
        latency_ms=latency * 1e3,
        devices=devices,
        watts=watts,
        images_per_joule=images / energy if energy else 0.0,
        timeline=timeline,
    )
    return plan.evaluated


def _energy(ctx: Context, device: str, macs: float, busy_s: float) -> float:
    power, target, mode = ctx.power, ctx.target, ctx.power_mode
    if device == "gpu":
        joules = macs * power.gpu_joules_per_mac(target, mode)
        return joules + power.gpu_static_watts(target) * busy_s
    if device.startswith("dla"):
        return macs * power.dla_joules_per_mac(target, mode)
    return 0.0  # the CPU is not an accelerator: not in the accelerator-power table


def best(plans: list[Plan], ctx: Context, keep: int = 2) -> Candidate:
    """Simulate the first ``keep`` plans (the search's best estimates) and return the best."""
    if not plans:
        raise NotApplicable("no plan of this strategy fits the request")
    found = [evaluate(p, ctx) for p in plans[:keep]]
    return max(found, key=lambda c: c.score(ctx.objective))
