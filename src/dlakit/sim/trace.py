"""NVDLA trace tests: parse ``.cfg`` command files and ``.dat`` memory files, run them.

The command set is the official trace player's (``nvdla/hw`` ``verif/tools/nvdla_trace_parser.py``,
nvdla.md §6), one command per line, ``//`` comments:

* registers: ``reg_write(REG, value)``, ``reg_read(REG, sync_id)``, ``reg_read_check(REG,
  value)``, ``poll_reg_equal(REG, value)``;
* events: ``intr_notify([UNIT_n,] sync_id)`` (wait for that unit's done interrupt, or any, then
  notify), ``sync_notify(BLOCK, sync_id)``, ``sync_wait(BLOCK, sync_id)``;
* memory: ``mem_init(mem, base, size, ALL_ZERO[, sync_id])``, ``mem_load(mem, base, "f.dat"[,
  sync_id])``, ``mem_reserve(mem, base, size[, sync_id])``, ``mem_release(mem, base, sync_id)``;
* results: ``check_crc(sync_id, mem, base, size, crc)``, ``check_file(sync_id, mem, base, size,
  "f.dat")``, ``check_nothing(sync_id)``.

Operations complete when their last OP_ENABLE is written, so the run is sequential: a command
with a ``sync_id`` runs when that event is notified (at once if it already was); one whose event
is never notified is an error, as is a wait or poll that could only hang. ``mem_init`` with a
pattern other than ``ALL_ZERO``, ``mem_init`` from a file and ``sec_mem`` are refused by name.
The golden value of ``check_crc`` is ``zlib.crc32`` of the memory range after the run.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.sim.nvdla import Engine, Nvdla
from dlakit.sim.trace_check import ARITY, MEM_INIT_PATTERNS, check_trace

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
    """One result check: ``kind`` crc (golden CRC-32), file (CRC-32 of the golden .dat's bytes
    against the same bytes of memory) or nothing (passes once its event is notified)."""

    sync_id: str
    base: int
    size: int
    expected: int
    computed: int
    kind: str = "crc"

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


def run_trace(
    cfg: Path, device: str | None = "cpu", target: str = "nv_small", engine: Engine | None = None
) -> TraceResult:
    """Execute one trace; errors (unmodelled feature, bad file) land in ``result.error``.

    ``engine`` runs each launched operation instead of the unit models (see ``dlakit.sim.replay``).
    """
    result = TraceResult(name=cfg.stem, path=cfg)
    start = time.perf_counter()
    try:
        nv = Nvdla(target, device=device, engine=engine)
        check_trace(cfg, nv.config.mem_address_width, nv.regmap)  # every line, before any runs
        player = TracePlayer(nv, cfg, result)
        for cmd in parse_cfg(cfg):
            player.run(cmd)
        player.finish()
    except DlakitError as exc:
        result.error = str(exc)
    result.seconds = time.perf_counter() - start
    return result


class TracePlayer:
    """Plays trace commands on one simulated NVDLA; check results go to ``result``."""

    def __init__(self, nv: Nvdla, cfg: Path, result: TraceResult) -> None:
        self.nv = nv
        self.cfg = cfg
        self.result = result
        self.notified: set[str] = set()
        # Commands waiting for an event, in trace order: (sync_id, where, action).
        self.pending: list[tuple[str, str, Callable[[], None]]] = []
        self._handlers: dict[str, Callable[[str, tuple[str, ...]], None]] = {
            name: getattr(self, f"_{name}") for name in ARITY
        }

    def run(self, cmd: Command) -> None:
        """Play one command (of a trace :func:`check_trace` accepted: known, well formed)."""
        self._handlers[cmd.name](f"{self.cfg.name}:{cmd.line}", cmd.args)

    def finish(self) -> None:
        for sync_id, where, _ in self.pending:
            raise DlakitError(f"{where}: waits for event {sync_id}, which nothing notified")

    # -- events -------------------------------------------------------------------------------
    def _notify(self, sync_id: str) -> None:
        self.notified.add(sync_id)
        ready = [p for p in self.pending if p[0] == sync_id]
        self.pending = [p for p in self.pending if p[0] != sync_id]
        for _, _, action in ready:
            action()

    def _when(self, sync_id: str | None, where: str, action: Callable[[], None]) -> None:
        """Run ``action`` once ``sync_id`` is notified (now if it has been, or if None)."""
        if sync_id is None or sync_id in self.notified:
            action()
        else:
            self.pending.append((sync_id, where, action))

    def _intr_notify(self, where: str, a: tuple[str, ...]) -> None:
        unit = _unit_of(a[0]) if len(a) == 2 else None
        if not self.nv.take_interrupt(unit):
            raise DlakitError(f"{where}: {unit or 'no unit'} never raised its done interrupt")
        self._notify(a[-1])

    def _sync_notify(self, where: str, a: tuple[str, ...]) -> None:
        self._notify(a[1])

    def _sync_wait(self, where: str, a: tuple[str, ...]) -> None:
        if a[1] not in self.notified:
            raise DlakitError(f"{where}: sync_wait for {a[1]}, which nothing notified before")

    # -- registers ----------------------------------------------------------------------------
    def _reg_write(self, where: str, a: tuple[str, ...]) -> None:
        self.nv.write_named(a[0], _int(a[1]))

    def _reg_read(self, where: str, a: tuple[str, ...]) -> None:
        self.nv.read_named(a[0])

    def _reg_read_check(self, where: str, a: tuple[str, ...]) -> None:
        got = self.nv.read_named(a[0])
        if got != _int(a[1]):
            raise DlakitError(f"{where}: {a[0]} reads 0x{got:x}, the trace expects {a[1]}")

    def _poll_reg_equal(self, where: str, a: tuple[str, ...]) -> None:
        got = self.nv.read_named(a[0])
        if got != _int(a[1]):
            raise DlakitError(f"{where}: {a[0]} reads 0x{got:x}, the trace waits for {a[1]}")

    # -- memory -------------------------------------------------------------------------------
    def _memory(self, where: str, kind: str) -> None:
        """The memory a command names: the primary memory (``pri_mem``; the player reads a
        number it cannot name as its default, the primary memory)."""
        name = kind.lower()
        if name == "pri_mem" or name.isdigit():
            return
        if name == "sec_mem":
            has = self.nv.config.secondary_memif
            raise DlakitError(
                f"{where}: sec_mem: "
                + (
                    "the secondary memory interface (CVSRAM) is not modelled"
                    if has
                    else f"{self.nv.target.name} has no secondary memory interface"
                )
            )
        raise DlakitError(f"{where}: memory {kind} is neither pri_mem nor sec_mem")

    def _mem_init(self, where: str, a: tuple[str, ...]) -> None:
        self._memory(where, a[0])
        base, size, fill = _int(a[1]), _int(a[2]), MEM_INIT_PATTERNS[a[3]]
        self._when(a[4] if len(a) > 4 else None, where,
                   lambda: self.nv.memory.alloc(base, size, fill))  # fmt: skip

    def _mem_reserve(self, where: str, a: tuple[str, ...]) -> None:
        # Reserved memory has no defined contents; here it reads as zeros.
        self._memory(where, a[0])
        base, size = _int(a[1]), _int(a[2])
        self._when(a[3] if len(a) > 3 else None, where,
                   lambda: self.nv.memory.alloc_covering(base, base + size))  # fmt: skip

    def _mem_load(self, where: str, a: tuple[str, ...]) -> None:
        self._memory(where, a[0])
        base, path = _int(a[1]), self.cfg.parent / a[2]

        def load() -> None:
            for off, data in parse_dat(path):
                self.nv.memory.write(base + off, data)

        self._when(a[3] if len(a) > 3 else None, where, load)

    def _mem_release(self, where: str, a: tuple[str, ...]) -> None:
        self._memory(where, a[0])
        base = _int(a[1])
        self._when(a[2] if len(a) > 2 else None, where, lambda: self.nv.memory.release(base))

    # -- results ------------------------------------------------------------------------------
    def _check_crc(self, where: str, a: tuple[str, ...]) -> None:
        self._memory(where, a[1])
        base, size, golden = _int(a[2]), _int(a[3]), _int(a[4])

        def check() -> None:
            computed = zlib.crc32(self.nv.memory.read(base, size))
            self.result.checks.append(CrcCheck(a[0], base, size, golden, computed))

        self._when(a[0], where, check)

    def _check_file(self, where: str, a: tuple[str, ...]) -> None:
        self._memory(where, a[1])
        base, size, path = _int(a[2]), _int(a[3]), self.cfg.parent / a[4]

        def check() -> None:
            expected = computed = 0
            for off, data in parse_dat(path):
                if off + len(data) > size:
                    raise DlakitError(f"{where}: {path.name} holds bytes past the checked size")
                expected = zlib.crc32(data, expected)
                computed = zlib.crc32(self.nv.memory.read(base + off, len(data)), computed)
            self.result.checks.append(CrcCheck(a[0], base, size, expected, computed, "file"))

        self._when(a[0], where, check)

    def _check_nothing(self, where: str, a: tuple[str, ...]) -> None:
        self._when(
            a[0], where, lambda: self.result.checks.append(CrcCheck(a[0], 0, 0, 0, 0, "nothing"))
        )


def find_traces(path: Path) -> list[Path]:
    """The ``.cfg`` files of a trace folder (one test) or of a folder of test folders."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DlakitError(f"trace path {path} does not exist")
    own = sorted(path.glob("*.cfg"))
    return own if own else sorted(path.glob("*/*.cfg"))
