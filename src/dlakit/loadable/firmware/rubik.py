"""RUBIK programming (nvdla/sw ``kmd/firmware/rubik.c``): contract, split or merge from a
``dla_rubik_op_desc``."""

from __future__ import annotations

from dlakit.loadable.firmware.engine import MEM_HW, Firmware, Group, Processor

_MODE = ("CONTRACT", "SPLIT", "MERGE")
_PRECISION = ("INT8", "INT16", "FP16")
_BPE = (1, 2, 2)
_RAM = ("MCIF", "CVIF")


class Rubik:
    def set_producer(self, fw: Firmware, group_id: int, rdma_id: int) -> None:
        # A configuration without RUBIK has no such register; program() then refuses the op.
        if fw.config.rubik_enable:
            fw.write("RBK", "S_POINTER", fw.word("RBK", "S_POINTER", PRODUCER=group_id))

    def enable(self, fw: Firmware, group: Group) -> None:
        fw.write("RBK", "D_OP_ENABLE", fw.word("RBK", "D_OP_ENABLE", OP_EN="ENABLE"))

    def rdma_check(self, fw: Firmware, group: Group) -> None:
        group.is_rdma_needed = False

    def is_ready(self, fw: Firmware, proc: Processor, group: Group) -> bool:
        return True

    def program(self, fw: Firmware, group: Group) -> None:
        assert group.operation is not None and group.surface is not None
        assert group.op_desc is not None
        op, surf = group.operation, group.surface
        where = f"RUBIK operation {group.op_desc.index}"
        if not fw.config.rubik_enable:
            raise fw.fail(f"{where}: RUBIK is not supported for this configuration")
        fw.enable_intr("RUBIK_DONE_MASK1", "RUBIK_DONE_MASK0")
        src, dst = surf.src_data, surf.dst_data
        if int(src.type) == MEM_HW or int(dst.type) == MEM_HW:
            raise fw.fail(f"{where}: source and destination have to be memory")
        mode, prec = int(op.mode), int(op.precision)
        if mode >= len(_MODE) or prec >= len(_PRECISION):
            raise fw.fail(f"{where}: mode={mode} / precision={prec} is out of range")
        if int(src.address) == -1:
            raise fw.fail(f"{where}: src_data has no address (dynamic ROI is not modelled)")
        in_addr = fw.cube_address(src, f"{where} src_data")
        out_addr = fw.cube_address(dst, f"{where} dst_data")
        w, wr = fw.write, fw.word
        w(
            "RBK",
            "D_MISC_CFG",
            wr("RBK", "D_MISC_CFG", RUBIK_MODE=_MODE[mode], IN_PRECISION=_PRECISION[prec]),
        )
        w(
            "RBK",
            "D_DAIN_RAM_TYPE",
            wr("RBK", "D_DAIN_RAM_TYPE", DATAIN_RAM_TYPE=_RAM[int(src.type)]),
        )
        w(
            "RBK",
            "D_DATAIN_SIZE_0",
            wr(
                "RBK",
                "D_DATAIN_SIZE_0",
                DATAIN_WIDTH=int(src.width) - 1,
                DATAIN_HEIGHT=int(src.height) - 1,
            ),
        )
        w(
            "RBK",
            "D_DATAIN_SIZE_1",
            wr("RBK", "D_DATAIN_SIZE_1", DATAIN_CHANNEL=int(src.channel) - 1),
        )
        w("RBK", "D_DAIN_ADDR_LOW", in_addr & 0xFFFFFFFF)
        w("RBK", "D_DAIN_ADDR_HIGH", in_addr >> 32)
        if _MODE[mode] == "MERGE":
            plane = int(src.plane_stride)
            if plane == 0 or plane & 0x1F:
                raise fw.fail(f"{where}: merge needs a non-zero, 32-byte aligned plane_stride")
            w("RBK", "D_DAIN_PLANAR_STRIDE", plane)
        else:
            w("RBK", "D_DAIN_SURF_STRIDE", int(src.surf_stride))
        w("RBK", "D_DAIN_LINE_STRIDE", int(src.line_stride))
        w(
            "RBK",
            "D_DAOUT_RAM_TYPE",
            wr("RBK", "D_DAOUT_RAM_TYPE", DATAOUT_RAM_TYPE=_RAM[int(dst.type)]),
        )
        w(
            "RBK",
            "D_DATAOUT_SIZE_1",
            wr("RBK", "D_DATAOUT_SIZE_1", DATAOUT_CHANNEL=int(dst.channel) - 1),
        )
        w("RBK", "D_DAOUT_ADDR_LOW", out_addr & 0xFFFFFFFF)
        w("RBK", "D_DAOUT_ADDR_HIGH", out_addr >> 32)
        w("RBK", "D_DAOUT_LINE_STRIDE", int(dst.line_stride))
        if _MODE[mode] != "SPLIT":
            w("RBK", "D_DAOUT_SURF_STRIDE", int(dst.surf_stride))
            if _MODE[mode] == "CONTRACT":
                w(
                    "RBK",
                    "D_CONTRACT_STRIDE_0",
                    ((int(dst.channel) * _BPE[prec] + 31) >> 5) * int(src.surf_stride),
                )
                w("RBK", "D_CONTRACT_STRIDE_1", int(op.stride_y) * int(dst.line_stride))
                w(
                    "RBK",
                    "D_DECONV_STRIDE",
                    wr(
                        "RBK",
                        "D_DECONV_STRIDE",
                        DECONV_X_STRIDE=int(op.stride_x) - 1,
                        DECONV_Y_STRIDE=int(op.stride_y) - 1,
                    ),
                )
        else:
            w("RBK", "D_DAOUT_PLANAR_STRIDE", int(dst.plane_stride))
