"""Convolution pipeline programming (nvdla/sw ``kmd/firmware/conv.c``): CACC, CMAC, CSC, CDMA
from a ``dla_conv_op_desc`` and its surfaces, in the firmware's order (back of the pipe first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlakit.loadable.firmware.engine import MEM_HW, Firmware, Group, Processor

if TYPE_CHECKING:
    from dlakit.loadable.descriptors import Record

_PRECISION = ("INT8", "INT16", "FP16")
_CONV_MODE = ("DIRECT", "WINOGRAD")
_WEIGHT_FORMAT = ("UNCOMPRESSED", "COMPRESSED")
_RAM = ("MCIF", "CVIF")
_FORMAT_FEATURE = 36
_CONV_UNITS = ("CACC", "CMAC_A", "CMAC_B", "CSC", "CDMA")


def _pick(fw: Firmware, table: tuple[str, ...], index: int, what: str) -> str:
    if not 0 <= index < len(table):
        raise fw.fail(f"{what}={index} is out of range (0..{len(table) - 1})")
    return table[index]


class Conv:
    def set_producer(self, fw: Firmware, group_id: int, rdma_id: int) -> None:
        for unit in _CONV_UNITS:
            fw.write(unit, "S_POINTER", fw.word(unit, "S_POINTER", PRODUCER=group_id))

    def enable(self, fw: Firmware, group: Group) -> None:
        if not fw.reg("CDMA", "S_CBUF_FLUSH_STATUS") & fw.field_mask(
            "CDMA", "S_CBUF_FLUSH_STATUS", "FLUSH_DONE"
        ):
            raise fw.fail("CDMA.S_CBUF_FLUSH_STATUS never reports FLUSH_DONE")
        for unit in _CONV_UNITS:
            fw.write(unit, "D_OP_ENABLE", fw.word(unit, "D_OP_ENABLE", OP_EN="ENABLE"))

    def rdma_check(self, fw: Firmware, group: Group) -> None:
        group.is_rdma_needed = False

    def is_ready(self, fw: Firmware, proc: Processor, group: Group) -> bool:
        return True

    def program(self, fw: Firmware, group: Group) -> None:
        assert group.operation is not None and group.surface is not None
        assert group.op_desc is not None
        op, surf = group.operation, group.surface
        where = f"CONV operation {group.op_desc.index}"
        atom = fw.config.atom_size
        if int(op.weight_format) == 1:
            if not fw.config.weight_compress_support:
                raise fw.fail(f"{where}: compressed weights on a target without compression")
            raise fw.fail(f"{where}: compressed weights are not modelled")
        weight_addr = 0
        if int(surf.weight_data.address) != -1:
            weight_addr = fw.cube_address(surf.weight_data, f"{where} weight_data")
            fw.check_align(weight_addr, atom, f"{where} weight address")
            fw.check_align(int(surf.weight_data.size), 128, f"{where} weight_data.size")
        out_addr = 0
        dst: Record = surf.dst_data
        if int(dst.address) != -1:
            out_addr = fw.cube_address(dst, f"{where} dst_data")
            fw.check_align(out_addr, atom, f"{where} output address")
            for name in ("size", "line_stride", "surf_stride"):
                fw.check_align(int(dst[name]), atom, f"{where} dst_data.{name}")
        src: Record = surf.src_data
        in_addr = 0
        if int(src.type) != MEM_HW:
            if int(src.address) == -1:
                raise fw.fail(f"{where}: src_data has no address (dynamic ROI is not modelled)")
            in_addr = fw.cube_address(src, f"{where} src_data")
        fw.check_align(in_addr, atom, f"{where} input address")
        if int(op.out_cvt.scale) != 1 or int(op.out_cvt.offset) != 0:
            raise fw.fail(f"{where}: out_cvt supports truncate only (scale 1, offset 0)")
        for unit in _CONV_UNITS:
            status = fw.reg(unit, "S_STATUS")
            if (status >> (16 * group.id)) & 0x3:
                raise fw.fail(f"{where}: {unit} group {group.id} is not idle")
        mode = _pick(fw, _CONV_MODE, int(op.conv_mode), f"{where} conv_mode")
        out_prec = _pick(fw, _PRECISION, int(op.out_precision), f"{where} out_precision")
        in_prec = _pick(fw, _PRECISION, int(op.in_precision), f"{where} in_precision")
        wfmt = _pick(fw, _WEIGHT_FORMAT, int(op.weight_format), f"{where} weight_format")
        w, wr = fw.write, fw.word
        # CACC
        w("CACC", "D_MISC_CFG", wr("CACC", "D_MISC_CFG", CONV_MODE=mode, PROC_PRECISION=out_prec))
        w(
            "CACC",
            "D_DATAOUT_SIZE_0",
            wr(
                "CACC",
                "D_DATAOUT_SIZE_0",
                DATAOUT_WIDTH=int(dst.width) - 1,
                DATAOUT_HEIGHT=int(dst.height) - 1,
            ),
        )
        w(
            "CACC",
            "D_DATAOUT_SIZE_1",
            wr("CACC", "D_DATAOUT_SIZE_1", DATAOUT_CHANNEL=int(dst.channel) - 1),
        )
        w("CACC", "D_DATAOUT_ADDR", out_addr & 0xFFFFFFFF)
        w("CACC", "D_BATCH_NUMBER", int(op.batch) - 1)
        w("CACC", "D_LINE_STRIDE", int(dst.line_stride))
        w("CACC", "D_SURF_STRIDE", int(dst.surf_stride))
        packed = int(dst.width) == 1 and int(dst.height) == 1
        if packed and int(dst.line_stride) != int(dst.width) * atom:
            raise fw.fail(f"{where}: a 1x1 output needs line_stride {atom}")
        flag = "TRUE" if packed else "FALSE"
        w("CACC", "D_DATAOUT_MAP", wr("CACC", "D_DATAOUT_MAP", LINE_PACKED=flag, SURF_PACKED=flag))
        w("CACC", "D_CLIP_CFG", int(op.out_cvt.truncate))
        # CMAC
        for unit in ("CMAC_A", "CMAC_B"):
            w(unit, "D_MISC_CFG", wr(unit, "D_MISC_CFG", CONV_MODE=mode, PROC_PRECISION=out_prec))
        # CSC
        reuse = {
            "DATA_REUSE": int(op.data_reuse),
            "WEIGHT_REUSE": int(op.weight_reuse),
            "SKIP_DATA_RLS": int(op.skip_data_rls),
            "SKIP_WEIGHT_RLS": int(op.skip_weight_rls),
        }
        w(
            "CSC",
            "D_MISC_CFG",
            wr(
                "CSC",
                "D_MISC_CFG",
                CONV_MODE=mode,
                IN_PRECISION=out_prec,
                PROC_PRECISION=out_prec,
                **reuse,
            ),
        )
        in_format = "FEATURE" if int(op.data_format) == _FORMAT_FEATURE else "PIXEL"
        if int(op.data_format) > _FORMAT_FEATURE:
            raise fw.fail(f"{where}: data_format {op.data_format} is not a pixel or feature format")
        w("CSC", "D_DATAIN_FORMAT", wr("CSC", "D_DATAIN_FORMAT", DATAIN_FORMAT=in_format))
        w(
            "CSC",
            "D_DATAIN_SIZE_EXT_0",
            wr(
                "CSC",
                "D_DATAIN_SIZE_EXT_0",
                DATAIN_WIDTH_EXT=int(op.input_width_csc) - 1,
                DATAIN_HEIGHT_EXT=int(op.input_height_csc) - 1,
            ),
        )
        w(
            "CSC",
            "D_DATAIN_SIZE_EXT_1",
            wr("CSC", "D_DATAIN_SIZE_EXT_1", DATAIN_CHANNEL_EXT=int(op.input_channel_csc) - 1),
        )
        w("CSC", "D_BATCH_NUMBER", wr("CSC", "D_BATCH_NUMBER", BATCHES=int(op.batch) - 1))
        w(
            "CSC",
            "D_POST_Y_EXTENSION",
            wr("CSC", "D_POST_Y_EXTENSION", Y_EXTENSION=int(op.post_extension)),
        )
        w(
            "CSC",
            "D_ENTRY_PER_SLICE",
            wr("CSC", "D_ENTRY_PER_SLICE", ENTRIES=int(op.entry_per_slice) - 1),
        )
        w("CSC", "D_WEIGHT_FORMAT", wr("CSC", "D_WEIGHT_FORMAT", WEIGHT_FORMAT=wfmt))
        w(
            "CSC",
            "D_WEIGHT_SIZE_EXT_0",
            wr(
                "CSC",
                "D_WEIGHT_SIZE_EXT_0",
                WEIGHT_WIDTH_EXT=int(op.kernel_width_csc) - 1,
                WEIGHT_HEIGHT_EXT=int(op.kernel_height_csc) - 1,
            ),
        )
        w(
            "CSC",
            "D_WEIGHT_SIZE_EXT_1",
            wr(
                "CSC",
                "D_WEIGHT_SIZE_EXT_1",
                WEIGHT_CHANNEL_EXT=int(op.kernel_channel_csc) - 1,
                WEIGHT_KERNEL=int(dst.channel) - 1,
            ),
        )
        w("CSC", "D_WEIGHT_BYTES", int(surf.weight_data.size))
        w("CSC", "D_WMB_BYTES", int(surf.wmb_data.size))
        w(
            "CSC",
            "D_DATAOUT_SIZE_0",
            wr(
                "CSC",
                "D_DATAOUT_SIZE_0",
                DATAOUT_WIDTH=int(op.input_width_cmac) - 1,
                DATAOUT_HEIGHT=int(op.input_height_cmac) - 1,
            ),
        )
        w(
            "CSC",
            "D_DATAOUT_SIZE_1",
            wr("CSC", "D_DATAOUT_SIZE_1", DATAOUT_CHANNEL=int(dst.channel) - 1),
        )
        w("CSC", "D_ATOMICS", wr("CSC", "D_ATOMICS", ATOMICS=int(dst.width) * int(dst.height) - 1))
        w("CSC", "D_RELEASE", wr("CSC", "D_RELEASE", RLS_SLICES=int(op.release) - 1))
        direct = mode == "DIRECT"
        stride_x = int(op.conv_stride_x) - 1 if direct else 0
        stride_y = int(op.conv_stride_y) - 1 if direct else 0
        w(
            "CSC",
            "D_CONV_STRIDE_EXT",
            wr("CSC", "D_CONV_STRIDE_EXT", CONV_X_STRIDE_EXT=stride_x, CONV_Y_STRIDE_EXT=stride_y),
        )
        w(
            "CSC",
            "D_DILATION_EXT",
            wr(
                "CSC",
                "D_DILATION_EXT",
                X_DILATION_EXT=int(op.dilation_x) - 1,
                Y_DILATION_EXT=int(op.dilation_y) - 1,
            ),
        )
        w(
            "CSC",
            "D_ZERO_PADDING",
            wr(
                "CSC",
                "D_ZERO_PADDING",
                PAD_LEFT=int(op.pad_x_left) if direct else 0,
                PAD_TOP=int(op.pad_y_top) if direct else 0,
            ),
        )
        pad_mask = fw.field_mask("CSC", "D_ZERO_PADDING_VALUE", "PAD_VALUE")
        w("CSC", "D_ZERO_PADDING_VALUE", int(op.pad_val) & pad_mask)
        w(
            "CSC",
            "D_BANK",
            wr(
                "CSC",
                "D_BANK",
                DATA_BANK=int(op.data_bank) - 1,
                WEIGHT_BANK=int(op.weight_bank) - 1,
            ),
        )
        w("CSC", "D_PRA_CFG", int(op.pra_truncate))
        # CDMA
        w(
            "CDMA",
            "D_MISC_CFG",
            wr(
                "CDMA",
                "D_MISC_CFG",
                CONV_MODE=mode,
                IN_PRECISION=in_prec,
                PROC_PRECISION=out_prec,
                **reuse,
            ),
        )
        pixel_format = 0 if in_format == "FEATURE" else int(op.data_format)
        w(
            "CDMA",
            "D_DATAIN_FORMAT",
            wr(
                "CDMA",
                "D_DATAIN_FORMAT",
                DATAIN_FORMAT=in_format,
                PIXEL_FORMAT=pixel_format,
                PIXEL_MAPPING=0,
                PIXEL_SIGN_OVERRIDE=int(op.pixel_override),
            ),
        )
        w(
            "CDMA",
            "D_DATAIN_SIZE_0",
            wr(
                "CDMA",
                "D_DATAIN_SIZE_0",
                DATAIN_WIDTH=int(src.width) - 1,
                DATAIN_HEIGHT=int(src.height) - 1,
            ),
        )
        w(
            "CDMA",
            "D_DATAIN_SIZE_1",
            wr("CDMA", "D_DATAIN_SIZE_1", DATAIN_CHANNEL=int(src.channel) - 1),
        )
        w(
            "CDMA",
            "D_DATAIN_SIZE_EXT_0",
            wr(
                "CDMA",
                "D_DATAIN_SIZE_EXT_0",
                DATAIN_WIDTH_EXT=int(op.input_width_csc) - 1,
                DATAIN_HEIGHT_EXT=int(op.input_height_csc) - 1,
            ),
        )
        ram = _pick(fw, _RAM, int(src.type), f"{where} src_data.type")
        w("CDMA", "D_DAIN_RAM_TYPE", wr("CDMA", "D_DAIN_RAM_TYPE", DATAIN_RAM_TYPE=ram))
        w("CDMA", "D_DAIN_ADDR_HIGH_0", in_addr >> 32)
        w("CDMA", "D_DAIN_ADDR_LOW_0", in_addr & 0xFFFFFFFF)
        uv = in_addr + int(surf.offset_u)
        w("CDMA", "D_DAIN_ADDR_HIGH_1", (uv >> 32) & 0xFFFFFFFF)
        w("CDMA", "D_DAIN_ADDR_LOW_1", uv & 0xFFFFFFFF)
        w("CDMA", "D_LINE_STRIDE", int(src.line_stride))
        w("CDMA", "D_SURF_STRIDE", int(src.surf_stride))
        w("CDMA", "D_LINE_UV_STRIDE", int(surf.in_line_uv_stride))
        line_packed = int(src.line_stride) == int(src.width) * atom
        surf_packed = int(src.surf_stride) == int(src.width) * int(src.height) * atom
        w(
            "CDMA",
            "D_DAIN_MAP",
            wr("CDMA", "D_DAIN_MAP", LINE_PACKED=int(line_packed), SURF_PACKED=int(surf_packed)),
        )
        w("CDMA", "D_BATCH_NUMBER", wr("CDMA", "D_BATCH_NUMBER", BATCHES=int(op.batch) - 1))
        w("CDMA", "D_BATCH_STRIDE", int(op.batch_stride))
        w(
            "CDMA",
            "D_ENTRY_PER_SLICE",
            wr("CDMA", "D_ENTRY_PER_SLICE", ENTRIES=int(op.entry_per_slice) - 1),
        )
        w("CDMA", "D_FETCH_GRAIN", wr("CDMA", "D_FETCH_GRAIN", GRAINS=int(op.fetch_grain) - 1))
        w("CDMA", "D_WEIGHT_FORMAT", wr("CDMA", "D_WEIGHT_FORMAT", WEIGHT_FORMAT=wfmt))
        w(
            "CDMA",
            "D_WEIGHT_SIZE_0",
            wr("CDMA", "D_WEIGHT_SIZE_0", BYTE_PER_KERNEL=int(op.bytes_per_kernel) - 1),
        )
        w(
            "CDMA",
            "D_WEIGHT_SIZE_1",
            wr("CDMA", "D_WEIGHT_SIZE_1", WEIGHT_KERNEL=int(dst.channel) - 1),
        )
        wram = _pick(fw, _RAM, int(surf.weight_data.type), f"{where} weight_data.type")
        w("CDMA", "D_WEIGHT_RAM_TYPE", wr("CDMA", "D_WEIGHT_RAM_TYPE", WEIGHT_RAM_TYPE=wram))
        w("CDMA", "D_WEIGHT_ADDR_HIGH", weight_addr >> 32)
        w("CDMA", "D_WEIGHT_ADDR_LOW", weight_addr & 0xFFFFFFFF)
        w("CDMA", "D_WEIGHT_BYTES", int(surf.weight_data.size))
        mean = int(op.mean_format)
        w("CDMA", "D_MEAN_FORMAT", wr("CDMA", "D_MEAN_FORMAT", MEAN_FORMAT=mean))
        if mean == 1:
            m16 = 0xFFFF
            w("CDMA", "D_MEAN_GLOBAL_0", (int(op.mean_ry) & m16) | ((int(op.mean_gu) & m16) << 16))
            w("CDMA", "D_MEAN_GLOBAL_1", (int(op.mean_bv) & m16) | ((int(op.mean_ax) & m16) << 16))
        if int(op.in_cvt.enable):
            w(
                "CDMA",
                "D_CVT_CFG",
                wr("CDMA", "D_CVT_CFG", CVT_EN="ENABLE", CVT_TRUNCATE=int(op.in_cvt.truncate)),
            )
            w("CDMA", "D_CVT_OFFSET", int(op.in_cvt.offset))
            w("CDMA", "D_CVT_SCALE", int(op.in_cvt.scale))
        else:
            w("CDMA", "D_CVT_CFG", wr("CDMA", "D_CVT_CFG", CVT_EN="DISABLE"))
        w(
            "CDMA",
            "D_CONV_STRIDE",
            wr(
                "CDMA",
                "D_CONV_STRIDE",
                CONV_X_STRIDE=int(op.conv_stride_x) - 1,
                CONV_Y_STRIDE=int(op.conv_stride_y) - 1,
            ),
        )
        w(
            "CDMA",
            "D_ZERO_PADDING",
            wr(
                "CDMA",
                "D_ZERO_PADDING",
                PAD_LEFT=int(op.pad_x_left),
                PAD_RIGHT=int(op.pad_x_right),
                PAD_TOP=int(op.pad_y_top),
                PAD_BOTTOM=int(op.pad_y_bottom),
            ),
        )
        w(
            "CDMA",
            "D_ZERO_PADDING_VALUE",
            int(op.pad_val) & fw.field_mask("CDMA", "D_ZERO_PADDING_VALUE", "PAD_VALUE"),
        )
        w(
            "CDMA",
            "D_BANK",
            wr(
                "CDMA",
                "D_BANK",
                WEIGHT_BANK=int(op.weight_bank) - 1,
                DATA_BANK=int(op.data_bank) - 1,
            ),
        )
