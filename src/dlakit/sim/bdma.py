"""BDMA: the strided memory copy engine (nv_full; nvdla/hw nvdlav1 ``cmod/bdma/BdmaCore.cpp``).

Each write of ``CFG_OP.EN`` queues one transfer from the ``CFG_*`` registers: ``SURF_REPEAT+1``
surfaces of ``LINE_REPEAT+1`` lines of ``(LINE.SIZE+1) * 32`` bytes, source and destination
each with their own line and surface strides. ``CFG_LAUNCH0`` / ``CFG_LAUNCH1`` runs the queued
transfers in order and raises that group's done interrupt. Addresses and strides are whole
register values (their low 5 bits are zero in the register layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dlakit.sim.memory import Memory
from dlakit.sim.regs import NotModelled, UnitView

SLOTS = 20  # the firmware's NUM_MAX_BDMA_OPS; STATUS.FREE_SLOT resets to it


@dataclass(frozen=True)
class Transfer:
    src: int
    dst: int
    line_bytes: int
    lines: int
    surfaces: int
    src_line: int
    dst_line: int
    src_surf: int
    dst_surf: int


def transfer_from(view: UnitView) -> Transfer:
    """Snapshot the ``CFG_*`` registers when ``CFG_OP.EN`` queues a transfer."""
    for reg, field in (("CFG_CMD", "SRC_RAM_TYPE"), ("CFG_CMD", "DST_RAM_TYPE")):
        view.require(reg, field, {"MC", "CVSRAM"})
    return Transfer(
        src=view.addr("CFG_SRC_ADDR_LOW", "CFG_SRC_ADDR_HIGH"),
        dst=view.addr("CFG_DST_ADDR_LOW", "CFG_DST_ADDR_HIGH"),
        line_bytes=(view.f("CFG_LINE", "SIZE") + 1) * 32,
        lines=view.f("CFG_LINE_REPEAT", "NUMBER") + 1,
        surfaces=view.f("CFG_SURF_REPEAT", "NUMBER") + 1,
        src_line=view["CFG_SRC_LINE"],
        dst_line=view["CFG_DST_LINE"],
        src_surf=view["CFG_SRC_SURF"],
        dst_surf=view["CFG_DST_SURF"],
    )


def run_transfer(mem: Memory, t: Transfer) -> None:
    """Copy every line; a line lands before the next is read, as the engine streams them."""
    dev = mem.device
    s = torch.arange(t.surfaces, dtype=torch.int64, device=dev)[:, None, None]
    ln = torch.arange(t.lines, dtype=torch.int64, device=dev)[None, :, None]
    b = torch.arange(t.line_bytes, dtype=torch.int64, device=dev)[None, None, :]
    src = t.src + s * t.src_surf + ln * t.src_line + b
    dst = t.dst + s * t.dst_surf + ln * t.dst_line + b
    lo, hi = min(t.src, t.dst), max(int(src.max()), int(dst.max())) + 1
    overlap = not (int(src.max()) < t.dst or int(dst.max()) < t.src)
    if overlap and hi - lo > 0:
        # Overlapping source and destination: stream line by line as the hardware does.
        for line_src, line_dst in zip(
            src.reshape(-1, t.line_bytes), dst.reshape(-1, t.line_bytes), strict=True
        ):
            mem.scatter(line_dst, mem.gather(line_src))
        return
    mem.scatter(dst, mem.gather(src))


class BdmaQueue:
    """The transfers queued since the last launch."""

    def __init__(self) -> None:
        self.pending: list[Transfer] = []

    def push(self, view: UnitView) -> None:
        if len(self.pending) >= SLOTS:
            raise NotModelled(f"BDMA.CFG_OP: more than {SLOTS} transfers queued before a launch")
        self.pending.append(transfer_from(view))

    def launch(self, mem: Memory) -> int:
        done = len(self.pending)
        for t in self.pending:
            run_transfer(mem, t)
        self.pending.clear()
        return done
