"""The KMD firmware descriptors of a compiled hardware operation, read from its register program.

dlakit's compiler states each operation once, as the register writes that run it (the ``.dla``
path, :mod:`dlakit.nvdla.program`). A loadable states it as the descriptors the KMD firmware
turns into register writes (``dla_*_op_desc``, ``dla_*_surface_desc``, ``dla_lut_param``;
nvdla/sw ``kmd/firmware/include/dla_interface.h``). This module inverts the firmware's
programming (``conv.c``, ``sdp.c``, ``pdp.c``, ``cdp.c``, ``common.c`` as modelled in
:mod:`dlakit.loadable.firmware`): each field is the register field the firmware writes it to, so
the firmware reproduces the program's register values. One compiled operation becomes one
firmware operation per unit it uses (a convolution: CONV, its SDP on the fly and the PDP that
pools on the fly). A register value the descriptors cannot express (a pixel input, compressed
weights, a PDP reciprocal other than the firmware's table, ...) is refused by name.

Fields the firmware reads but the program leaves to the hardware's defaults are filled as the
official loadables fill them (nvdla/sw regression ``flatbufs/kmd``, the compiler's ``NN_L0_0``):
unused cubes ``type`` HW with ``address`` -1, a disabled SDP stage's ``alu_type`` SUM and
``mul_operand`` 1, PDP partial widths equal to the widths when the line is not split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlakit.errors import DlakitError
from dlakit.hw import RegisterMap
from dlakit.loadable.firmware.engine import CDP, CONV, MEM_CV, MEM_HW, MEM_MC, PDP, SDP

PRECISIONS = ("INT8", "INT16", "FP16")  # dla_precision
_ALU = ("MAX", "MIN", "SUM", "EQL")  # dla_sdp_alu_op_type
_OP_NONE, _OP_MUL, _OP_ADD, _OP_BOTH = range(4)  # dla_sdp_op_type
_PER_LAYER, _PER_KERNEL, _PER_POINT = range(3)  # dla_sdp_op_mode
_ACT_NONE, _ACT_RELU, _ACT_LUT, _ACT_PRELU = range(4)  # dla_act_type
_POOL = ("POOLING_METHOD_AVERAGE", "POOLING_METHOD_MAX", "POOLING_METHOD_MIN")
_FORMAT_FEATURE = 36  # dla data_format of feature cubes (the pixel formats come before it)
LE_ENTRIES, LO_ENTRIES = 65, 257


def pdp_reciprocal(kernel: int, precision: str) -> int:
    """``recip_kernel_size[fp16][kernel - 1]`` of ``pdp.c``, as the firmware model holds it."""
    from dlakit.loadable.firmware.pdp import _RECIP

    return _RECIP[precision == "FP16"][kernel - 1]


@dataclass
class Cube:
    """A ``dla_data_cube`` before its address is an address-list index: ``address`` is the
    absolute DLA address (None: on the fly or absent); ``blob`` holds content the loadable adds
    (a per-channel table the program kept in registers)."""

    kind: int  # MEM_MC, MEM_CV or MEM_HW
    address: int | None
    width: int = 0
    height: int = 0
    channel: int = 0
    line_stride: int = 0
    surf_stride: int = 0
    size: int = 0
    blob: bytes | None = None

    @staticmethod
    def none() -> Cube:
        return Cube(MEM_HW, None)


@dataclass
class FirmwareOp:
    """One firmware operation: its unit (``DLA_OP_*``), op and surface descriptor fields (cubes
    as :class:`Cube`), its LUT (``dla_lut_param`` fields) and the compiled operation it is from."""

    unit: int
    op: dict[str, Any]
    surface: dict[str, Any]
    source: str
    lut: dict[str, Any] | None = None
    # Within one compiled operation, the unit that feeds this one on the fly (its fused parent).
    fused_parent: int | None = None


def extent(width: int, height: int, channel: int, line: int, surf: int, atom: int, bpe: int = 1):
    """Bytes from a cube's first to its last byte (its last surface holds a whole atom)."""
    surfaces = -(-channel * bpe // atom)
    return (surfaces - 1) * surf + (height - 1) * line + width * atom


class Program:
    """The last value written to each register of one compiled operation, by field."""

    def __init__(self, name: str, writes: list[tuple[str, str, int]], regmap: RegisterMap):
        self.name = name
        self.regmap = regmap
        self.values: dict[tuple[str, str], int] = {}
        self.lut_data: dict[str, dict[int, list[int]]] = {}
        table: dict[str, int] = {}
        for unit, reg, value in writes:
            if reg == "S_LUT_ACCESS_CFG":
                table[unit] = regmap.register(unit, reg).field("LUT_TABLE_ID").get(value)
                self.lut_data.setdefault(unit, {})[table[unit]] = []
            elif reg == "S_LUT_ACCESS_DATA":
                if unit not in table:
                    raise self.fail(f"{unit}.S_LUT_ACCESS_DATA before S_LUT_ACCESS_CFG")
                self.lut_data[unit][table[unit]].append(value & 0xFFFF)
            self.values[(unit, reg)] = value
        self.units = {unit for unit, _ in self.values}

    def fail(self, what: str) -> DlakitError:
        return DlakitError(f"hardware operation {self.name}: {what}")

    def raw(self, unit: str, reg: str, default: int | None = None) -> int:
        value = self.values.get((unit, reg), default)
        if value is None:
            raise self.fail(f"its program does not write {unit}.{reg}")
        return value

    def f(self, unit: str, reg: str, fname: str, default: int | None = None) -> int:
        if (unit, reg) not in self.values and default is not None:
            return default
        return self.regmap.register(unit, reg).field(fname).get(self.raw(unit, reg))

    def signed(self, unit: str, reg: str, fname: str) -> int:
        fld = self.regmap.register(unit, reg).field(fname)
        v = fld.get(self.raw(unit, reg))
        return v - (1 << fld.width) if v >> (fld.width - 1) else v

    def enum(self, unit: str, reg: str, fname: str, default: str | None = None) -> str:
        if (unit, reg) not in self.values and default is not None:
            return default
        fld = self.regmap.register(unit, reg).field(fname)
        value = fld.get(self.raw(unit, reg))
        for name, v in fld.enums.items():
            if v == value:
                return name
        raise self.fail(f"{unit}.{reg}.{fname}={value} has no name")

    def address(self, unit: str, low: str, high: str) -> int:
        return self.raw(unit, low) | (self.raw(unit, high, 0) << 32)

    def yes(self, unit: str, reg: str, fname: str) -> bool:
        return self.enum(unit, reg, fname) in ("YES", "ENABLE", "TRUE", "ON")

    def precision(self, unit: str, reg: str, fname: str) -> int:
        return PRECISIONS.index(self.enum(unit, reg, fname))


def firmware_ops(
    name: str,
    writes: list[tuple[str, str, int]],
    regmap: RegisterMap,
    atom: int,
    constants: tuple[int, bytes],
) -> list[FirmwareOp]:
    """The firmware operations of one compiled operation, in the order the firmware's
    dependency graph lists them (producer first: CONV, SDP, PDP); ``constants`` is the
    constant image (base address, bytes) the program's per-channel tables live in."""
    p = Program(name, writes, regmap)
    unmodelled = p.units - {"CDMA", "CSC", "CMAC_A", "CMAC_B", "CACC", "SDP", "SDP_RDMA",
                            "PDP", "PDP_RDMA", "CDP", "CDP_RDMA"}  # fmt: skip
    if unmodelled:
        raise p.fail(f"units {', '.join(sorted(unmodelled))} have no loadable descriptors here")
    ops: list[FirmwareOp] = []
    conv_dst = None
    if "CDMA" in p.units:
        conv, conv_dst = _conv(p, atom)
        ops.append(conv)
    sdp_dst = None
    if "SDP" in p.units:
        sdp, sdp_dst = _sdp(p, atom, conv_dst, constants)
        sdp.fused_parent = CONV if conv_dst is not None else None
        ops.append(sdp)
    if "PDP" in p.units:
        pdp = _pdp(p, atom, sdp_dst)
        pdp.fused_parent = SDP if sdp_dst is not None else None
        ops.append(pdp)
    if "CDP" in p.units:
        ops.append(_cdp(p, atom))
    if not ops:
        raise p.fail("it programs no unit a loadable describes")
    return ops


def _ram(p: Program, unit: str, reg: str, fname: str) -> int:
    """MC or CV from a RAM-type field (``MC``/``MCIF`` or ``CV``/``CVIF``)."""
    return MEM_CV if p.enum(unit, reg, fname).startswith("CV") else MEM_MC


def _conv(p: Program, atom: int) -> tuple[FirmwareOp, Cube]:
    if p.enum("CDMA", "D_DATAIN_FORMAT", "DATAIN_FORMAT") != "FEATURE":
        raise p.fail("pixel (image) input formats have no descriptors here")
    if p.enum("CDMA", "D_WEIGHT_FORMAT", "WEIGHT_FORMAT") != "UNCOMPRESSED":
        raise p.fail("compressed weights have no descriptors here")
    if p.f("CDMA", "D_MEAN_FORMAT", "MEAN_FORMAT"):
        raise p.fail("mean subtraction (pixel inputs) has no descriptors here")
    misc = ("CDMA", "D_MISC_CFG")
    in_prec, out_prec = p.precision(*misc, "IN_PRECISION"), p.precision(*misc, "PROC_PRECISION")
    bpe = 1 if in_prec == 0 else 2
    cvt_on = p.yes("CDMA", "D_CVT_CFG", "CVT_EN")
    in_cvt = {"scale": 0, "truncate": 0, "enable": 0, "offset": 0}
    if cvt_on:
        in_cvt = {
            "scale": p.signed("CDMA", "D_CVT_SCALE", "CVT_SCALE"),
            "truncate": p.f("CDMA", "D_CVT_CFG", "CVT_TRUNCATE"),
            "enable": 1,
            "offset": p.signed("CDMA", "D_CVT_OFFSET", "CVT_OFFSET"),
        }
    kw = p.f("CSC", "D_WEIGHT_SIZE_EXT_0", "WEIGHT_WIDTH_EXT") + 1
    kh = p.f("CSC", "D_WEIGHT_SIZE_EXT_0", "WEIGHT_HEIGHT_EXT") + 1
    kc = p.f("CSC", "D_WEIGHT_SIZE_EXT_1", "WEIGHT_CHANNEL_EXT") + 1
    op = {
        "conv_mode": p.f(*misc, "CONV_MODE"),
        "data_reuse": p.f(*misc, "DATA_REUSE"),
        "weight_reuse": p.f(*misc, "WEIGHT_REUSE"),
        "skip_data_rls": p.f(*misc, "SKIP_DATA_RLS"),
        "skip_weight_rls": p.f(*misc, "SKIP_WEIGHT_RLS"),
        "entry_per_slice": p.f("CDMA", "D_ENTRY_PER_SLICE", "ENTRIES") + 1,
        "data_format": _FORMAT_FEATURE,
        "pixel_mapping": 0,
        "fetch_grain": p.f("CDMA", "D_FETCH_GRAIN", "GRAINS") + 1,
        "batch": p.f("CDMA", "D_BATCH_NUMBER", "BATCHES") + 1,
        "weight_format": 0,
        "data_bank": p.f("CDMA", "D_BANK", "DATA_BANK") + 1,
        "weight_bank": p.f("CDMA", "D_BANK", "WEIGHT_BANK") + 1,
        "batch_stride": p.raw("CDMA", "D_BATCH_STRIDE", 0),
        "post_extension": p.f("CSC", "D_POST_Y_EXTENSION", "Y_EXTENSION"),
        "pixel_override": 0,
        "release": p.f("CSC", "D_RELEASE", "RLS_SLICES") + 1,
        "input_width_csc": p.f("CSC", "D_DATAIN_SIZE_EXT_0", "DATAIN_WIDTH_EXT") + 1,
        "input_height_csc": p.f("CSC", "D_DATAIN_SIZE_EXT_0", "DATAIN_HEIGHT_EXT") + 1,
        "input_channel_csc": p.f("CSC", "D_DATAIN_SIZE_EXT_1", "DATAIN_CHANNEL_EXT") + 1,
        "kernel_width_csc": kw,
        "kernel_height_csc": kh,
        "kernel_channel_csc": kc,
        "input_width_cmac": p.f("CSC", "D_DATAOUT_SIZE_0", "DATAOUT_WIDTH") + 1,
        "input_height_cmac": p.f("CSC", "D_DATAOUT_SIZE_0", "DATAOUT_HEIGHT") + 1,
        "bytes_per_kernel": p.f("CDMA", "D_WEIGHT_SIZE_0", "BYTE_PER_KERNEL") + 1,
        "mean_format": 0,
        "conv_stride_x": p.f("CDMA", "D_CONV_STRIDE", "CONV_X_STRIDE") + 1,
        "conv_stride_y": p.f("CDMA", "D_CONV_STRIDE", "CONV_Y_STRIDE") + 1,
        "pad_x_left": p.f("CDMA", "D_ZERO_PADDING", "PAD_LEFT"),
        "pad_x_right": p.f("CDMA", "D_ZERO_PADDING", "PAD_RIGHT"),
        "pad_y_top": p.f("CDMA", "D_ZERO_PADDING", "PAD_TOP"),
        "pad_y_bottom": p.f("CDMA", "D_ZERO_PADDING", "PAD_BOTTOM"),
        "dilation_x": p.f("CSC", "D_DILATION_EXT", "X_DILATION_EXT") + 1,
        "dilation_y": p.f("CSC", "D_DILATION_EXT", "Y_DILATION_EXT") + 1,
        "pra_truncate": p.f("CSC", "D_PRA_CFG", "PRA_TRUNCATE"),
        "in_precision": in_prec,
        "out_precision": out_prec,
        "pad_val": p.signed("CDMA", "D_ZERO_PADDING_VALUE", "PAD_VALUE"),
        "in_cvt": in_cvt,
        # CACC's truncate is the only output conversion the firmware programs (conv.c).
        "out_cvt": {
            "scale": 1,
            "truncate": p.f("CACC", "D_CLIP_CFG", "CLIP_TRUNCATE"),
            "enable": 1,
            "offset": 0,
        },
    }
    w = p.f("CDMA", "D_DATAIN_SIZE_0", "DATAIN_WIDTH") + 1
    h = p.f("CDMA", "D_DATAIN_SIZE_0", "DATAIN_HEIGHT") + 1
    c = p.f("CDMA", "D_DATAIN_SIZE_1", "DATAIN_CHANNEL") + 1
    line, surf = p.raw("CDMA", "D_LINE_STRIDE"), p.raw("CDMA", "D_SURF_STRIDE")
    src = Cube(_ram(p, "CDMA", "D_DAIN_RAM_TYPE", "DATAIN_RAM_TYPE"),
               p.address("CDMA", "D_DAIN_ADDR_LOW_0", "D_DAIN_ADDR_HIGH_0"), w, h, c, line, surf,
               extent(w, h, c, line, surf, atom, bpe))  # fmt: skip
    weights = Cube(_ram(p, "CDMA", "D_WEIGHT_RAM_TYPE", "WEIGHT_RAM_TYPE"),
                   p.address("CDMA", "D_WEIGHT_ADDR_LOW", "D_WEIGHT_ADDR_HIGH"), kw, kh, kc,
                   size=p.raw("CDMA", "D_WEIGHT_BYTES"))  # fmt: skip
    ow = p.f("CACC", "D_DATAOUT_SIZE_0", "DATAOUT_WIDTH") + 1
    oh = p.f("CACC", "D_DATAOUT_SIZE_0", "DATAOUT_HEIGHT") + 1
    oc = p.f("CACC", "D_DATAOUT_SIZE_1", "DATAOUT_CHANNEL") + 1
    oline, osurf = p.raw("CACC", "D_LINE_STRIDE"), p.raw("CACC", "D_SURF_STRIDE")
    # CACC hands its results to SDP on the fly: the cube has no address, only its shape (and
    # the strides the compiler's loadables state; the firmware checks them for 1x1 outputs).
    obpe = 1 if out_prec == 0 else 2
    dst = Cube(MEM_HW, None, ow, oh, oc, oline, osurf,
               extent(ow, oh, oc, oline, osurf, atom, obpe))  # fmt: skip
    surface = {
        "weight_data": weights,
        "wmb_data": Cube.none(),
        "wgs_data": Cube.none(),
        "src_data": src,
        "dst_data": dst,
        "offset_u": 0,
        "in_line_uv_stride": 0,
    }
    return FirmwareOp(CONV, op, surface, p.name), dst


def _disabled_stage() -> dict[str, Any]:
    return {"enable": 0, "alu_type": _ALU.index("SUM"), "type": _OP_NONE, "mode": _PER_LAYER,
            "act": _ACT_NONE, "shift_value": 0, "truncate": 0, "precision": 0,
            "alu_operand": 0, "mul_operand": 0}  # fmt: skip


def _x_stage(
    p: Program, stem: str, dma: str, channels: int, atom: int, constants: tuple[int, bytes]
) -> tuple[dict[str, Any], Cube]:
    """X1 (BS, B-RDMA) or X2 (BN, N-RDMA) as a ``dla_sdp_op`` and its operand cube."""
    cfg = f"D_DP_{stem}_CFG"
    if p.yes("SDP", cfg, f"{stem}_BYPASS"):
        return _disabled_stage(), Cube.none()
    alu = not p.yes("SDP", cfg, f"{stem}_ALU_BYPASS")
    mul = not p.yes("SDP", cfg, f"{stem}_MUL_BYPASS")
    relu = not p.yes("SDP", cfg, f"{stem}_RELU_BYPASS")
    prelu = p.yes("SDP", cfg, f"{stem}_MUL_PRELU")
    if relu and prelu:
        raise p.fail(f"SDP {stem}: ReLU and PReLU together have no descriptor (one act)")
    alu_mem = alu and p.enum("SDP", f"D_DP_{stem}_ALU_CFG", f"{stem}_ALU_SRC") == "MEM"
    mul_mem = mul and p.enum("SDP", f"D_DP_{stem}_MUL_CFG", f"{stem}_MUL_SRC") == "MEM"
    stage = {
        "enable": 1,
        "alu_type": _ALU.index(p.enum("SDP", cfg, f"{stem}_ALU_ALGO")),
        "type": (_OP_BOTH if alu and mul else _OP_ADD if alu else _OP_MUL if mul else _OP_NONE),
        "mode": _PER_LAYER,
        "act": _ACT_PRELU if prelu else _ACT_RELU if relu else _ACT_NONE,
        "shift_value": p.f("SDP", f"D_DP_{stem}_ALU_CFG", f"{stem}_ALU_SHIFT_VALUE", 0),
        "truncate": p.f("SDP", f"D_DP_{stem}_MUL_CFG", f"{stem}_MUL_SHIFT_VALUE"),
        "precision": 0,
        "alu_operand": 0,
        "mul_operand": 1,
    }
    if not (alu_mem or mul_mem):
        if alu:
            stage["alu_operand"] = p.signed(
                "SDP", f"D_DP_{stem}_ALU_SRC_VALUE", f"{stem}_ALU_OPERAND"
            )
        if mul:
            stage["mul_operand"] = p.signed(
                "SDP", f"D_DP_{stem}_MUL_SRC_VALUE", f"{stem}_MUL_OPERAND"
            )
        return stage, Cube.none()
    rcfg = f"D_{dma}_CFG"
    if p.yes("SDP_RDMA", rcfg, f"{dma}_DISABLE"):
        raise p.fail(f"SDP {stem} reads an operand from memory with the {dma} disabled")
    size = 2 if p.enum("SDP_RDMA", rcfg, f"{dma}_DATA_SIZE") == "TWO_BYTE" else 1
    per_kernel = p.enum("SDP_RDMA", rcfg, f"{dma}_DATA_MODE") == "PER_KERNEL"
    if not per_kernel:
        raise p.fail(f"SDP {stem}: per-element X operands have no descriptors here")
    stage["mode"] = _PER_KERNEL
    stage["precision"] = 1 if size == 2 else 0
    base = p.address("SDP_RDMA", f"D_{stem}_BASE_ADDR_LOW", f"D_{stem}_BASE_ADDR_HIGH")
    use = p.enum("SDP_RDMA", rcfg, f"{dma}_DATA_USE")
    kind = _ram(p, "SDP_RDMA", rcfg, f"{dma}_RAM_TYPE")
    if alu_mem == mul_mem or not (alu and mul):
        n = 2 if use == "BOTH" else 1
        return stage, Cube(kind, base, 1, 1, channels, atom, atom, channels * n * size)
    # One operand per channel, the other in a register: the firmware's one mode per stage reads
    # both from memory, so the register value joins the table (the same numbers per channel).
    const_base, image = constants
    at = base - const_base
    if size != 2 or at < 0 or at + 2 * channels > len(image):
        raise p.fail(f"SDP {stem}: its operand table is not in the constant image")
    table = np.frombuffer(image, dtype="<i2", count=channels, offset=at)
    other = p.signed("SDP", f"D_DP_{stem}_{'MUL' if alu_mem else 'ALU'}_SRC_VALUE",
                     f"{stem}_{'MUL' if alu_mem else 'ALU'}_OPERAND")  # fmt: skip
    if not -(1 << 15) <= other < 1 << 15:
        raise p.fail(f"SDP {stem}: register operand {other} does not fit a 16-bit table")
    both = np.empty((channels, 2), dtype="<i2")
    both[:, 0 if alu_mem else 1] = table
    both[:, 1 if alu_mem else 0] = other
    return stage, Cube(kind, None, 1, 1, channels, atom, atom, 4 * channels, both.tobytes())


def _y_stage(p: Program, channels_cube: Cube, atom: int) -> tuple[dict[str, Any], Cube]:
    """Y (EW, E-RDMA) as a ``dla_sdp_op`` and its operand cube."""
    cfg = "D_DP_EW_CFG"
    if p.yes("SDP", cfg, "EW_BYPASS"):
        return _disabled_stage() | {"cvt": {}}, Cube.none()
    alu = not p.yes("SDP", cfg, "EW_ALU_BYPASS")
    mul = not p.yes("SDP", cfg, "EW_MUL_BYPASS")
    lut = not p.yes("SDP", cfg, "EW_LUT_BYPASS")
    prelu = p.f("SDP", cfg, "EW_MUL_PRELU", 0) == 1
    if lut and prelu:
        raise p.fail("SDP Y: PReLU and LUT together have no descriptor (one act)")
    srcs = {k: p.enum("SDP", f"D_DP_EW_{k}_CFG", f"EW_{k}_SRC") for k, on in
            (("ALU", alu), ("MUL", mul)) if on}  # fmt: skip
    if len(set(srcs.values())) > 1:
        raise p.fail("SDP Y: one operand from memory and one from a register have no descriptor")
    from_mem = "MEM" in srcs.values()
    stage = {
        "enable": 1,
        "alu_type": _ALU.index(p.enum("SDP", cfg, "EW_ALU_ALGO")),
        "type": (_OP_BOTH if alu and mul else _OP_ADD if alu else _OP_MUL if mul else _OP_NONE),
        "mode": _PER_LAYER,
        "act": _ACT_LUT if lut else _ACT_PRELU if prelu else _ACT_NONE,
        "shift_value": 0,
        "truncate": p.f("SDP", "D_DP_EW_TRUNCATE_VALUE", "EW_TRUNCATE", 0) if mul else 0,
        "precision": 0,
        "alu_operand": 0,
        "mul_operand": 1,
        "cvt": {},
    }
    if not from_mem:
        if alu:
            stage["alu_operand"] = p.signed("SDP", "D_DP_EW_ALU_SRC_VALUE", "EW_ALU_OPERAND")
        if mul:
            stage["mul_operand"] = p.signed("SDP", "D_DP_EW_MUL_SRC_VALUE", "EW_MUL_OPERAND")
        return stage, Cube.none()
    rcfg = "D_ERDMA_CFG"
    if p.yes("SDP_RDMA", rcfg, "ERDMA_DISABLE"):
        raise p.fail("SDP Y reads an operand from memory with the E-RDMA disabled")
    size = 2 if p.enum("SDP_RDMA", rcfg, "ERDMA_DATA_SIZE") == "TWO_BYTE" else 1
    per_kernel = p.enum("SDP_RDMA", rcfg, "ERDMA_DATA_MODE") == "PER_KERNEL"
    stage["mode"] = _PER_KERNEL if per_kernel else _PER_POINT
    stage["precision"] = 1 if size == 2 else 0
    for kind, on in (("ALU", alu), ("MUL", mul)):
        if not on:
            continue
        bypass = p.yes("SDP", f"D_DP_EW_{kind}_CFG", f"EW_{kind}_CVT_BYPASS")
        stage["cvt"][f"{kind.lower()}_cvt"] = {
            "scale": p.signed("SDP", f"D_DP_EW_{kind}_CVT_SCALE_VALUE", f"EW_{kind}_CVT_SCALE"),
            "truncate": p.f("SDP", f"D_DP_EW_{kind}_CVT_TRUNCATE_VALUE",
                            f"EW_{kind}_CVT_TRUNCATE"),
            "enable": int(not bypass),
            "offset": p.signed("SDP", f"D_DP_EW_{kind}_CVT_OFFSET_VALUE",
                               f"EW_{kind}_CVT_OFFSET"),
        }  # fmt: skip
    n = 2 if alu and mul else 1
    base = p.address("SDP_RDMA", "D_EW_BASE_ADDR_LOW", "D_EW_BASE_ADDR_HIGH")
    c = channels_cube
    kind = _ram(p, "SDP_RDMA", rcfg, "ERDMA_RAM_TYPE")
    if per_kernel:
        return stage, Cube(kind, base, 1, 1, c.channel, atom, atom, c.channel * n * size)
    line = p.raw("SDP_RDMA", "D_EW_LINE_STRIDE")
    surf = p.raw("SDP_RDMA", "D_EW_SURFACE_STRIDE")
    size_bytes = extent(c.width, c.height, c.channel * n * size, line, surf, atom)
    return stage, Cube(kind, base, c.width, c.height, c.channel, line, surf, size_bytes)


def _lut(p: Program, unit: str) -> dict[str, Any]:
    """``dla_lut_param`` from the LUT writes of ``unit`` (``update_lut`` in common.c)."""
    tables = p.lut_data.get(unit, {})
    le, lo = tables.get(0, []), tables.get(1, [])
    if len(le) != LE_ENTRIES or len(lo) != LO_ENTRIES:
        raise p.fail(
            f"{unit} LUT: {len(le)} LE and {len(lo)} LO entries, a dla_lut_param holds "
            f"{LE_ENTRIES} and {LO_ENTRIES}"
        )
    method = p.enum(unit, "S_LUT_CFG", "LUT_LE_FUNCTION")
    le_offset = "LUT_LE_INDEX_SELECT" if method == "LINEAR" else "LUT_LE_INDEX_OFFSET"

    def point(stem: str) -> int:
        if unit == "SDP":
            return p.raw(unit, f"S_LUT_{stem}")
        return p.raw(unit, f"S_LUT_{stem}_LOW") | (p.raw(unit, f"S_LUT_{stem}_HIGH") << 32)

    def slope(stem: str, flow: str) -> dict[str, int]:
        return {
            "scale": p.signed(unit, f"S_LUT_{stem}_SLOPE_SCALE", f"LUT_{stem}_SLOPE_{flow}_SCALE"),
            "shifter": p.signed(unit, f"S_LUT_{stem}_SLOPE_SHIFT",
                                f"LUT_{stem}_SLOPE_{flow}_SHIFT"),
        }  # fmt: skip

    def i16(values: list[int]) -> list[int]:
        return [v - 0x10000 if v & 0x8000 else v for v in values]

    return {
        "linear_exp_table": i16(le),
        "linear_only_table": i16(lo),
        "linear_exp_offset": p.signed(unit, "S_LUT_INFO", le_offset),
        "linear_only_offset": p.signed(unit, "S_LUT_INFO", "LUT_LO_INDEX_SELECT"),
        "linear_exp_start": point("LE_START"),
        "linear_exp_end": point("LE_END"),
        "linear_only_start": point("LO_START"),
        "linear_only_end": point("LO_END"),
        "linear_exp_underflow_slope": slope("LE", "UFLOW"),
        "linear_exp_overflow_slope": slope("LE", "OFLOW"),
        "linear_only_underflow_slope": slope("LO", "UFLOW"),
        "linear_only_overflow_slope": slope("LO", "OFLOW"),
        "hybrid_priority": p.f(unit, "S_LUT_CFG", "LUT_HYBRID_PRIORITY"),
        "underflow_priority": p.f(unit, "S_LUT_CFG", "LUT_UFLOW_PRIORITY"),
        "overflow_priority": p.f(unit, "S_LUT_CFG", "LUT_OFLOW_PRIORITY"),
        "method": 1 if method == "LINEAR" else 0,
    }


def _sdp(
    p: Program, atom: int, conv_dst: Cube | None, constants: tuple[int, bytes]
) -> tuple[FirmwareOp, Cube | None]:
    flying = p.enum("SDP", "D_FEATURE_MODE_CFG", "FLYING_MODE") == "ON"
    if flying != (conv_dst is not None):
        raise p.fail("SDP on the fly needs the convolution that feeds it in the same operation")
    if p.enum("SDP", "D_FEATURE_MODE_CFG", "WINOGRAD") == "ON":
        raise p.fail("Winograd convolution has no descriptors here")
    to_pdp = p.enum("SDP", "D_FEATURE_MODE_CFG", "OUTPUT_DST") == "PDP"
    src_prec = p.precision("SDP_RDMA", "D_FEATURE_MODE_CFG", "IN_PRECISION")
    dst_prec = p.precision("SDP", "D_DATA_FORMAT", "OUT_PRECISION")
    w = p.f("SDP", "D_DATA_CUBE_WIDTH", "WIDTH") + 1
    h = p.f("SDP", "D_DATA_CUBE_HEIGHT", "HEIGHT") + 1
    c = p.f("SDP", "D_DATA_CUBE_CHANNEL", "CHANNEL") + 1
    if conv_dst is not None:
        src = conv_dst
    else:
        line = p.raw("SDP_RDMA", "D_SRC_LINE_STRIDE")
        surf = p.raw("SDP_RDMA", "D_SRC_SURFACE_STRIDE")
        bpe = 1 if src_prec == 0 else 2
        src = Cube(_ram(p, "SDP_RDMA", "D_SRC_DMA_CFG", "SRC_RAM_TYPE"),
                   p.address("SDP_RDMA", "D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH"),
                   w, h, c, line, surf, extent(w, h, c, line, surf, atom, bpe))  # fmt: skip
    x1, x1_data = _x_stage(p, "BS", "BRDMA", c, atom, constants)
    x2, x2_data = _x_stage(p, "BN", "NRDMA", c, atom, constants)
    y, y_data = _y_stage(p, Cube(MEM_MC, None, w, h, c), atom)
    if p.enum("SDP", "D_DATA_FORMAT", "PROC_PRECISION") == "FP16":
        # FP16 operands (two bytes, map_precision in sdp.c); every stage states the layer's
        # precision, as the official compiler's 16-bit loadables do.
        for stage in (x1, x2, y):
            stage["precision"] = PRECISIONS.index("FP16")
    lut_index = -1
    lut = None
    if y["act"] == _ACT_LUT:
        lut = _lut(p, "SDP")
        lut_index = 0  # the writer numbers the loadable's LUTs
    dbpe = 1 if dst_prec == 0 else 2
    if to_pdp:
        dst = Cube(MEM_HW, None, w, h, c, src.line_stride, src.surf_stride, src.size)
    else:
        line = p.raw("SDP", "D_DST_LINE_STRIDE")
        surf = p.raw("SDP", "D_DST_SURFACE_STRIDE")
        dst = Cube(_ram(p, "SDP", "D_DST_DMA_CFG", "DST_RAM_TYPE"),
                   p.address("SDP", "D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH"),
                   w, h, c, line, surf, extent(w, h, c, line, surf, atom, dbpe))  # fmt: skip
    op = {
        "src_precision": src_prec,
        "dst_precision": dst_prec,
        "lut_index": lut_index,
        "out_cvt": {
            "scale": p.signed("SDP", "D_CVT_SCALE", "CVT_SCALE"),
            "truncate": p.f("SDP", "D_CVT_SHIFT", "CVT_SHIFT"),
            "enable": 1,
            "offset": p.signed("SDP", "D_CVT_OFFSET", "CVT_OFFSET"),
        },
        "conv_mode": 0,
        "batch_num": p.f("SDP", "D_FEATURE_MODE_CFG", "BATCH_NUMBER", 0) + 1,
        "batch_stride": 0,
        "x1_op": x1,
        "x2_op": x2,
        "y_op": y,
    }
    surface = {"src_data": src, "x1_data": x1_data, "x2_data": x2_data, "y_data": y_data,
               "dst_data": dst}  # fmt: skip
    return FirmwareOp(SDP, op, surface, p.name, lut), dst if to_pdp else None


def _pdp(p: Program, atom: int, sdp_dst: Cube | None) -> FirmwareOp:
    mode = ("PDP", "D_OPERATION_MODE_CFG")
    flying = p.enum(*mode, "FLYING_MODE") == "ON_FLYING"
    if flying != (sdp_dst is not None):
        raise p.fail("PDP on the fly needs the SDP that feeds it in the same operation")
    prec = p.enum("PDP", "D_DATA_FORMAT", "INPUT_DATA")
    bpe = 1 if prec == "INT8" else 2
    kernel = ("PDP", "D_POOLING_KERNEL_CFG")
    pool_w, pool_h = p.f(*kernel, "KERNEL_WIDTH"), p.f(*kernel, "KERNEL_HEIGHT")
    method = p.enum(*mode, "POOLING_METHOD")
    if method == "POOLING_METHOD_AVERAGE":
        for reg, k in (("D_RECIP_KERNEL_WIDTH", pool_w + 1), ("D_RECIP_KERNEL_HEIGHT", pool_h + 1)):
            value, table = p.raw("PDP", reg), pdp_reciprocal(k, prec)
            if value != table:
                raise p.fail(
                    f"PDP.{reg}=0x{value:x}: the firmware programs its own table's 0x{table:x} "
                    f"for a kernel of {k} (pdp.c); lower with the firmware's reciprocals "
                    "(dlakit compile --format loadable does)"
                )
    iw = p.f("PDP", "D_DATA_CUBE_IN_WIDTH", "CUBE_IN_WIDTH") + 1
    ih = p.f("PDP", "D_DATA_CUBE_IN_HEIGHT", "CUBE_IN_HEIGHT") + 1
    ic = p.f("PDP", "D_DATA_CUBE_IN_CHANNEL", "CUBE_IN_CHANNEL") + 1
    ow = p.f("PDP", "D_DATA_CUBE_OUT_WIDTH", "CUBE_OUT_WIDTH") + 1
    oh = p.f("PDP", "D_DATA_CUBE_OUT_HEIGHT", "CUBE_OUT_HEIGHT") + 1
    oc = p.f("PDP", "D_DATA_CUBE_OUT_CHANNEL", "CUBE_OUT_CHANNEL") + 1
    split = p.f(*mode, "SPLIT_NUM") + 1
    if split != 1:
        raise p.fail(f"PDP split into {split} line parts has no descriptors here")
    widths = {"PARTIAL_WIDTH_IN_FIRST": iw, "PARTIAL_WIDTH_OUT_FIRST": ow}
    for fname, width in widths.items():
        reg = "D_PARTIAL_WIDTH_IN" if "_IN_" in fname else "D_PARTIAL_WIDTH_OUT"
        bits = p.regmap.register("PDP", reg).field(fname).width
        if width - 1 >= 1 << bits:
            raise p.fail(f"PDP width {width} does not fit PDP.{reg}.{fname} unsplit")
    pads = ("PDP", "D_POOLING_PADDING_CFG")
    if flying:
        src = sdp_dst
        assert src is not None
    else:
        line = p.raw("PDP_RDMA", "D_SRC_LINE_STRIDE")
        surf = p.raw("PDP_RDMA", "D_SRC_SURFACE_STRIDE")
        src = Cube(_ram(p, "PDP_RDMA", "D_SRC_RAM_CFG", "SRC_RAM_TYPE"),
                   p.address("PDP_RDMA", "D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH"),
                   iw, ih, ic, line, surf, extent(iw, ih, ic, line, surf, atom, bpe))  # fmt: skip
    line, surf = p.raw("PDP", "D_DST_LINE_STRIDE"), p.raw("PDP", "D_DST_SURFACE_STRIDE")
    dst = Cube(_ram(p, "PDP", "D_DST_RAM_CFG", "DST_RAM_TYPE"),
               p.address("PDP", "D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH"),
               ow, oh, oc, line, surf, extent(ow, oh, oc, line, surf, atom, bpe))  # fmt: skip
    op = {
        "partial_in_width_first": iw,
        "partial_in_width_mid": iw,
        "partial_in_width_last": iw,
        "partial_width_first": ow,
        "partial_width_mid": ow,
        "partial_width_last": ow,
        "split_num": split,
        "pool_mode": _POOL.index(method),
        "pool_width": pool_w,
        "pool_height": pool_h,
        "stride_x": p.f(*kernel, "KERNEL_STRIDE_WIDTH") + 1,
        "stride_y": p.f(*kernel, "KERNEL_STRIDE_HEIGHT") + 1,
        "pad_left": p.f(*pads, "PAD_LEFT"),
        "pad_right": p.f(*pads, "PAD_RIGHT"),
        "pad_top": p.f(*pads, "PAD_TOP"),
        "pad_bottom": p.f(*pads, "PAD_BOTTOM"),
        "precision": PRECISIONS.index(prec),
        "padding_value": [
            p.signed("PDP", f"D_POOLING_PADDING_VALUE_{n}_CFG", f"PAD_VALUE_{n}X")
            for n in range(1, 8)
        ],
    }
    return FirmwareOp(PDP, op, {"src_data": src, "dst_data": dst}, p.name)


def _cdp(p: Program, atom: int) -> FirmwareOp:
    prec = p.precision("CDP", "D_DATA_FORMAT", "INPUT_DATA_TYPE")
    bpe = 1 if prec == 0 else 2
    w = p.f("CDP_RDMA", "D_DATA_CUBE_WIDTH", "WIDTH") + 1
    h = p.f("CDP_RDMA", "D_DATA_CUBE_HEIGHT", "HEIGHT") + 1
    c = p.f("CDP_RDMA", "D_DATA_CUBE_CHANNEL", "CHANNEL") + 1
    line = p.raw("CDP_RDMA", "D_SRC_LINE_STRIDE")
    surf = p.raw("CDP_RDMA", "D_SRC_SURFACE_STRIDE")
    src = Cube(_ram(p, "CDP_RDMA", "D_SRC_DMA_CFG", "SRC_RAM_TYPE"),
               p.address("CDP_RDMA", "D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH"),
               w, h, c, line, surf, extent(w, h, c, line, surf, atom, bpe))  # fmt: skip
    dline = p.raw("CDP", "D_DST_LINE_STRIDE")
    dsurf = p.raw("CDP", "D_DST_SURFACE_STRIDE")
    dst = Cube(_ram(p, "CDP", "D_DST_DMA_CFG", "DST_RAM_TYPE"),
               p.address("CDP", "D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH"),
               w, h, c, dline, dsurf, extent(w, h, c, dline, dsurf, atom, bpe))  # fmt: skip
    op = {
        "in_precision": prec,
        "out_precision": prec,
        "lut_index": 0,  # the writer numbers the loadable's LUTs
        "in_cvt": {
            "scale": p.signed("CDP", "D_DATIN_SCALE", "DATIN_SCALE"),
            "truncate": p.f("CDP", "D_DATIN_SHIFTER", "DATIN_SHIFTER"),
            "enable": 1,
            "offset": p.signed("CDP", "D_DATIN_OFFSET", "DATIN_OFFSET"),
        },
        "out_cvt": {
            "scale": p.signed("CDP", "D_DATOUT_SCALE", "DATOUT_SCALE"),
            "truncate": p.f("CDP", "D_DATOUT_SHIFTER", "DATOUT_SHIFTER"),
            "enable": 1,
            "offset": p.signed("CDP", "D_DATOUT_OFFSET", "DATOUT_OFFSET"),
        },
        "local_size": 2 * p.f("CDP", "D_LRN_CFG", "NORMALZ_LEN") + 3,
        "bypass_sqsum": p.f("CDP", "D_FUNC_BYPASS", "SQSUM_BYPASS"),
        "bypass_out_mul": p.f("CDP", "D_FUNC_BYPASS", "MUL_BYPASS"),
    }
    return FirmwareOp(CDP, op, {"src_data": src, "dst_data": dst}, p.name, _lut(p, "CDP"))
