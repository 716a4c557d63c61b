"""The user-mode runtime of a loadable (nvdla/sw ``umd/core/src/runtime/Runtime.cpp``).

``load``: every memory-list entry with ALLOC gets a buffer; SET entries that are not bindable are
filled from their content blobs at their offsets (bindable INPUT/OUTPUT entries are skipped: the
caller binds its own buffers to them). ``submit`` walks the submit list in order; a DLA1 task
hands its address list (address-list entry -> memory buffer + offset) to the firmware, an EMU1
task to the CPU emulator. Buffers are placed in the simulator's memory image, SYSTEM domain
from 0x8000_0000 (DRAM), SRAM from 0x5000_0000 (CV-SRAM), each on its own 4 KiB-aligned range
with a guard gap after it, so an access past a buffer's end is an error, not a neighbour's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlakit.errors import DlakitError
from dlakit.loadable.reader import (
    Interface,
    Loadable,
    MemoryDomain,
    MemoryEntry,
    MemoryFlags,
    TaskEntry,
)
from dlakit.sim.memory import Memory

if TYPE_CHECKING:  # torch comes with the 'sim' extra, named by dlakit.sim's import
    import torch

DRAM_BASE = 0x8000_0000
SRAM_BASE = 0x5000_0000
PAGE = 4096
_GUARD = PAGE


@dataclass(frozen=True)
class Buffer:
    """One memory-list entry placed in the simulator's memory."""

    mem_id: int
    base: int
    size: int


@dataclass(frozen=True)
class TaskAddress:
    """One entry of a task's address list, as the firmware sees it."""

    address_id: int
    mem_id: int
    iova: int
    limit: int  # one past the last byte of the memory it points into


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


class Placement:
    """Where each memory-list entry lives in the simulated address space."""

    def __init__(self, loadable: Loadable, memory: Memory) -> None:
        self.loadable = loadable
        self.memory = memory
        self.buffers: dict[int, Buffer] = {}
        nxt = {MemoryDomain.SYSTEM: DRAM_BASE, MemoryDomain.SRAM: SRAM_BASE}
        for m in loadable.memory:
            if m.domain not in nxt:
                raise DlakitError(
                    f"{loadable.path}: memory {m.id}: domain {m.domain} is neither SYSTEM nor SRAM"
                )
            if not m.flags & MemoryFlags.ALLOC and not m.bindable:
                continue
            align = max(PAGE, m.alignment or 0)
            if align & (align - 1):
                raise DlakitError(
                    f"{loadable.path}: memory {m.id}: alignment {m.alignment} is not a power of 2"
                )
            base = _round_up(nxt[m.domain], align)
            size = max(int(m.size), 1)
            nxt[m.domain] = _round_up(base + size, PAGE) + _GUARD
            if nxt[m.domain] >= (1 << 40):
                raise DlakitError(f"{loadable.path}: memory {m.id}: {m.size} bytes do not fit")
            self.buffers[m.id] = Buffer(m.id, base, size)
            # The KMD allocates whole pages (zeroed); reads a little past a buffer's declared
            # size stay in its page, as the hardware's atom-padded reads do.
            memory.alloc(base, _round_up(size, PAGE))

    def buffer(self, mem_id: int) -> Buffer:
        try:
            return self.buffers[mem_id]
        except KeyError:
            raise DlakitError(
                f"{self.loadable.path}: memory {mem_id} has no buffer (not ALLOC, not bound)"
            ) from None

    def fill_contents(self) -> None:
        """Copy the content blobs of SET entries (bindable ones are the caller's)."""
        for m in self.loadable.memory:
            if not (m.flags & MemoryFlags.ALLOC and m.flags & MemoryFlags.SET) or m.bindable:
                continue
            buf = self.buffer(m.id)
            for name, offset in zip(m.contents, m.offsets, strict=True):
                blob = self.loadable.blob(name)
                self.memory.write(buf.base + offset, blob.data)

    def reload_dep_graphs(self) -> None:
        """``submitInternal`` reloads every SET entry whose content is a dependency graph: the
        firmware writes dependency counts back, and each submission starts from the loadable."""
        for m in self.loadable.memory:
            if m.flags & MemoryFlags.SET and any("dep_graph" in c for c in m.contents):
                buf = self.buffer(m.id)
                for name, offset in zip(m.contents, m.offsets, strict=True):
                    self.memory.write(buf.base + offset, self.loadable.blob(name).data)

    def task_addresses(self, task: TaskEntry) -> list[TaskAddress]:
        out = []
        for ali in task.address_list:
            entry = self.loadable.addresses[ali]
            buf = self.buffer(entry.mem_id)
            out.append(TaskAddress(ali, entry.mem_id, buf.base + entry.offset, buf.base + buf.size))
        return out

    def bound(self, flag: MemoryFlags) -> list[MemoryEntry]:
        return self.loadable.bound(flag)

    def read(self, mem_id: int, offset: int, size: int) -> bytes:
        buf = self.buffer(mem_id)
        if offset < 0 or offset + size > buf.size:
            raise DlakitError(
                f"{self.loadable.path}: [{offset}, {offset + size}) lies outside memory {mem_id} "
                f"({buf.size} bytes)"
            )
        return self.memory.read(buf.base + offset, size)

    def write(self, mem_id: int, offset: int, data: bytes) -> None:
        buf = self.buffer(mem_id)
        if offset < 0 or offset + len(data) > buf.size:
            raise DlakitError(
                f"{self.loadable.path}: {len(data)} bytes at {offset} do not fit memory {mem_id} "
                f"({buf.size} bytes)"
            )
        self.memory.write(buf.base + offset, data)


def task_kind(task: TaskEntry) -> str:
    return "dla" if task.interface == Interface.DLA1 else "emu"


def new_memory(device: torch.device) -> Memory:
    return Memory(device)
