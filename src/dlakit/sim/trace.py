"""NVDLA trace tests: parse ``.cfg`` command files and ``.dat`` memory files, run them.

Format (nvdla-traces/README.md, nvdla.md §6): one command per line, ``//`` comments;
``mem_init``, ``mem_load``, ``reg_write``, ``poll_reg_equal``, ``intr_notify``, ``check_crc``.
The golden value of ``check_crc`` is ``zlib.crc32`` of the memory range after the run.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.sim.nvdla import Nvdla
from dlakit.sim.trace_check import check_trace

_COMMAND = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*;?\s*$")
_PACKET = re.compile(
    r"offset\s*:\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*size\s*:\s*(\d+)\s*,\s*payload\s*:([^}]*)\}"
)


@dataclass(frozen=True)
class Command:
    line: int
    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class CrcCheck:
    sync_id: str
    base: int
    size: int
    expected: int
    computed: int

    @property
    def ok(self) -> bool:
        return self.expected == self.computed


@dataclass
class TraceResult:
    name: str
    path: Path
    checks: list[CrcCheck] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)


def parse_cfg(path: Path) -> list[Command]:
    commands = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.split("//", 1)[0].strip()
        if not text:
            continue
        m = _COMMAND.match(text)
        if not m:
            raise DlakitError(f"{path}:{number}: cannot parse {raw.strip()!r}")
        args = (
            tuple(a.strip().strip('"') for a in m.group(2).split(",")) if m.group(2).strip() else ()
        )
        commands.append(Command(number, m.group(1), args))
    return commands


def parse_dat(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` packets of a ``.dat`` memory file, merged where contiguous."""
    if not path.is_file():
        raise DlakitError(f"memory file {path} not found")
    offsets, chunks = [], []
    for m in _PACKET.finditer(path.read_text()):
        payload = bytes(int(b, 16) for b in m.group(3).split())
        if len(payload) != int(m.group(2)):
            raise DlakitError(f"{path}: packet at offset {m.group(1)} has a wrong size")
        offsets.append(int(m.group(1), 0))
        chunks.append(payload)
    if not offsets:
        return
    order = np.argsort(offsets, kind="stable")
    start, buf = None, bytearray()
    for i in order:
        off, data = offsets[i], chunks[i]
        if start is not None and off == start + len(buf):
            buf += data
            continue
        if start is not None:
            yield start, bytes(buf)
        start, buf = off, bytearray(data)
    if start is not None:
        yield start, bytes(buf)


def _int(text: str) -> int:
    return int(text, 0)


def _unit_of(interrupt: str) -> str:
    """``SDP_0`` -> ``SDP`` (the suffix is the instance number)."""
    return re.sub(r"_\d+$", "", interrupt)


def run_trace(cfg: Path, device: str | None = "cpu", target: str = "nv_small") -> TraceResult:
    """Execute one trace; errors (unmodelled feature, bad file) land in ``result.error``."""
    result = TraceResult(name=cfg.stem, path=cfg)
    start = time.perf_counter()
    try:
        nv = Nvdla(target, device=device)
        check_trace(cfg, nv.config.mem_address_width, nv.regmap)  # every line, before any runs
        for cmd in parse_cfg(cfg):
            execute(nv, cfg, cmd, result)
    except DlakitError as exc:
        result.error = str(exc)
    result.seconds = time.perf_counter() - start
    return result


def execute(nv: Nvdla, cfg: Path, cmd: Command, result: TraceResult) -> None:
    """Run one trace command on ``nv``; ``check_crc`` results are appended to ``result``."""
    a = cmd.args
    where = f"{cfg.name}:{cmd.line}"
    if cmd.name == "mem_init":
        if a[3] != "ALL_ZERO":
            raise DlakitError(f"{where}: mem_init pattern {a[3]} is not supported")
        nv.memory.alloc(_int(a[1]), _int(a[2]))
    elif cmd.name == "mem_load":
        base = _int(a[1])
        for off, data in parse_dat(cfg.parent / a[2]):
            nv.memory.write(base + off, data)
    elif cmd.name == "reg_write":
        nv.write_named(a[0], _int(a[1]))
    elif cmd.name == "poll_reg_equal":
        got = nv.read_named(a[0])
        if got != _int(a[1]):
            raise DlakitError(f"{where}: {a[0]} reads 0x{got:x}, the trace waits for {a[1]}")
    elif cmd.name == "intr_notify":
        unit = _unit_of(a[0])
        if not nv.take_interrupt(unit):
            raise DlakitError(f"{where}: {unit} never raised its done interrupt")
    elif cmd.name == "check_crc":
        base, size, golden = _int(a[2]), _int(a[3]), _int(a[4])
        computed = zlib.crc32(nv.memory.read(base, size))
        result.checks.append(CrcCheck(a[0], base, size, golden, computed))
    else:
        raise DlakitError(f"{where}: trace command {cmd.name} is not supported")


def find_traces(path: Path) -> list[Path]:
    """The ``.cfg`` files of a trace folder (one test) or of a folder of test folders."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DlakitError(f"trace path {path} does not exist")
    own = sorted(path.glob("*.cfg"))
    return own if own else sorted(path.glob("*/*.cfg"))
