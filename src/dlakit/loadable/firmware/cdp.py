"""CDP programming (nvdla/sw ``kmd/firmware/cdp.c``): CDP_RDMA and CDP (LRN) from a
``dla_cdp_op_desc``, with its LUT."""

from __future__ import annotations

from dlakit.loadable.firmware.engine import MEM_HW, Firmware, Group, Processor
from dlakit.loadable.firmware.lut import lut_ready, update_lut

_PRECISION = ("INT8", "INT16", "FP16")


class Cdp:
    def set_producer(self, fw: Firmware, group_id: int, rdma_id: int) -> None:
        # cdp.c sets the RDMA producer from the group id, not the RDMA group.
        fw.write("CDP", "S_POINTER", fw.word("CDP", "S_POINTER", PRODUCER=group_id))
        fw.write("CDP_RDMA", "S_POINTER", fw.word("CDP_RDMA", "S_POINTER", PRODUCER=group_id))

    def enable(self, fw: Firmware, group: Group) -> None:
        fw.write("CDP_RDMA", "D_OP_ENABLE", fw.word("CDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE"))
        fw.write("CDP", "D_OP_ENABLE", fw.word("CDP", "D_OP_ENABLE", OP_EN="ENABLE"))

    def rdma_check(self, fw: Firmware, group: Group) -> None:
        group.is_rdma_needed = True

    def is_ready(self, fw: Firmware, proc: Processor, group: Group) -> bool:
        return lut_ready(proc, group)

    def program(self, fw: Firmware, group: Group) -> None:
        assert group.operation is not None and group.surface is not None
        assert group.op_desc is not None
        op, surf = group.operation, group.surface
        where = f"CDP operation {group.op_desc.index}"
        src, dst = surf.src_data, surf.dst_data
        fw.enable_intr("CDP_DONE_MASK1", "CDP_DONE_MASK0")
        if int(src.type) == MEM_HW or int(dst.type) == MEM_HW:
            raise fw.fail(f"{where}: source and destination have to be memory")
        if int(op.in_precision) != int(op.out_precision):
            raise fw.fail(f"{where}: CDP does not convert precision")
        if int(op.in_precision) >= len(_PRECISION):
            raise fw.fail(f"{where}: in_precision={op.in_precision} is out of range")
        if int(src.address) == -1:
            raise fw.fail(f"{where}: src_data has no address (dynamic ROI is not modelled)")
        in_addr = fw.cube_address(src, f"{where} src_data")
        out_addr = fw.cube_address(dst, f"{where} dst_data")
        lut = None
        if int(op.lut_index) >= 0:
            group.lut_index = int(op.lut_index)
            lut = fw.read_lut(int(op.lut_index))
        prec = _PRECISION[int(op.in_precision)]
        ram = ("MC", "CV")
        w, wr = fw.write, fw.word
        w("CDP_RDMA", "D_DATA_CUBE_WIDTH", int(src.width) - 1)
        w("CDP_RDMA", "D_DATA_CUBE_HEIGHT", int(src.height) - 1)
        w("CDP_RDMA", "D_DATA_CUBE_CHANNEL", int(src.channel) - 1)
        w("CDP_RDMA", "D_SRC_BASE_ADDR_LOW", in_addr & 0xFFFFFFFF)
        w("CDP_RDMA", "D_SRC_BASE_ADDR_HIGH", in_addr >> 32)
        w("CDP_RDMA", "D_SRC_LINE_STRIDE", int(src.line_stride))
        w("CDP_RDMA", "D_SRC_SURFACE_STRIDE", int(src.surf_stride))
        w(
            "CDP_RDMA",
            "D_SRC_DMA_CFG",
            wr("CDP_RDMA", "D_SRC_DMA_CFG", SRC_RAM_TYPE=ram[int(src.type)]),
        )
        w("CDP_RDMA", "D_DATA_FORMAT", wr("CDP_RDMA", "D_DATA_FORMAT", INPUT_DATA=prec))
        if lut is not None:
            update_lut(fw, "CDP", lut, int(op.in_precision))
        w("CDP", "D_DST_BASE_ADDR_LOW", out_addr & 0xFFFFFFFF)
        w("CDP", "D_DST_BASE_ADDR_HIGH", out_addr >> 32)
        w("CDP", "D_DST_LINE_STRIDE", int(dst.line_stride))
        w("CDP", "D_DST_SURFACE_STRIDE", int(dst.surf_stride))
        w("CDP", "D_DST_DMA_CFG", wr("CDP", "D_DST_DMA_CFG", DST_RAM_TYPE=ram[int(dst.type)]))
        w("CDP", "D_DATA_FORMAT", wr("CDP", "D_DATA_FORMAT", INPUT_DATA_TYPE=prec))
        local = int(op.local_size)
        w("CDP", "D_LRN_CFG", wr("CDP", "D_LRN_CFG", NORMALZ_LEN=((local - 1) // 2) - 1))
        w("CDP", "D_DATIN_OFFSET", int(op.in_cvt.offset))
        w("CDP", "D_DATIN_SCALE", int(op.in_cvt.scale))
        w("CDP", "D_DATIN_SHIFTER", int(op.in_cvt.truncate))
        w("CDP", "D_DATOUT_OFFSET", int(op.out_cvt.offset))
        w("CDP", "D_DATOUT_SCALE", int(op.out_cvt.scale))
        w("CDP", "D_DATOUT_SHIFTER", int(op.out_cvt.truncate))
        w(
            "CDP",
            "D_FUNC_BYPASS",
            wr(
                "CDP",
                "D_FUNC_BYPASS",
                SQSUM_BYPASS="ENABLE" if int(op.bypass_sqsum) else "DISABLE",
                MUL_BYPASS="ENABLE" if int(op.bypass_out_mul) else "DISABLE",
            ),
        )
