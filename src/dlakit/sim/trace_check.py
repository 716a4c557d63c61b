"""The trace validator: a ``.cfg`` command file and the ``.dat`` memory files it loads, checked
before the simulator runs any of it.

Every malformed line is a named failure (``file:line: ...``), and so is every command that
would touch memory outside the address space or write a value wider than its register:

* ``.cfg``: one command of the official trace syntax per line (``//`` comments), with its
  number of arguments, every number parsing; ``mem_init`` and ``mem_reserve`` regions inside the
  target's address space and under :data:`MAX_REGION_BYTES` in all (``mem_init`` from a file or
  with a pattern other than ``ALL_ZERO`` refused by name); ``mem_load`` packets inside the
  address space (loading makes the memory it writes, as in the official traces); ``check_crc``
  and ``check_file`` ranges inside memory declared or loaded before them; registers named in the
  hw tree's map; register values, polled values and CRC goldens within 32 bits.
* ``.dat``: ``{`` and ``}`` lines around packets ``{offset:0x0, size:4, payload:0x01 0x00 ...}``
  (a trailing comma allowed); ``size`` equal to the payload's length, each payload byte at most
  0xff, the packet inside the region it is loaded into.
"""

from __future__ import annotations

import re
from pathlib import Path

from dlakit.errors import DlakitError
from dlakit.hw import RegisterMap

# All mem_init regions of one trace: the largest official nv_small trace declares under 1 MiB.
MAX_REGION_BYTES = 1 << 30
MAX_VALUE = 0xFFFFFFFF  # CSB registers are 32 bits
# The official trace syntax (nvdla/hw verif/tools/nvdla_trace_parser.py): name -> the number
# of arguments, fewest and most (the last, where optional, is the sync_id that delays a command).
ARITY = {
    "reg_write": (2, 2),
    "reg_read": (2, 2),
    "reg_read_check": (2, 2),
    "poll_reg_equal": (2, 2),
    "intr_notify": (1, 2),
    "sync_notify": (2, 2),
    "sync_wait": (2, 2),
    "mem_init": (4, 5),
    "mem_load": (3, 4),
    "mem_reserve": (3, 4),
    "mem_release": (2, 3),
    "check_crc": (5, 5),
    "check_file": (5, 5),
    "check_nothing": (1, 1),
}
# Memory patterns mem_init can fill; the testbench's others (random data) cannot be reproduced.
MEM_INIT_PATTERNS = {"ALL_ZERO": 0}
_COMMAND = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*;?\s*$")
_PACKET = re.compile(
    r"^\{\s*offset\s*:\s*(0x[0-9a-fA-F]+|0|[1-9]\d*)\s*,\s*size\s*:\s*(\d+)\s*,\s*payload\s*:"
    r"((?:\s*0x[0-9a-fA-F]{1,2})+)\s*\}\s*,?$"
)
# Python's int(text, 0), as the trace runner reads numbers: no leading zeros in decimals.
_NUMBER = re.compile(r"^(0x[0-9a-fA-F]+|0|[1-9]\d*)$")


class TraceFormatError(DlakitError):
    """A trace file that is not what the trace format says; the message names file and line."""


def number(text: str, where: str, what: str, high: int | None = None) -> int:
    """A decimal or 0x number of a trace line, at most ``high``."""
    text = text.strip()
    if not _NUMBER.match(text):
        raise TraceFormatError(f"{where}: {what} {text!r} is not a number")
    value = int(text, 0)
    if high is not None and value > high:
        raise TraceFormatError(f"{where}: {what} {text} is wider than 0x{high:x}")
    return value


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name with a NUL byte, or too long
        return False


def dat_packets(path: Path) -> list[tuple[int, bytes]]:
    """The ``(offset, bytes)`` packets of a ``.dat`` file, every line checked."""
    if not _is_file(path):
        raise TraceFormatError(f"memory file {path} not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise TraceFormatError(f"{path}: not a text file") from None
    packets = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line in ("", "{", "}", "},", "};"):
            continue
        m = _PACKET.match(line)
        where = f"{path.name}:{line_no}"
        if m is None:
            raise TraceFormatError(f"{where}: not a memory packet: {line[:60]!r}")
        offset = number(m.group(1), where, "offset", MAX_VALUE)
        payload = bytes(int(b, 16) for b in m.group(3).split())
        size = number(m.group(2), where, "size")
        if size != len(payload):
            raise TraceFormatError(f"{where}: size {size} but {len(payload)} payload bytes")
        packets.append((offset, payload))
    return packets


class _Regions:
    """The memory ``mem_init`` declared so far (touching regions merge, as in the simulator)."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []

    def add(self, lo: int, hi: int) -> None:
        spans = [*self.spans, (lo, hi)]
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.spans = merged

    @property
    def total(self) -> int:
        return sum(b - a for a, b in self.spans)

    def covers(self, lo: int, hi: int) -> bool:
        return any(a <= lo and hi <= b for a, b in self.spans)


def check_trace(cfg: Path, address_bits: int = 32, regmap: RegisterMap | None = None) -> None:
    """Check ``cfg`` and the ``.dat`` files it loads; TraceFormatError at the first bad line.
    With ``regmap``, every register named must be one of its registers."""
    if not _is_file(cfg):
        raise TraceFormatError(f"trace {cfg} not found")
    try:
        text = cfg.read_text()
    except UnicodeDecodeError:
        raise TraceFormatError(f"{cfg}: not a text file") from None
    top = (1 << address_bits) - 1
    regions = _Regions()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        where = f"{cfg.name}:{line_no}"
        m = _COMMAND.match(line)
        if m is None:
            raise TraceFormatError(f"{where}: cannot parse {raw.strip()[:80]!r}")
        name = m.group(1)
        args = [a.strip().strip('"') for a in m.group(2).split(",")] if m.group(2).strip() else []
        if name not in ARITY:
            raise TraceFormatError(
                f"{where}: trace command {name} is not in the NVDLA trace syntax "
                f"({', '.join(ARITY)})"
            )
        fewest, most = ARITY[name]
        if not fewest <= len(args) <= most:
            count = f"{fewest} arguments" + (f" ({most} with a sync id)" if most > fewest else "")
            raise TraceFormatError(f"{where}: {name} takes {count}, the line has {len(args)}")
        if name == "mem_init":
            if not args[2][:1].isdigit():
                raise TraceFormatError(f"{where}: mem_init from a file ({args[2]}) is not modelled")
            if args[3] not in MEM_INIT_PATTERNS:
                raise TraceFormatError(
                    f"{where}: mem_init pattern {args[3]} is not modelled (only "
                    f"{', '.join(MEM_INIT_PATTERNS)}: other patterns are the testbench's own data)"
                )
            _declare(regions, args, where, address_bits)
        elif name == "mem_reserve":
            _declare(regions, args, where, address_bits)
        elif name == "mem_release":
            number(args[1], where, "base address", top)
        elif name == "mem_load":
            base = number(args[1], where, "base address", top)
            for offset, payload in dat_packets(cfg.parent / args[2]):
                lo, hi = base + offset, base + offset + len(payload)
                if hi - 1 > top:
                    raise TraceFormatError(
                        f"{where}: {args[2]} loads [0x{lo:x}, 0x{hi:x}) (offset 0x{offset:x}), "
                        f"past the {address_bits}-bit address space"
                    )
                regions.add(lo, hi)  # loading makes memory, as the simulator's write does
        elif name in ("reg_write", "reg_read", "reg_read_check", "poll_reg_equal"):
            if name != "reg_read":  # reg_read's second argument is a sync id
                number(args[1], where, "value", MAX_VALUE)
            if regmap is not None:
                try:
                    regmap.lookup(args[0])
                except DlakitError as exc:
                    raise TraceFormatError(f"{where}: {exc}") from None
        elif name in ("check_crc", "check_file"):
            base = number(args[2], where, "base address", top)
            size = number(args[3], where, "size", MAX_REGION_BYTES)
            if name == "check_crc":
                number(args[4], where, "golden CRC", MAX_VALUE)
            else:
                dat_packets(cfg.parent / args[4])
            if not regions.covers(base, base + size):
                raise TraceFormatError(
                    f"{where}: {name} reads [0x{base:x}, 0x{base + size:x}), outside every "
                    "memory declared or loaded before it"
                )


def _declare(regions: _Regions, args: list[str], where: str, address_bits: int) -> None:
    """The region of a ``mem_init`` or ``mem_reserve`` (base, size as arguments 1 and 2)."""
    top = (1 << address_bits) - 1
    base = number(args[1], where, "base address", top)
    size = number(args[2], where, "size", MAX_REGION_BYTES)
    if base + size - 1 > top:
        raise TraceFormatError(
            f"{where}: region [0x{base:x}, 0x{base + size:x}) ends past the "
            f"{address_bits}-bit address space"
        )
    regions.add(base, base + size)
    if regions.total > MAX_REGION_BYTES:
        raise TraceFormatError(
            f"{where}: the trace's memory would need {regions.total} bytes, more than "
            f"the simulator's cap of {MAX_REGION_BYTES}"
        )
