"""The ``--resume`` results file: which shards of which job have finished, and their results.

``FILE`` is a small JSON manifest: the job's config (what it computes from what, see
:func:`dlakit.scale.job.config_of`), its key, the shard count and, per finished shard, its part
file (``FILE.parts/shard-NNNN.npz``) with the part's sha256. Each part is written atomically, then
the manifest (atomically too), so a run killed at any point leaves a file that names only
complete shards. A manifest of another job is refused in one line naming the first field that
differs; a part that is missing or does not match its sha256 is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from dlakit.errors import DlakitError
from dlakit.files import atomic_write, npz_writer
from dlakit.scale.job import Result, config_key
from dlakit.scale.shards import Shard

SCHEMA = "dlakit.shards"
SCHEMA_VERSION = 1


def _differs(old: dict[str, Any], new: dict[str, Any]) -> str:
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            return f"{name} {_short(old.get(name))}, not {_short(new.get(name))}"
    return "another key"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:16] + "..." + text[-8:]


class ResultsFile:
    """A results file for one job; :meth:`open` creates it or checks it is this job's."""

    def __init__(self, path: Path, config: dict[str, Any], shards: int) -> None:
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self.config = config
        self.key = config_key(config)
        self.shards = shards
        self.done: dict[str, dict[str, str]] = {}
        self.warnings: list[str] = []

    @classmethod
    def open(cls, path: Path, config: dict[str, Any], shards: int) -> ResultsFile:
        results = cls(path, config, shards)
        if path.exists():
            results._read()
        return results

    def _read(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DlakitError(f"--resume {self.path}: not a dlakit results file ({exc})") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise DlakitError(
                f"--resume {self.path}: not a dlakit results file (no {SCHEMA} schema)"
            )
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise DlakitError(
                f"--resume {self.path}: results file version {doc.get('schema_version')}, "
                f"this dlakit reads {SCHEMA_VERSION}"
            )
        if doc.get("key") != self.key:
            old = doc.get("config") if isinstance(doc.get("config"), dict) else {}
            raise DlakitError(
                f"--resume {self.path}: results of another job ({_differs(old, self.config)}); "
                "name a new file to start over"
            )
        done = doc.get("done")
        if isinstance(done, dict):
            self.done = {
                k: v for k, v in done.items()
                if isinstance(v, dict) and isinstance(v.get("file"), str)
            }  # fmt: skip

    def load(self, shard: Shard) -> Result | None:
        """The shard's stored result, or None when it has none (or a damaged one)."""
        entry = self.done.get(shard.name)
        if entry is None:
            return None
        part = self.path.parent / entry["file"]
        try:
            data = part.read_bytes()
        except OSError:
            self.warnings.append(f"{shard.name}: its part {part} is missing; recomputing it")
            return None
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            self.warnings.append(f"{shard.name}: its part {part} was changed; recomputing it")
            return None
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {name: z[name] for name in z.files}

    def record(self, shard: Shard, result: Result) -> None:
        """Store a finished shard: its part, then the manifest naming it."""
        buffer = io.BytesIO()
        npz_writer(result)(buffer)
        data = buffer.getvalue()
        part = self.parts / f"{shard.name}.npz"
        atomic_write(part, data)
        self.done[shard.name] = {
            "file": str(part.relative_to(self.path.parent)),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._write()

    def _write(self) -> None:
        doc = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "key": self.key,
            "config": self.config,
            "shards": self.shards,
            "done": dict(sorted(self.done.items())),
        }
        atomic_write(self.path, json.dumps(doc, indent=1) + "\n")
