"""Shards: contiguous slices of a job's input list, named so a failure or a resume can say which."""

from __future__ import annotations

from dataclasses import dataclass

from dlakit.errors import DlakitError

# Upper bound on a default shard: small enough that a lost shard costs little and a resumed run
# redoes little, large enough that the per-shard cost (shipping the slice, one session) stays small.
# The default does not depend on the worker count, so a run resumed with more workers (or on
# Ray) finds the same shards.
MAX_DEFAULT_SHARD = 256
MIN_DEFAULT_SHARD = 8
DEFAULT_SHARDS = 16  # a few per worker balance a small pool whose workers differ in speed


@dataclass(frozen=True)
class Shard:
    """Items ``start`` .. ``stop - 1`` of the input list."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:04d}"

    @property
    def size(self) -> int:
        return self.stop - self.start


def default_shard_size(count: int, align: int = 1) -> int:
    """About ``DEFAULT_SHARDS`` shards of ``MIN_DEFAULT_SHARD`` to ``MAX_DEFAULT_SHARD`` items,
    a multiple of ``align`` (a batch: every shard then runs the batches one process would run)."""
    want = -(-count // DEFAULT_SHARDS)
    size = max(MIN_DEFAULT_SHARD, min(want, MAX_DEFAULT_SHARD))
    return -(-size // align) * align


def plan_shards(count: int, size: int) -> list[Shard]:
    """``count`` items in shards of ``size`` (the last one shorter)."""
    if size < 1:
        raise DlakitError(f"--shard-size {size}: must be at least 1")
    return [
        Shard(i, start, min(start + size, count)) for i, start in enumerate(range(0, count, size))
    ]
