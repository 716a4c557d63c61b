"""What a sharded job gives the layer.

A job is pickled once per worker (the model, the compiled artifact, the grid); each shard then
travels with its own payload (its slice of the inputs). ``setup`` builds what a worker keeps
between shards (a session, a loaded simulator), ``run`` computes one shard. A shard's result is a
``{name: array}`` dict, so it can be stored in the results file and merged by concatenation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from dlakit import __version__

Result = dict[str, np.ndarray]
# Items of the current shard done so far (a worker reports it while the shard runs).
Progress = Callable[[int], None]


class Job(Protocol):
    kind: str  # "accuracy", "run", "sweep": named in the results file and its refusals

    def setup(self) -> Any: ...

    def run(self, state: Any, payload: Any, progress: Progress | None) -> Result: ...


def digest(*parts: bytes | str | np.ndarray) -> str:
    """sha256 of the parts in order (arrays by dtype, shape and bytes)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def config_of(kind: str, **fields: Any) -> dict[str, Any]:
    """The identity of a job as a results file records it: what it computes from what (files by
    their sha256), the shard plan and dlakit's version. Another config is another job."""
    return {"job": kind, "dlakit_version": __version__, **fields}


def config_key(config: dict[str, Any]) -> str:
    return digest(json.dumps(config, sort_keys=True))


def file_digest(path: str | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
