"""Small jobs for the sharding tests: a pure-numpy job, and jobs that fail on purpose.

The payload of a shard is ``(start, rows)``; the failing jobs pick their victim by its start.
Worker processes import this module by name (tests/scale is on the path they inherit).
"""

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path


def payload_of(x):
    return lambda shard: (shard.start, x[shard.start : shard.stop])


@dataclass
class SquareJob:
    """Rows squared, and each row's sum: what any backend must give byte for byte."""

    kind: str = "square"
    calls: list = field(default_factory=list)  # starts computed (in-process only)
    delay: float = 0.0

    def setup(self):
        return {"pid": os.getpid()}

    def run(self, state, payload, progress):
        start, rows = payload
        self.calls.append(start)
        if self.delay:
            time.sleep(self.delay)
        if progress:
            progress(len(rows))
        return {"square": rows * rows, "sum": rows.sum(axis=1)}


@dataclass
class DieOnceJob(SquareJob):
    """The worker running the shard at ``victim`` dies the first time (SIGKILL or os._exit);
    ``marker`` records that it did."""

    marker: str = ""
    victim: int = 0
    how: str = "sigkill"

    def run(self, state, payload, progress):
        if payload[0] == self.victim and not Path(self.marker).exists():
            Path(self.marker).touch()
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
        return super().run(state, payload, progress)


@dataclass
class FailsJob(SquareJob):
    """The shard at ``victim`` always raises."""

    victim: int = 0

    def run(self, state, payload, progress):
        if payload[0] == self.victim:
            raise ValueError(f"bad rows from {payload[0]}")
        return super().run(state, payload, progress)


def need_ray():
    """The ray module; a test without it skips with a note, except under CI (which installs the
    'ray' extra), where it fails."""
    import pytest

    if os.environ.get("CI"):
        import ray
    else:
        ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'dlakit[ray]')")
    return ray
