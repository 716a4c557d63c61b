"""The driver: shards through a backend, retried when they fail, stored as they finish, merged in
input order."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlakit.errors import DlakitError
from dlakit.scale.backends import Backend
from dlakit.scale.job import Job, Result
from dlakit.scale.results import ResultsFile
from dlakit.scale.shards import Shard

DEFAULT_RETRIES = 2


@dataclass
class ShardRun:
    """A finished sharded pass: the results in shard order and how it went."""

    results: list[Result]
    backend: str
    slots: int
    items: int
    computed: int  # items computed by this pass (the rest came from the results file)
    seconds: float  # wall time of this pass
    resumed: list[str] = field(default_factory=list)
    retried: dict[str, list[str]] = field(default_factory=dict)  # shard -> the errors retried

    @property
    def items_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def run_shards(
    job: Job,
    shards: Sequence[Shard],
    payload: Callable[[Shard], Any],
    backend: Backend,
    *,
    results: ResultsFile | None = None,
    retries: int = DEFAULT_RETRIES,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> ShardRun:
    """Every shard's result, in shard order. A shard that fails (its task raised, or its worker
    died) is run again up to ``retries`` times; shards that still fail are named in one error,
    raised after the others have finished (and are stored in ``results``, to resume from)."""
    if retries < 0:
        raise DlakitError(f"--retries {retries}: must be at least 0")
    t0 = time.perf_counter()
    done: dict[int, Result] = {}
    resumed = []
    if results is not None:
        for shard in shards:
            stored = results.load(shard)
            if stored is not None:
                done[shard.index] = stored
                resumed.append(shard.name)
        for line in results.warnings:
            if warn:
                warn(line)
    finished = sum(s.size for s in shards if s.index in done)
    partial: dict[int, int] = {}

    def report(shard: Shard | None = None, count: int = 0) -> None:
        if shard is not None:
            partial[shard.index] = count
        if progress:
            progress(finished + sum(partial.values()))

    report()
    todo = deque(s for s in shards if s.index not in done)
    attempts: dict[int, int] = {}
    retried: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    computed = 0
    if todo:
        backend.start(job)
        try:
            in_flight = 0
            while todo or in_flight:
                while todo and in_flight < backend.slots:
                    shard = todo.popleft()
                    attempts[shard.index] = attempts.get(shard.index, 0) + 1
                    backend.submit(shard, payload(shard))
                    in_flight += 1
                for outcome in backend.wait(report):
                    in_flight -= 1
                    shard = outcome.shard
                    partial.pop(shard.index, None)
                    if outcome.error is None:
                        assert outcome.result is not None
                        done[shard.index] = outcome.result
                        if results is not None:
                            results.record(shard, outcome.result)
                        finished += shard.size
                        computed += shard.size
                    elif attempts[shard.index] <= retries:
                        retried.setdefault(shard.name, []).append(outcome.error)
                        if warn:
                            warn(f"{shard.name}: {outcome.error}; retrying "
                                 f"({attempts[shard.index]}/{retries})")  # fmt: skip
                        todo.appendleft(shard)
                    else:
                        failed[shard.name] = outcome.error
                    report()
        finally:
            backend.close()
    if failed:
        names = "; ".join(f"{name}: {error}" for name, error in sorted(failed.items()))
        kept = (
            f"; the {len(done)} finished shard(s) are in {results.path} (run again with --resume)"
            if results is not None
            else ""
        )
        raise DlakitError(
            f"{len(failed)} of {len(shards)} shard(s) failed after {retries + 1} attempt(s): "
            f"{names}{kept}"
        )
    return ShardRun(
        results=[done[s.index] for s in shards],
        backend=backend.name,
        slots=backend.slots,
        items=sum(s.size for s in shards),
        computed=computed,
        seconds=time.perf_counter() - t0,
        resumed=resumed,
        retried=retried,
    )


def merge_arrays(results: Sequence[Result]) -> Result:
    """The shards' arrays joined along the first axis, in shard order (what one process gives)."""
    if not results:
        return {}
    return {name: np.concatenate([r[name] for r in results]) for name in results[0]}
