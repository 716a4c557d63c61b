"""Discrete-event simulation of a plan: devices, their task queues, and the shared DRAM.

One small event loop (no library: the rates change whenever any phase starts or ends, which a
fluid loop expresses directly). Each device runs its tasks one at a time in the order the plan
lists them (a CUDA stream, a DLA queue); a task starts when its dependencies have finished and
its ``delay_s`` (a DLA<->GPU switch) has passed. A task is a list of phases; at every event the
running phases share the DRAM pool max-min fairly (:mod:`dlakit.perf.contention`), which sets
each one's rate, and the loop advances to the next phase end or task release. Plans list their
tasks in a topological order, so the in-order queues cannot deadlock.

Results: per task its start and end; per device the busy time, DRAM bytes and MACs; the
piecewise-constant bandwidth of every device over time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlakit.errors import DlakitError
from dlakit.perf.contention import Phase, share_bandwidth


@dataclass
class Task:
    device: str  # "gpu", "dla0", "dla1", "cpu"
    label: str
    phases: list[Phase]
    deps: list[int] = field(default_factory=list)  # indices of earlier tasks
    delay_s: float = 0.0  # waited after the last dependency ends
    round: int = 0
    model: int = 0
    images: int = 0  # images whose inference this task completes


@dataclass
class Span:
    device: str
    label: str
    start: float
    end: float
    round: int


@dataclass
class Timeline:
    spans: list[Span]
    ends: list[float]  # per task
    busy_s: dict[str, float]
    dram_bytes: dict[str, float]
    macs: dict[str, float]
    # (t0, t1, {device: bytes/s}) segments, for plots
    bandwidth: list[tuple[float, float, dict[str, float]]]

    @property
    def makespan(self) -> float:
        return max(self.ends, default=0.0)


def simulate(tasks: list[Task], caps: dict[str, float], pool_bytes_per_s: float) -> Timeline:
    """Run ``tasks`` to completion; ``caps`` is each device's own achievable bandwidth."""
    for i, task in enumerate(tasks):
        if any(d >= i for d in task.deps):
            raise DlakitError(f"plan task {i} ({task.label}) depends on a later task")
    queues: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        queues.setdefault(task.device, []).append(i)
    head = dict.fromkeys(queues, 0)
    ends = [-1.0] * len(tasks)
    starts = [0.0] * len(tasks)
    # running[device] = [task index, phase index, fraction of the phase left]
    running: dict[str, list] = {}
    busy = dict.fromkeys(queues, 0.0)
    moved = dict.fromkeys(queues, 0.0)
    macs = dict.fromkeys(queues, 0.0)
    bandwidth: list[tuple[float, float, dict[str, float]]] = []
    now = 0.0
    done = 0
    while done < len(tasks):
        release = float("inf")
        for dev, queue in queues.items():
            if dev in running or head[dev] >= len(queue):
                continue
            i = queue[head[dev]]
            deps = [ends[d] for d in tasks[i].deps]
            if any(e < 0 for e in deps):
                continue
            ready = max(deps, default=0.0) + (tasks[i].delay_s if deps else 0.0)
            if ready <= now + 1e-15:
                running[dev] = [i, 0, 1.0]
                starts[i] = now
                head[dev] += 1
            else:
                release = min(release, ready)
        # A task without phases (nothing to move or compute) finishes at once.
        empty = [d for d, state in running.items() if not tasks[state[0]].phases]
        for d in empty:
            ends[running.pop(d)[0]] = now
        if empty:
            done += len(empty)
            continue
        if not running:
            if release == float("inf"):
                raise DlakitError("plan simulation stalled: a task waits on one that never runs")
            now = release
            continue
        devs = list(running)
        phases = [tasks[running[d][0]].phases[running[d][1]] for d in devs]
        shares = share_bandwidth(
            [p.wants(caps[d]) for p, d in zip(phases, devs, strict=True)], pool_bytes_per_s
        )
        durations = [p.time_at(s) for p, s in zip(phases, shares, strict=True)]
        left = [running[d][2] * t for d, t in zip(devs, durations, strict=True)]
        step = min(min(left), release - now)
        rates = {
            d: p.dram_bytes / t if t > 0 else 0.0
            for d, p, t in zip(devs, phases, durations, strict=True)
        }
        bandwidth.append((now, now + step, rates))
        for d, p, t in zip(devs, phases, durations, strict=True):
            frac = step / t if t > 0 else 1.0
            state = running[d]
            used = min(frac, state[2])
            busy[d] += step
            moved[d] += used * p.dram_bytes
            macs[d] += used * p.macs
            state[2] -= frac
        now += step
        for d in devs:
            state = running[d]
            if state[2] <= 1e-9:
                state[1] += 1
                state[2] = 1.0
                if state[1] >= len(tasks[state[0]].phases):
                    ends[state[0]] = now
                    del running[d]
                    done += 1
    spans = [Span(t.device, t.label, starts[i], ends[i], t.round) for i, t in enumerate(tasks)]
    return Timeline(spans, ends, busy, moved, macs, bandwidth)
