"""BDMA programming (nvdla/sw ``kmd/firmware/bdma.c``): one slot per transfer of the surface
descriptor (up to 20), then a launch of the group."""

from __future__ import annotations

from dlakit.loadable.firmware.engine import EVENT_COMPLETED, Firmware, Group, Processor

MAX_TRANSFERS = 20
_MEM = ("MC", "CVSRAM")


class Bdma:
    def set_producer(self, fw: Firmware, group_id: int, rdma_id: int) -> None:
        """BDMA has no producer pointer: the launch register names the group."""

    def enable(self, fw: Firmware, group: Group) -> None:
        assert group.surface is not None
        if int(group.surface.num_transfers) == 0:
            group.events |= 1 << EVENT_COMPLETED
            return
        if group.id == 0:
            fw.write("BDMA", "CFG_LAUNCH0", fw.word("BDMA", "CFG_LAUNCH0", GRP0_LAUNCH="YES"))
        else:
            fw.write("BDMA", "CFG_LAUNCH1", fw.word("BDMA", "CFG_LAUNCH1", GRP1_LAUNCH="YES"))

    def rdma_check(self, fw: Firmware, group: Group) -> None:
        group.is_rdma_needed = False

    def is_ready(self, fw: Firmware, proc: Processor, group: Group) -> bool:
        """BDMA has no shadow register copies: wait until the other group is launched."""
        other = proc.groups[int(not group.id)]
        return not (proc.group_status & (1 << other.id) and not other.active)

    def program(self, fw: Firmware, group: Group) -> None:
        assert group.surface is not None and group.op_desc is not None
        surf = group.surface
        where = f"BDMA operation {group.op_desc.index}"
        if not fw.config.bdma_enable:
            raise fw.fail(f"{where}: BDMA is not supported for this configuration")
        n = int(surf.num_transfers)
        if n == 0:
            return
        if n > MAX_TRANSFERS:
            raise fw.fail(f"{where}: num_transfers={n} exceeds {MAX_TRANSFERS}")
        for kind in ("source_type", "destination_type"):
            if int(surf[kind]) > 1:
                raise fw.fail(f"{where}: {kind}={surf[kind]} is neither MC (0) nor CV (1)")
        for i, t in enumerate(surf.transfers[:n]):
            self._slot(fw, surf, t, f"{where} transfer {i}")
        fw.enable_intr("BDMA_DONE_MASK1", "BDMA_DONE_MASK0")

    def _slot(self, fw: Firmware, surf: object, t: object, where: str) -> None:
        w = fw.write
        status = fw.nv.regmap.register("BDMA", "STATUS")
        if not status.field("FREE_SLOT").get(fw.reg("BDMA", "STATUS")):
            raise fw.fail(f"{where}: BDMA.STATUS reports no free slot")
        g = t.__getitem__  # type: ignore[attr-defined]
        size, lines, surfaces = int(g("line_size")), int(g("line_repeat")), int(g("surface_repeat"))
        src_line, dst_line = int(g("source_line")), int(g("destination_line"))
        src_surf, dst_surf = int(g("source_surface")), int(g("destination_surface"))
        checks = (
            (lines <= 8192, f"line_repeat={lines} exceeds 8192"),
            (surfaces <= 8192, f"surface_repeat={surfaces} exceeds 8192"),
            (size % 32 == 0, f"line_size={size} is not a multiple of 32"),
            (src_line >= size, f"source_line={src_line} is shorter than line_size={size}"),
            (dst_line >= size, f"destination_line={dst_line} is shorter than line_size={size}"),
            (src_surf >= src_line * lines, f"source_surface={src_surf} < source_line x lines"),
            (dst_surf >= dst_line * lines, f"destination_surface={dst_surf} < dest line x lines"),
        )
        for ok, what in checks:
            if not ok:
                raise fw.fail(f"{where}: {what}")
        extent = lambda line, surf_: (surfaces - 1) * surf_ + (lines - 1) * line + size  # noqa: E731
        src = _checked(fw, int(g("source_address")), extent(src_line, src_surf), f"{where} source")
        dst = _checked(
            fw, int(g("destination_address")), extent(dst_line, dst_surf), f"{where} destination"
        )
        w("BDMA", "CFG_SRC_ADDR_LOW", src & 0xFFFFFFFF)
        w("BDMA", "CFG_SRC_ADDR_HIGH", src >> 32)
        w("BDMA", "CFG_DST_ADDR_LOW", dst & 0xFFFFFFFF)
        w("BDMA", "CFG_DST_ADDR_HIGH", dst >> 32)
        w("BDMA", "CFG_LINE", (size >> 5) - 1)
        kinds = surf.__getitem__  # type: ignore[attr-defined]
        w(
            "BDMA",
            "CFG_CMD",
            fw.word(
                "BDMA",
                "CFG_CMD",
                SRC_RAM_TYPE=_MEM[int(kinds("source_type"))],
                DST_RAM_TYPE=_MEM[int(kinds("destination_type"))],
            ),
        )
        w("BDMA", "CFG_LINE_REPEAT", lines - 1)
        w("BDMA", "CFG_SRC_LINE", src_line)
        w("BDMA", "CFG_DST_LINE", dst_line)
        w("BDMA", "CFG_SURF_REPEAT", surfaces - 1)
        w("BDMA", "CFG_SRC_SURF", src_surf)
        w("BDMA", "CFG_DST_SURF", dst_surf)
        w("BDMA", "CFG_OP", fw.word("BDMA", "CFG_OP", EN="ENABLE"))


def _checked(fw: Firmware, index: int, extent: int, what: str) -> int:
    """A transfer's address (``dla_get_dma_address``: no cube offset), checked to fit."""
    addr = fw.dma_address(index, what)
    if addr + extent > fw.addresses[index].limit:
        raise fw.fail(
            f"{what}: {extent} bytes at address index {index} run past the end of memory "
            f"{fw.addresses[index].mem_id}"
        )
    return addr
