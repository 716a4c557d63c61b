"""Register programs: the CSB writes that set up and launch one hardware operation.

Each builder returns ``[(unit, register, value)]`` in the order a driver writes them: the
operation's ``D_`` registers, then ``D_OP_ENABLE`` of every unit taking part, the data consumer
last (SDP before CACC/CMAC/CSC/CDMA; PDP_RDMA before PDP). Every functional register is written
for every operation (bypasses included), so no value leaks from the previous operation. Field
values come from :class:`dlakit.hw.RegisterMap`, the map the simulator decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlakit.errors import DlakitError
from dlakit.hw import RegisterMap
from dlakit.lower.qgraph import (
    EwUnit,
    LutTable,
    QContract,
    QConv,
    QLrn,
    QPool,
    SdpChain,
    SdpLut,
    XUnit,
)
from dlakit.nvdla.surface import Surface
from dlakit.nvdla.tiling import Tile

Write = tuple[str, str, int]


@dataclass
class Program:
    regmap: RegisterMap
    where: str  # the layer, for error messages
    writes: list[Write] = field(default_factory=list)

    def w(self, unit: str, reg: str, **fields: int | str) -> None:
        r = self.regmap.register(unit, reg)
        try:
            value = r.encode(**fields)
        except DlakitError as exc:
            raise DlakitError(f"layer {self.where}: {exc}") from None
        self.writes.append((unit, reg, value))

    def value(self, unit: str, reg: str, value: int) -> None:
        """A whole-register value (address, stride, byte count): the field may start above bit 0
        (v1 keeps 32-byte aligned addresses in bits 31:5), so the value must fit its mask."""
        r = self.regmap.register(unit, reg)
        mask = 0
        for f in r.fields.values():
            mask |= f.mask
        if value & ~mask or value >> 32:
            raise DlakitError(
                f"layer {self.where}: {unit}.{reg} = 0x{value:x} does not fit its field "
                f"(mask 0x{mask:x}: misaligned or too large)"
            )
        self.writes.append((unit, reg, value))

    def addr(self, unit: str, low: str, high: str, address: int) -> None:
        self.value(unit, low, address & 0xFFFFFFFF)
        self.value(unit, high, address >> 32)

    def enable(self, *units: str) -> None:
        for unit in units:
            self.w(unit, "D_OP_ENABLE", OP_EN="ENABLE")


@dataclass(frozen=True)
class Operands:
    """Where the B/N-RDMA reads an X unit's per-channel operands (None: registers only)."""

    bs: int | None = None
    bn: int | None = None


def per_channel(values: np.ndarray | None) -> bool:
    return values is not None and np.asarray(values).size > 1


def x_uses_memory(unit: XUnit | None) -> tuple[bool, bool]:
    if unit is None:
        return False, False
    return (unit.alu is not None and per_channel(unit.alu_operand)), (
        unit.mul is not None and per_channel(unit.mul)
    )


def _register_operand(value, fp16: bool) -> int:
    """A register operand: the INT16 itself, or an FP16 number's bit pattern (as INT16)."""
    if fp16:
        return int(np.asarray(value, dtype=np.float16).reshape(-1)[:1].view(np.int16)[0])
    return int(np.asarray(value).reshape(-1)[0])


def _x_unit(p: Program, stem: str, unit: XUnit | None, fp16: bool = False) -> None:
    if unit is None:
        p.w("SDP", f"D_DP_{stem}_CFG", **{f"{stem}_BYPASS": "YES"})
        return
    alu_mem, mul_mem = x_uses_memory(unit)
    p.w(
        "SDP",
        f"D_DP_{stem}_CFG",
        **{
            f"{stem}_BYPASS": "NO",
            f"{stem}_ALU_BYPASS": "YES" if unit.alu is None else "NO",
            f"{stem}_ALU_ALGO": (unit.alu or "sum").upper(),
            f"{stem}_MUL_BYPASS": "YES" if unit.mul is None else "NO",
            f"{stem}_MUL_PRELU": "YES" if unit.prelu else "NO",
            f"{stem}_RELU_BYPASS": "NO" if unit.relu else "YES",
        },
    )
    p.w(
        "SDP",
        f"D_DP_{stem}_ALU_CFG",
        **{
            f"{stem}_ALU_SRC": "MEM" if alu_mem else "REG",
            f"{stem}_ALU_SHIFT_VALUE": unit.alu_shift,
        },
    )
    alu_reg = 0 if unit.alu is None or alu_mem else _register_operand(unit.alu_operand, fp16)
    p.w("SDP", f"D_DP_{stem}_ALU_SRC_VALUE", **{f"{stem}_ALU_OPERAND": alu_reg})
    p.w(
        "SDP",
        f"D_DP_{stem}_MUL_CFG",
        **{
            f"{stem}_MUL_SRC": "MEM" if mul_mem else "REG",
            f"{stem}_MUL_SHIFT_VALUE": unit.truncate,
        },
    )
    mul_reg = 1 if unit.mul is None or mul_mem else _register_operand(unit.mul, fp16)
    p.w("SDP", f"D_DP_{stem}_MUL_SRC_VALUE", **{f"{stem}_MUL_OPERAND": mul_reg})


def _x_rdma(p: Program, dma: str, stem: str, unit: XUnit | None, address: int | None) -> bool:
    alu_mem, mul_mem = x_uses_memory(unit)
    if not (alu_mem or mul_mem) or address is None:
        p.w("SDP_RDMA", f"D_{dma}_CFG", **{f"{dma}_DISABLE": "YES"})
        return False
    use = "BOTH" if alu_mem and mul_mem else ("ALU" if alu_mem else "MUL")
    p.w(
        "SDP_RDMA",
        f"D_{dma}_CFG",
        **{
            f"{dma}_DISABLE": "NO",
            f"{dma}_DATA_USE": use,
            f"{dma}_DATA_SIZE": "TWO_BYTE",
            f"{dma}_DATA_MODE": "PER_KERNEL",
            f"{dma}_RAM_TYPE": "MC",
        },
    )
    p.addr("SDP_RDMA", f"D_{stem}_BASE_ADDR_LOW", f"D_{stem}_BASE_ADDR_HIGH", address)
    return True


def _y_unit(p: Program, unit: EwUnit | None, ew: Surface | None, lut: SdpLut | None) -> bool:
    """Y: the operand stage (ALU or MUL with an E-RDMA tensor), then the lookup table."""
    if (unit is None or ew is None) and lut is None:
        p.w("SDP", "D_DP_EW_CFG", EW_BYPASS="YES")
        p.w("SDP_RDMA", "D_ERDMA_CFG", ERDMA_DISABLE="YES")
        return False
    stage = None if unit is None or ew is None else unit.stage
    p.w(
        "SDP",
        "D_DP_EW_CFG",
        EW_BYPASS="NO",
        EW_ALU_BYPASS="NO" if stage == "alu" else "YES",
        EW_ALU_ALGO=(unit.alu if unit is not None else "sum").upper(),
        EW_MUL_BYPASS="NO" if stage == "mul" else "YES",
        EW_MUL_PRELU="NO",
        EW_LUT_BYPASS="NO" if lut is not None else "YES",
    )
    for kind, active in (("ALU", stage == "alu"), ("MUL", stage == "mul")):
        assert unit is not None or not active
        p.w(
            "SDP",
            f"D_DP_EW_{kind}_CFG",
            **{
                f"EW_{kind}_SRC": "MEM" if active else "REG",
                f"EW_{kind}_CVT_BYPASS": "NO" if active else "YES",
            },
        )
        p.w("SDP", f"D_DP_EW_{kind}_SRC_VALUE", **{f"EW_{kind}_OPERAND": 0 if active else 1})
        cvt = (unit.cvt_offset, unit.cvt_scale, unit.cvt_truncate) if active and unit else (0, 1, 0)
        p.w("SDP", f"D_DP_EW_{kind}_CVT_OFFSET_VALUE", **{f"EW_{kind}_CVT_OFFSET": cvt[0]})
        p.w("SDP", f"D_DP_EW_{kind}_CVT_SCALE_VALUE", **{f"EW_{kind}_CVT_SCALE": cvt[1]})
        p.w("SDP", f"D_DP_EW_{kind}_CVT_TRUNCATE_VALUE", **{f"EW_{kind}_CVT_TRUNCATE": cvt[2]})
    p.w(
        "SDP", "D_DP_EW_TRUNCATE_VALUE", EW_TRUNCATE=unit.truncate if stage == "mul" and unit else 0
    )
    if stage is None or ew is None or unit is None:
        p.w("SDP_RDMA", "D_ERDMA_CFG", ERDMA_DISABLE="YES")
        return False
    p.w(
        "SDP_RDMA",
        "D_ERDMA_CFG",
        ERDMA_DISABLE="NO",
        ERDMA_DATA_USE=stage.upper(),
        ERDMA_DATA_SIZE="ONE_BYTE",
        ERDMA_DATA_MODE="PER_ELEMENT",
        ERDMA_RAM_TYPE="MC",
    )
    p.addr("SDP_RDMA", "D_EW_BASE_ADDR_LOW", "D_EW_BASE_ADDR_HIGH", ew.address)
    p.value("SDP_RDMA", "D_EW_LINE_STRIDE", ew.line_stride)
    p.value("SDP_RDMA", "D_EW_SURFACE_STRIDE", ew.surf_stride)
    return True


def sdp_lut_writes(p: Program, lut: SdpLut) -> None:
    """The SDP lookup table (shared ``S_`` registers): both tables streamed through
    S_LUT_ACCESS_DATA, then their bounds, index selects, slopes and priorities, linear LE."""
    for table_id, table in (("LE", lut.le), ("LO", lut.lo)):
        p.w("SDP", "S_LUT_ACCESS_CFG", LUT_ADDR=0, LUT_TABLE_ID=table_id, LUT_ACCESS_TYPE="WRITE")
        for v in np.asarray(table.entries, dtype=np.int64):
            p.w("SDP", "S_LUT_ACCESS_DATA", LUT_DATA=int(v) & 0xFFFF)
    p.w(
        "SDP",
        "S_LUT_CFG",
        LUT_LE_FUNCTION="LINEAR",
        LUT_UFLOW_PRIORITY="LO" if lut.uflow_lo else "LE",
        LUT_OFLOW_PRIORITY="LO" if lut.oflow_lo else "LE",
        LUT_HYBRID_PRIORITY="LO" if lut.hybrid_lo else "LE",
    )
    p.w("SDP", "S_LUT_INFO", LUT_LE_INDEX_OFFSET=0, LUT_LE_INDEX_SELECT=lut.le.index_select,
        LUT_LO_INDEX_SELECT=lut.lo.index_select)  # fmt: skip
    for stem, t in (("LE", lut.le), ("LO", lut.lo)):
        _sdp_lut_table(p, stem, t)


def _sdp_lut_table(p: Program, stem: str, t: LutTable) -> None:
    p.w("SDP", f"S_LUT_{stem}_START", **{f"LUT_{stem}_START": t.start})
    p.w("SDP", f"S_LUT_{stem}_END", **{f"LUT_{stem}_END": t.end})
    p.w("SDP", f"S_LUT_{stem}_SLOPE_SCALE",
        **{f"LUT_{stem}_SLOPE_UFLOW_SCALE": t.uflow_scale,
           f"LUT_{stem}_SLOPE_OFLOW_SCALE": t.oflow_scale})  # fmt: skip
    p.w("SDP", f"S_LUT_{stem}_SLOPE_SHIFT",
        **{f"LUT_{stem}_SLOPE_UFLOW_SHIFT": t.uflow_shift,
           f"LUT_{stem}_SLOPE_OFLOW_SHIFT": t.oflow_shift})  # fmt: skip


def _cube(p: Program, unit: str, s: Surface) -> None:
    p.w(unit, "D_DATA_CUBE_WIDTH", WIDTH=s.width - 1)
    p.w(unit, "D_DATA_CUBE_HEIGHT", HEIGHT=s.height - 1)
    p.w(unit, "D_DATA_CUBE_CHANNEL", CHANNEL=s.channels - 1)


def _sdp(
    p: Program,
    chain: SdpChain,
    out: Surface,
    operands: Operands,
    ew: Surface | None,
    flying: bool,
    to_pdp: bool = False,
    precision: str = "INT8",
) -> bool:
    """SDP and SDP_RDMA registers of a chain (``precision``: INT8 or FP16 data and processing);
    True when SDP_RDMA takes part."""
    if chain.lut is not None:
        sdp_lut_writes(p, chain.lut)  # before the D_ registers: the operation reads them
    _cube(p, "SDP_RDMA", out)
    _cube(p, "SDP", out)
    p.addr("SDP", "D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH", out.address)
    p.value("SDP", "D_DST_LINE_STRIDE", out.line_stride)
    p.value("SDP", "D_DST_SURFACE_STRIDE", out.surf_stride)
    p.w("SDP", "D_DST_DMA_CFG", DST_RAM_TYPE="MC")
    p.w("SDP", "D_DATA_FORMAT", PROC_PRECISION=precision, OUT_PRECISION=precision)
    mode = "ON" if flying else "OFF"
    p.w("SDP", "D_FEATURE_MODE_CFG", FLYING_MODE=mode, OUTPUT_DST="PDP" if to_pdp else "MEM",
        WINOGRAD="OFF")  # fmt: skip
    p.w(
        "SDP_RDMA",
        "D_FEATURE_MODE_CFG",
        FLYING_MODE=mode,
        WINOGRAD="OFF",
        IN_PRECISION=precision,
        PROC_PRECISION=precision,
        OUT_PRECISION=precision,
    )
    _x_unit(p, "BS", chain.x1, precision == "FP16")
    _x_unit(p, "BN", chain.x2, precision == "FP16")
    rdma = _x_rdma(p, "BRDMA", "BS", chain.x1, operands.bs)
    rdma |= _x_rdma(p, "NRDMA", "BN", chain.x2, operands.bn)
    rdma |= _y_unit(p, chain.y, ew, chain.lut)
    p.w("SDP", "D_CVT_OFFSET", CVT_OFFSET=chain.c.offset)
    p.w("SDP", "D_CVT_SCALE", CVT_SCALE=chain.c.scale)
    p.w("SDP", "D_CVT_SHIFT", CVT_SHIFT=chain.c.shift)
    return rdma


def conv_program(
    regmap: RegisterMap,
    layer: QConv,
    tile: Tile,
    src: Surface,
    dst: Surface,
    weights: int,
    weight_size: int,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    pads_lr: tuple[int, int],
    operands: Operands,
    ew: Surface | None,
    atom: int,
    pool: tuple[QPool, Surface] | None = None,
) -> list[Write]:
    """One tile of a direct convolution with its SDP chain on the fly.

    ``src`` is the tile's input rows (all channels of the block), ``dst`` its output rows and
    kernels; ``weights`` the address of the tile's packed kernels. With ``pool`` (the pooling
    layer and the tile's part of its output) SDP hands its result to PDP on the fly and the
    convolution's own output never reaches memory.
    """
    p = Program(regmap, layer.name)
    c, h, w = src.channels, src.height, src.width
    r, s = kernel
    left, right = pads_lr
    prec = layer.precision.upper()
    bytes_per_kernel = c * r * s * (2 if prec == "FP16" else 1)
    for unit in ("CDMA", "CSC"):
        p.w(
            unit,
            "D_MISC_CFG",
            CONV_MODE="DIRECT",
            IN_PRECISION=prec,
            PROC_PRECISION=prec,
            DATA_REUSE="DISABLE",
            WEIGHT_REUSE="DISABLE",
            SKIP_DATA_RLS="DISABLE",
            SKIP_WEIGHT_RLS="DISABLE",
        )
        p.w(unit, "D_DATAIN_FORMAT", DATAIN_FORMAT="FEATURE")
        p.w(unit, "D_BATCH_NUMBER", BATCHES=0)
        p.w(unit, "D_ENTRY_PER_SLICE", ENTRIES=tile.entries - 1)
        p.w(unit, "D_WEIGHT_FORMAT", WEIGHT_FORMAT="UNCOMPRESSED")
        p.w(unit, "D_ZERO_PADDING_VALUE", PAD_VALUE=layer.pad_value & 0xFFFF)
        p.w(unit, "D_BANK", DATA_BANK=tile.data_banks - 1, WEIGHT_BANK=tile.weight_banks - 1)
    p.w("CDMA", "D_DATAIN_SIZE_0", DATAIN_WIDTH=w - 1, DATAIN_HEIGHT=h - 1)
    p.w("CDMA", "D_DATAIN_SIZE_1", DATAIN_CHANNEL=c - 1)
    p.w("CDMA", "D_DATAIN_SIZE_EXT_0", DATAIN_WIDTH_EXT=w - 1, DATAIN_HEIGHT_EXT=h - 1)
    p.w("CDMA", "D_PIXEL_OFFSET", PIXEL_X_OFFSET=0, PIXEL_Y_OFFSET=0)
    p.w("CDMA", "D_DAIN_RAM_TYPE", DATAIN_RAM_TYPE="MCIF")
    p.addr("CDMA", "D_DAIN_ADDR_LOW_0", "D_DAIN_ADDR_HIGH_0", src.address)
    p.value("CDMA", "D_LINE_STRIDE", src.line_stride)
    p.value("CDMA", "D_SURF_STRIDE", src.surf_stride)
    p.w(
        "CDMA",
        "D_DAIN_MAP",
        LINE_PACKED=_bool(src.line_stride == w * atom),
        SURF_PACKED=_bool(src.surf_stride == h * src.line_stride),
    )
    p.value("CDMA", "D_BATCH_STRIDE", 0)
    p.w("CDMA", "D_FETCH_GRAIN", GRAINS=0)
    p.w("CDMA", "D_WEIGHT_SIZE_0", BYTE_PER_KERNEL=bytes_per_kernel - 1)
    p.w("CDMA", "D_WEIGHT_SIZE_1", WEIGHT_KERNEL=tile.kernels - 1)
    p.w("CDMA", "D_WEIGHT_RAM_TYPE", WEIGHT_RAM_TYPE="MCIF")
    p.addr("CDMA", "D_WEIGHT_ADDR_LOW", "D_WEIGHT_ADDR_HIGH", weights)
    p.value("CDMA", "D_WEIGHT_BYTES", weight_size)
    p.w("CDMA", "D_MEAN_FORMAT", MEAN_FORMAT="DISABLE")
    p.w("CDMA", "D_CVT_CFG", CVT_EN="DISABLE", CVT_TRUNCATE=0)
    p.w("CDMA", "D_CVT_OFFSET", CVT_OFFSET=0)
    p.w("CDMA", "D_CVT_SCALE", CVT_SCALE=1)
    sy, sx = layer.stride
    p.w("CDMA", "D_CONV_STRIDE", CONV_X_STRIDE=sx - 1, CONV_Y_STRIDE=sy - 1)
    p.w(
        "CDMA",
        "D_ZERO_PADDING",
        PAD_LEFT=left,
        PAD_RIGHT=right,
        PAD_TOP=tile.pad_top,
        PAD_BOTTOM=tile.pad_bottom,
    )
    p.w("CDMA", "D_NAN_FLUSH_TO_ZERO", NAN_TO_ZERO="DISABLE")
    p.w("CSC", "D_DATAIN_SIZE_EXT_0", DATAIN_WIDTH_EXT=w - 1, DATAIN_HEIGHT_EXT=h - 1)
    p.w("CSC", "D_DATAIN_SIZE_EXT_1", DATAIN_CHANNEL_EXT=c - 1)
    p.w("CSC", "D_POST_Y_EXTENSION", Y_EXTENSION=0)
    p.w("CSC", "D_WEIGHT_SIZE_EXT_0", WEIGHT_WIDTH_EXT=s - 1, WEIGHT_HEIGHT_EXT=r - 1)
    p.w("CSC", "D_WEIGHT_SIZE_EXT_1", WEIGHT_CHANNEL_EXT=c - 1, WEIGHT_KERNEL=tile.kernels - 1)
    p.value("CSC", "D_WEIGHT_BYTES", weight_size)
    p.value("CSC", "D_WMB_BYTES", 0)
    p.w("CSC", "D_DATAOUT_SIZE_0", DATAOUT_WIDTH=dst.width - 1, DATAOUT_HEIGHT=dst.height - 1)
    p.w("CSC", "D_DATAOUT_SIZE_1", DATAOUT_CHANNEL=dst.channels - 1)
    p.w("CSC", "D_ATOMICS", ATOMICS=dst.width * dst.height - 1)
    p.w("CSC", "D_RELEASE", RLS_SLICES=h - 1)
    p.w("CSC", "D_CONV_STRIDE_EXT", CONV_X_STRIDE_EXT=sx - 1, CONV_Y_STRIDE_EXT=sy - 1)
    p.w("CSC", "D_DILATION_EXT", X_DILATION_EXT=dilation[1] - 1, Y_DILATION_EXT=dilation[0] - 1)
    p.w("CSC", "D_ZERO_PADDING", PAD_LEFT=left, PAD_TOP=tile.pad_top)
    p.w("CSC", "D_PRA_CFG", PRA_TRUNCATE=0)
    for unit in ("CMAC_A", "CMAC_B"):
        p.w(unit, "D_MISC_CFG", CONV_MODE="DIRECT", PROC_PRECISION=prec)
    p.w("CACC", "D_MISC_CFG", CONV_MODE="DIRECT", PROC_PRECISION=prec)
    p.w("CACC", "D_DATAOUT_SIZE_0", DATAOUT_WIDTH=dst.width - 1, DATAOUT_HEIGHT=dst.height - 1)
    p.w("CACC", "D_DATAOUT_SIZE_1", DATAOUT_CHANNEL=dst.channels - 1)
    p.value("CACC", "D_DATAOUT_ADDR", dst.address & 0xFFFFFFFF)
    p.w("CACC", "D_BATCH_NUMBER", BATCHES=0)
    p.value("CACC", "D_LINE_STRIDE", dst.line_stride)
    p.value("CACC", "D_SURF_STRIDE", dst.surf_stride)
    p.w(
        "CACC",
        "D_DATAOUT_MAP",
        LINE_PACKED=_bool(dst.line_stride == dst.width * atom),
        SURF_PACKED=_bool(dst.surf_stride == dst.height * dst.line_stride),
    )
    p.w("CACC", "D_CLIP_CFG", CLIP_TRUNCATE=layer.cacc_truncate)
    rdma = _sdp(p, layer.sdp, dst, operands, ew, flying=True, to_pdp=pool is not None,
                precision=prec)  # fmt: skip
    units = ("SDP_RDMA",) if rdma else ()
    if pool is not None:
        _pdp(p, pool[0], dst, pool[1], flying=True)
        units = ("PDP", *units)  # the consumer is armed before its producer
    p.enable(*units, "SDP", "CACC", "CMAC_A", "CMAC_B", "CSC", "CDMA")
    return p.writes


def _bool(value: bool) -> str:
    return "TRUE" if value else "FALSE"


def sdp_program(
    regmap: RegisterMap,
    name: str,
    chain: SdpChain,
    src: Surface,
    dst: Surface,
    operands: Operands,
    ew: Surface | None,
    precision: str = "INT8",
) -> list[Write]:
    """A standalone SDP pass from memory to memory."""
    p = Program(regmap, name)
    # the M-RDMA reads src: RDMA always runs
    _sdp(p, chain, dst, operands, ew, flying=False, precision=precision)
    p.addr("SDP_RDMA", "D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH", src.address)
    p.value("SDP_RDMA", "D_SRC_LINE_STRIDE", src.line_stride)
    p.value("SDP_RDMA", "D_SRC_SURFACE_STRIDE", src.surf_stride)
    p.w("SDP_RDMA", "D_SRC_DMA_CFG", SRC_RAM_TYPE="MC")
    p.enable("SDP_RDMA", "SDP")
    return p.writes


_POOL_METHOD = {
    "max": "POOLING_METHOD_MAX",
    "min": "POOLING_METHOD_MIN",
    "avg": "POOLING_METHOD_AVERAGE",
}


def _pdp(p: Program, layer: QPool, src: Surface, dst: Surface, flying: bool) -> None:
    """PDP registers; ``src`` is the input cube (its address only matters from memory)."""
    top, left, bottom, right = layer.pads
    kh, kw = layer.kernel
    sy, sx = layer.stride
    p.w("PDP", "D_DATA_CUBE_IN_WIDTH", CUBE_IN_WIDTH=src.width - 1)
    p.w("PDP", "D_DATA_CUBE_IN_HEIGHT", CUBE_IN_HEIGHT=src.height - 1)
    p.w("PDP", "D_DATA_CUBE_IN_CHANNEL", CUBE_IN_CHANNEL=src.channels - 1)
    p.w("PDP", "D_DATA_FORMAT", INPUT_DATA=layer.precision.upper())
    p.w("PDP", "D_PARTIAL_WIDTH_IN", PARTIAL_WIDTH_IN_FIRST=0, PARTIAL_WIDTH_IN_LAST=0,
        PARTIAL_WIDTH_IN_MID=0)  # fmt: skip
    if not flying:
        p.addr("PDP", "D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH", src.address)
        p.value("PDP", "D_SRC_LINE_STRIDE", src.line_stride)
        p.value("PDP", "D_SRC_SURFACE_STRIDE", src.surf_stride)
    p.w("PDP", "D_DATA_CUBE_OUT_WIDTH", CUBE_OUT_WIDTH=dst.width - 1)
    p.w("PDP", "D_DATA_CUBE_OUT_HEIGHT", CUBE_OUT_HEIGHT=dst.height - 1)
    p.w("PDP", "D_DATA_CUBE_OUT_CHANNEL", CUBE_OUT_CHANNEL=dst.channels - 1)
    p.w(
        "PDP",
        "D_OPERATION_MODE_CFG",
        POOLING_METHOD=_POOL_METHOD[layer.method],
        FLYING_MODE="ON_FLYING" if flying else "OFF_FLYING",
        SPLIT_NUM=0,
    )
    p.w("PDP", "D_NAN_FLUSH_TO_ZERO", NAN_TO_ZERO="DISABLE")
    p.w("PDP", "D_PARTIAL_WIDTH_OUT", PARTIAL_WIDTH_OUT_FIRST=0, PARTIAL_WIDTH_OUT_LAST=0,
        PARTIAL_WIDTH_OUT_MID=0)  # fmt: skip
    p.w(
        "PDP",
        "D_POOLING_KERNEL_CFG",
        KERNEL_WIDTH=kw - 1,
        KERNEL_HEIGHT=kh - 1,
        KERNEL_STRIDE_WIDTH=sx - 1,
        KERNEL_STRIDE_HEIGHT=sy - 1,
    )
    p.w("PDP", "D_RECIP_KERNEL_WIDTH", RECIP_KERNEL_WIDTH=layer.recip_w)
    p.w("PDP", "D_RECIP_KERNEL_HEIGHT", RECIP_KERNEL_HEIGHT=layer.recip_h)
    p.w("PDP", "D_POOLING_PADDING_CFG", PAD_LEFT=left, PAD_TOP=top, PAD_RIGHT=right,
        PAD_BOTTOM=bottom)  # fmt: skip
    for n in range(1, 8):
        # The firmware programs PAD_VALUE_nX = n * PAD_VALUE_1X (qgraph.QPool).
        p.w("PDP", f"D_POOLING_PADDING_VALUE_{n}_CFG", **{f"PAD_VALUE_{n}X": n * layer.pad_value})
    p.addr("PDP", "D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH", dst.address)
    p.value("PDP", "D_DST_LINE_STRIDE", dst.line_stride)
    p.value("PDP", "D_DST_SURFACE_STRIDE", dst.surf_stride)
    p.w("PDP", "D_DST_RAM_CFG", DST_RAM_TYPE="MC")


def pdp_program(regmap: RegisterMap, layer: QPool, src: Surface, dst: Surface) -> list[Write]:
    """PDP pooling from memory (off-flying): PDP_RDMA reads the source."""
    p = Program(regmap, layer.name)
    kw, sx, left = layer.kernel[1], layer.stride[1], layer.pads[1]
    p.w("PDP_RDMA", "D_DATA_CUBE_IN_WIDTH", CUBE_IN_WIDTH=src.width - 1)
    p.w("PDP_RDMA", "D_DATA_CUBE_IN_HEIGHT", CUBE_IN_HEIGHT=src.height - 1)
    p.w("PDP_RDMA", "D_DATA_CUBE_IN_CHANNEL", CUBE_IN_CHANNEL=src.channels - 1)
    p.w("PDP_RDMA", "D_DATA_FORMAT", INPUT_DATA=layer.precision.upper())
    p.addr("PDP_RDMA", "D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH", src.address)
    p.value("PDP_RDMA", "D_SRC_LINE_STRIDE", src.line_stride)
    p.value("PDP_RDMA", "D_SRC_SURFACE_STRIDE", src.surf_stride)
    p.w("PDP_RDMA", "D_PARTIAL_WIDTH_IN", PARTIAL_WIDTH_IN_FIRST=0, PARTIAL_WIDTH_IN_LAST=0,
        PARTIAL_WIDTH_IN_MID=0)  # fmt: skip
    p.w("PDP_RDMA", "D_FLYING_MODE", FLYING_MODE="OFF_FLYING")
    p.w("PDP_RDMA", "D_SRC_RAM_CFG", SRC_RAM_TYPE="MC")
    p.w("PDP_RDMA", "D_OPERATION_MODE_CFG", SPLIT_NUM=0)
    p.w("PDP_RDMA", "D_POOLING_KERNEL_CFG", KERNEL_WIDTH=kw - 1, KERNEL_STRIDE_WIDTH=sx - 1)
    p.w("PDP_RDMA", "D_POOLING_PADDING_CFG", PAD_WIDTH=left)
    _pdp(p, layer, src, dst, flying=False)
    p.enable("PDP_RDMA", "PDP")
    return p.writes


def _lut_bound(p: Program, name: str, value: int) -> None:
    """A 38-bit CDP LUT bound: 32 low bits, 6 high bits (two's complement)."""
    raw = value & ((1 << 38) - 1)
    p.writes.append(("CDP", f"S_LUT_{name}_LOW", raw & 0xFFFFFFFF))
    p.writes.append(("CDP", f"S_LUT_{name}_HIGH", raw >> 32))


def _lut(p: Program, layer: QLrn) -> None:
    """Both CDP tables (streamed through S_LUT_ACCESS_DATA) and their index/slope registers."""
    for table_id, table in ((0, layer.le), (1, layer.lo)):
        p.w("CDP", "S_LUT_ACCESS_CFG", LUT_ADDR=0, LUT_TABLE_ID=table_id, LUT_ACCESS_TYPE=1)
        for v in np.asarray(table.entries, dtype=np.int64):
            p.writes.append(("CDP", "S_LUT_ACCESS_DATA", int(v) & 0xFFFF))
    p.w(
        "CDP",
        "S_LUT_CFG",
        LUT_LE_FUNCTION=1,  # LINEAR
        LUT_UFLOW_PRIORITY=int(layer.uflow_lo),  # 1 = LO
        LUT_OFLOW_PRIORITY=int(layer.oflow_lo),
        LUT_HYBRID_PRIORITY=int(layer.hybrid_lo),
    )
    p.w("CDP", "S_LUT_INFO", LUT_LE_INDEX_OFFSET=0,
        LUT_LE_INDEX_SELECT=layer.le.index_select & 0xFF,
        LUT_LO_INDEX_SELECT=layer.lo.index_select & 0xFF)  # fmt: skip
    for stem, t in (("LE", layer.le), ("LO", layer.lo)):
        _lut_bound(p, f"{stem}_START", t.start)
        _lut_bound(p, f"{stem}_END", t.end)
        p.w("CDP", f"S_LUT_{stem}_SLOPE_SCALE",
            **{f"LUT_{stem}_SLOPE_UFLOW_SCALE": t.uflow_scale & 0xFFFF,
               f"LUT_{stem}_SLOPE_OFLOW_SCALE": t.oflow_scale & 0xFFFF})  # fmt: skip
        p.w("CDP", f"S_LUT_{stem}_SLOPE_SHIFT",
            **{f"LUT_{stem}_SLOPE_UFLOW_SHIFT": t.uflow_shift & 0x1F,
               f"LUT_{stem}_SLOPE_OFLOW_SHIFT": t.oflow_shift & 0x1F})  # fmt: skip


def cdp_program(regmap: RegisterMap, layer: QLrn, src: Surface, dst: Surface) -> list[Write]:
    """LRN on CDP from memory to memory: CDP_RDMA reads the source, the LUT is written first."""
    p = Program(regmap, layer.name)
    _lut(p, layer)
    p.w("CDP_RDMA", "D_DATA_CUBE_WIDTH", WIDTH=src.width - 1)
    p.w("CDP_RDMA", "D_DATA_CUBE_HEIGHT", HEIGHT=src.height - 1)
    p.w("CDP_RDMA", "D_DATA_CUBE_CHANNEL", CHANNEL=src.channels - 1)
    p.w("CDP_RDMA", "D_DATA_FORMAT", INPUT_DATA=0)  # INT8
    p.w("CDP_RDMA", "D_OPERATION_MODE", OPERATION_MODE=0)
    p.w("CDP_RDMA", "D_SRC_COMPRESSION_EN", SRC_COMPRESSION_EN=0)
    p.w("CDP_RDMA", "D_SRC_DMA_CFG", SRC_RAM_TYPE=1)  # MC
    p.addr("CDP_RDMA", "D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH", src.address)
    p.value("CDP_RDMA", "D_SRC_LINE_STRIDE", src.line_stride)
    p.value("CDP_RDMA", "D_SRC_SURFACE_STRIDE", src.surf_stride)
    p.w("CDP", "D_DATA_FORMAT", INPUT_DATA_TYPE=0)  # INT8
    p.w("CDP", "D_FUNC_BYPASS", SQSUM_BYPASS=0, MUL_BYPASS=int(layer.mul_bypass))
    p.w("CDP", "D_LRN_CFG", NORMALZ_LEN=layer.normalz_len)
    p.w("CDP", "D_DATIN_OFFSET", DATIN_OFFSET=layer.in_offset & 0xFFFF)
    p.w("CDP", "D_DATIN_SCALE", DATIN_SCALE=layer.in_scale & 0xFFFF)
    p.w("CDP", "D_DATIN_SHIFTER", DATIN_SHIFTER=layer.in_shift)
    p.w("CDP", "D_DATOUT_OFFSET", DATOUT_OFFSET=layer.out_offset & 0xFFFFFFFF)
    p.w("CDP", "D_DATOUT_SCALE", DATOUT_SCALE=layer.out_scale & 0xFFFF)
    p.w("CDP", "D_DATOUT_SHIFTER", DATOUT_SHIFTER=layer.out_shift)
    p.w("CDP", "D_NAN_FLUSH_TO_ZERO", NAN_TO_ZERO=0)
    p.addr("CDP", "D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH", dst.address)
    p.value("CDP", "D_DST_LINE_STRIDE", dst.line_stride)
    p.value("CDP", "D_DST_SURFACE_STRIDE", dst.surf_stride)
    p.w("CDP", "D_DST_DMA_CFG", DST_RAM_TYPE=1)  # MC
    p.enable("CDP", "CDP_RDMA")  # the consumer is armed before its reader
    return p.writes


def rubik_contract_program(
    regmap: RegisterMap, layer: QContract, src: Surface, dst: Surface
) -> list[Write]:
    """RUBIK CONTRACT (a deconvolution's de-interleave): ``src`` holds ``sy * sx`` phases of
    ``padded`` channels (whole surfaces each), ``dst`` the ``sy H x sx W`` output; input row
    ``h`` of phase ``(y, x)`` lands on output row ``h sy + y`` (``CONTRACT_STRIDE_1`` per input
    row, ``DAOUT_LINE_STRIDE`` per ``y``), columns ``w sx + x``."""
    p = Program(regmap, layer.name)
    sy, sx = layer.stride
    p.w("RBK", "D_MISC_CFG", RUBIK_MODE="CONTRACT", IN_PRECISION="INT8")
    p.w("RBK", "D_DAIN_RAM_TYPE", DATAIN_RAM_TYPE="MCIF")
    p.w("RBK", "D_DATAIN_SIZE_0", DATAIN_WIDTH=src.width - 1, DATAIN_HEIGHT=src.height - 1)
    p.w("RBK", "D_DATAIN_SIZE_1", DATAIN_CHANNEL=src.channels - 1)
    p.addr("RBK", "D_DAIN_ADDR_LOW", "D_DAIN_ADDR_HIGH", src.address)
    p.value("RBK", "D_DAIN_LINE_STRIDE", src.line_stride)
    p.value("RBK", "D_DAIN_SURF_STRIDE", src.surf_stride)
    p.value("RBK", "D_DAIN_PLANAR_STRIDE", 0)
    p.w("RBK", "D_DAOUT_RAM_TYPE", DATAOUT_RAM_TYPE="MCIF")
    p.w("RBK", "D_DATAOUT_SIZE_1", DATAOUT_CHANNEL=dst.channels - 1)
    p.addr("RBK", "D_DAOUT_ADDR_LOW", "D_DAOUT_ADDR_HIGH", dst.address)
    p.value("RBK", "D_DAOUT_LINE_STRIDE", dst.line_stride)
    p.value("RBK", "D_DAOUT_SURF_STRIDE", dst.surf_stride)
    p.value("RBK", "D_DAOUT_PLANAR_STRIDE", 0)
    # STRIDE_0 is not read by the contract model (sim/rubik.py); set to one output row's bytes.
    p.value("RBK", "D_CONTRACT_STRIDE_0", dst.line_stride)
    p.value("RBK", "D_CONTRACT_STRIDE_1", sy * dst.line_stride)
    p.w("RBK", "D_DECONV_STRIDE", DECONV_X_STRIDE=sx - 1, DECONV_Y_STRIDE=sy - 1)
    p.enable("RBK")
    return p.writes
