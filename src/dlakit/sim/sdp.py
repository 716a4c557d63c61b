"""SDP: the single-point post-processor (nvdla.md §5.4), whole cubes at a time.

x (int32 from CACC, or int8 from memory) -> X1 (BS) -> X2 (BN) -> [Y (EW)] -> C -> int8.
Each X unit: ALU (operand << shift, saturating to 32 bits; MAX/MIN/SUM to 33 bits) -> MUL
(16-bit operand; PReLU multiplies negatives only) -> truncate (round half away, sat32; applied even
when MUL is bypassed, but not to PReLU's pass-through) -> ReLU. C: ((x - offset) * scale) >> shift
rounded, saturated to 17 then 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dlakit.sim import fp16_sdp, lut, pdp
from dlakit.sim.arith import saturate, shift_left_sat, shift_right_round
from dlakit.sim.layout import (
    feature_addresses,
    load_signed,
)
from dlakit.sim.lut import LutTables
from dlakit.sim.memory import Memory
from dlakit.sim.precision import INT_BITS, padded, read_elements, write_elements
from dlakit.sim.regs import NotModelled, UnitView

# Register-name stems of the X units and the RDMA that feeds each (nvdla.md §1, §3).
_X_UNITS = (("BS", "BRDMA"), ("BN", "NRDMA"))
_ALU_OPS = {"MAX": torch.maximum, "MIN": torch.minimum}


@dataclass(frozen=True)
class Cube:
    base: int
    channels: int
    height: int
    width: int
    line_stride: int
    surf_stride: int


def _operands(
    mem: Memory,
    rdma: UnitView | None,
    stem: str,
    dma: str,
    shape: tuple[int, int, int],
    atom: int,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """ALU and MUL operands that the B/N/E-RDMA fetches, broadcastable to ``shape`` (C, H, W).

    As in the C model (``NV_NVDLA_sdp.cpp``): per kernel, one compact 1x1xC' vector of the padded
    channel count; per element, a cube whose atom holds 8 elements of ``n * size`` bytes. With
    DATA_USE = BOTH each element is the ALU operand followed by the MUL operand.
    """
    cfg = f"D_{dma}_CFG"
    if rdma is None or rdma.enum(cfg, f"{dma}_DISABLE") == "YES":  # SDP_RDMA not taking part
        return None, None
    use = rdma.enum(cfg, f"{dma}_DATA_USE")
    size = 2 if rdma.enum(cfg, f"{dma}_DATA_SIZE") == "TWO_BYTE" else 1
    mode = rdma.enum(cfg, f"{dma}_DATA_MODE")
    base = rdma.addr(f"D_{stem}_BASE_ADDR_LOW", f"D_{stem}_BASE_ADDR_HIGH")
    n = 2 if use == "BOTH" else 1
    c, h, w = shape
    dev = mem.device
    if mode == "PER_KERNEL":
        addrs = base + torch.arange(c, dtype=torch.int64, device=dev)[:, None, None] * (n * size)
    else:
        line = rdma[f"D_{stem}_LINE_STRIDE"]
        surf = rdma[f"D_{stem}_SURFACE_STRIDE"]
        addrs = feature_addresses(base, c, h, w, line, surf, atom * n * size, n * size, dev)
    first = load_signed(mem, addrs, size)
    second = load_signed(mem, addrs + size, size) if n == 2 else None
    if use == "ALU":
        return first, None
    if use == "MUL":
        return None, first
    return first, second


def _x_unit(
    x: torch.Tensor,
    sdp: UnitView,
    stem: str,
    alu_mem: torch.Tensor | None,
    mul_mem: torch.Tensor | None,
) -> torch.Tensor:
    cfg = f"D_DP_{stem}_CFG"
    if sdp.f(cfg, f"{stem}_BYPASS"):
        return x
    if not sdp.f(cfg, f"{stem}_ALU_BYPASS"):
        shift = sdp.f(f"D_DP_{stem}_ALU_CFG", f"{stem}_ALU_SHIFT_VALUE")
        if sdp.enum(f"D_DP_{stem}_ALU_CFG", f"{stem}_ALU_SRC") == "MEM":
            if alu_mem is None:
                raise NotModelled(f"SDP.D_DP_{stem}_ALU_CFG.{stem}_ALU_SRC=MEM with its RDMA off")
            op = shift_left_sat(alu_mem, shift, 32)
        else:
            op = shift_left_sat(sdp.signed(f"D_DP_{stem}_ALU_SRC_VALUE"), shift, 32)
        algo = sdp.enum(cfg, f"{stem}_ALU_ALGO")
        if algo == "SUM":
            x = x + op
        elif algo in _ALU_OPS:
            x = _ALU_OPS[algo](x, torch.as_tensor(op, dtype=torch.int64, device=x.device))
        else:
            raise NotModelled(f"SDP.{cfg}.{stem}_ALU_ALGO={algo} is not modelled")
    shift = sdp.f(f"D_DP_{stem}_MUL_CFG", f"{stem}_MUL_SHIFT_VALUE") & 0x3F
    if sdp.f(cfg, f"{stem}_MUL_BYPASS"):
        y = shift_right_round(x, shift, 49, 32)
    else:
        if sdp.enum(f"D_DP_{stem}_MUL_CFG", f"{stem}_MUL_SRC") == "MEM":
            if mul_mem is None:
                raise NotModelled(f"SDP.D_DP_{stem}_MUL_CFG.{stem}_MUL_SRC=MEM with its RDMA off")
            scale: torch.Tensor | int = mul_mem
        else:
            scale = sdp.signed(f"D_DP_{stem}_MUL_SRC_VALUE")
        y = shift_right_round(x * scale, shift, 49, 32)
        if sdp.f(cfg, f"{stem}_MUL_PRELU"):
            y = torch.where(x >= 0, x, y)
    if not sdp.f(cfg, f"{stem}_RELU_BYPASS"):
        y = y.clamp_min(0)
    return y


def is_fp16(sdp: UnitView) -> bool:
    return sdp.enum("D_DATA_FORMAT", "PROC_PRECISION") == "FP16"


def out_precision(sdp: UnitView) -> str:
    return sdp.enum("D_DATA_FORMAT", "OUT_PRECISION")


def convert_out(x: torch.Tensor, sdp: UnitView) -> torch.Tensor:
    """The C output converter to INT8 or INT16 (cmod ``sdp_c.cpp``: saturate to 17 bits, then
    to the output width)."""
    off = sdp.signed("D_CVT_OFFSET")
    scale = sdp.signed("D_CVT_SCALE")
    shift = sdp["D_CVT_SHIFT"] & 0x3F
    # Skipping an identity offset or scale saves whole-cube passes, not arithmetic.
    if off:
        x = x - off
    if scale != 1:
        x = x * scale
    # sat8(sat17(v)) == sat8(v), and likewise for 16 bits: one saturation does both.
    return shift_right_round(x, shift, 49, INT_BITS[out_precision(sdp)])


def sdp_process(
    x: torch.Tensor,
    mem: Memory,
    sdp: UnitView,
    rdma: UnitView | None,
    lut_tables: LutTables,
    atom: int,
) -> torch.Tensor:
    """int32/int8 cube [C, H, W] in, int8 values out, through X1, X2, Y and C (with FP16
    processing: FP32 bit patterns in, FP16 bit patterns out, see ``fp16_sdp``)."""
    shape = tuple(x.shape)
    fp16 = is_fp16(sdp)
    for stem, dma in _X_UNITS:
        if sdp.f(f"D_DP_{stem}_CFG", f"{stem}_BYPASS"):
            continue
        alu, mul = None, None
        if _reads_memory(sdp, stem):  # an RDMA not taking part fetches nothing
            alu, mul = _operands(mem, rdma, stem, dma, shape, atom)  # type: ignore[arg-type]
        if fp16:
            x = fp16_sdp.x_unit_fp16(x, sdp, stem, alu, mul)
        else:
            x = _x_unit(x, sdp, stem, alu, mul)
    if fp16:
        if not sdp.f("D_DP_EW_CFG", "EW_BYPASS"):
            raise NotModelled("SDP.D_DP_EW_CFG.EW_BYPASS=NO with FP16 processing is not modelled")
        return fp16_sdp.convert_out_fp16(x, sdp)
    if not sdp.f("D_DP_EW_CFG", "EW_BYPASS"):
        # nv_small's spec has no Y unit, yet its official sdp_*_ew_* traces program it and their
        # golden CRCs include its LUT: the model runs Y whenever it is programmed.
        alu, mul = None, None
        if _reads_memory(sdp, "EW"):
            alu, mul = _operands(mem, rdma, "EW", "ERDMA", shape, atom)  # type: ignore[arg-type]
        x = _y_unit(x, sdp, lut_tables, alu, mul)
    return convert_out(x, sdp)


def _y_operand(sdp: UnitView, kind: str, mem_value: torch.Tensor | None) -> torch.Tensor | int:
    """Y ALU/MUL operand: the 32-bit register, or the E-RDMA value through its converter."""
    cfg = f"D_DP_EW_{kind}_CFG"
    if sdp.enum(cfg, f"EW_{kind}_SRC") == "REG":
        return sdp.signed(f"D_DP_EW_{kind}_SRC_VALUE")
    if mem_value is None:
        raise NotModelled(f"SDP.{cfg}.EW_{kind}_SRC=MEM with the E-RDMA disabled")
    if sdp.f(cfg, f"EW_{kind}_CVT_BYPASS"):
        return mem_value
    off = sdp.signed(f"D_DP_EW_{kind}_CVT_OFFSET_VALUE")
    scale = sdp.signed(f"D_DP_EW_{kind}_CVT_SCALE_VALUE")
    shift = sdp[f"D_DP_EW_{kind}_CVT_TRUNCATE_VALUE"] & 0x3F
    return shift_right_round((mem_value - off) * scale, shift, 49, 32)


def _y_unit(
    x: torch.Tensor,
    sdp: UnitView,
    tables: LutTables,
    alu_mem: torch.Tensor | None,
    mul_mem: torch.Tensor | None,
) -> torch.Tensor:
    """Y (EW): MUL (64-bit product, 10-bit truncate) -> ALU (saturating to 32) -> LUT."""
    cfg = "D_DP_EW_CFG"
    if not sdp.f(cfg, "EW_MUL_BYPASS"):
        op = _y_operand(sdp, "MUL", mul_mem)
        shift = min(sdp["D_DP_EW_TRUNCATE_VALUE"] & 0x3FF, 63)
        y = shift_right_round(x * op, shift, 64, 32)
        x = torch.where(x >= 0, x, y) if sdp.f(cfg, "EW_MUL_PRELU") else y
    if not sdp.f(cfg, "EW_ALU_BYPASS"):
        op = _y_operand(sdp, "ALU", alu_mem)
        algo = sdp.enum(cfg, "EW_ALU_ALGO")
        if algo == "SUM":
            x = saturate(x + op, 32)
        elif algo in _ALU_OPS:
            x = _ALU_OPS[algo](x, torch.as_tensor(op, dtype=torch.int64, device=x.device))
        else:
            raise NotModelled(f"SDP.{cfg}.EW_ALU_ALGO={algo} (comparison mode) is not modelled")
    if not sdp.f(cfg, "EW_LUT_BYPASS"):
        x = lut.sdp_lookup(x, tables, lut.params_from(sdp, wide_start=False))
    return x


def output_cube(sdp: UnitView) -> Cube:
    return Cube(
        base=sdp.addr("D_DST_BASE_ADDR_LOW", "D_DST_BASE_ADDR_HIGH"),
        channels=sdp["D_DATA_CUBE_CHANNEL"] + 1,
        height=sdp["D_DATA_CUBE_HEIGHT"] + 1,
        width=sdp["D_DATA_CUBE_WIDTH"] + 1,
        line_stride=sdp["D_DST_LINE_STRIDE"],
        surf_stride=sdp["D_DST_SURFACE_STRIDE"],
    )


def check_formats(sdp: UnitView) -> None:
    sdp.require("D_DATA_FORMAT", "OUT_PRECISION", {"INT8", "INT16", "FP16"})
    sdp.require("D_FEATURE_MODE_CFG", "WINOGRAD", {"OFF"})
    if sdp.f("D_FEATURE_MODE_CFG", "BATCH_NUMBER"):
        raise NotModelled("SDP.D_FEATURE_MODE_CFG.BATCH_NUMBER>0 (batches) is not modelled")


def to_pdp(sdp: UnitView) -> bool:
    """Whether SDP hands its output to PDP on the fly instead of writing it."""
    return sdp.enum("D_FEATURE_MODE_CFG", "OUTPUT_DST") == "PDP"


def deliver(
    mem: Memory, sdp: UnitView, values: torch.Tensor, atom: int, pdp_view: UnitView | None
) -> None:
    """SDP's WDMA write, or the on-the-fly hand-over to PDP (which pools and writes)."""
    if pdp_view is not None:
        pdp.pool_and_write(mem, pdp_view, values, atom)
    else:
        write_output(mem, output_cube(sdp), values, atom, out_precision(sdp))


def write_output(
    mem: Memory, out: Cube, values: torch.Tensor, atom: int, precision: str = "INT8"
) -> None:
    write_elements(mem, out.base, values, out.line_stride, out.surf_stride, atom, precision)


def run_sdp_from_memory(
    mem: Memory,
    sdp: UnitView,
    rdma: UnitView,
    lut_tables: LutTables,
    atom: int,
    pdp_view: UnitView | None = None,
) -> None:
    """Off-flying SDP: the M-RDMA reads an INT8 cube, the WDMA writes the result."""
    check_formats(sdp)
    precision = rdma.require("D_FEATURE_MODE_CFG", "IN_PRECISION", {"INT8", "INT16", "FP16"})
    src = Cube(
        base=rdma.addr("D_SRC_BASE_ADDR_LOW", "D_SRC_BASE_ADDR_HIGH"),
        channels=rdma["D_DATA_CUBE_CHANNEL"] + 1,
        height=rdma["D_DATA_CUBE_HEIGHT"] + 1,
        width=rdma["D_DATA_CUBE_WIDTH"] + 1,
        line_stride=rdma["D_SRC_LINE_STRIDE"],
        surf_stride=rdma["D_SRC_SURFACE_STRIDE"],
    )
    c = padded(src.channels, atom, precision)
    x = read_elements(
        mem, src.base, c, src.height, src.width, src.line_stride, src.surf_stride, atom, precision
    )
    if is_fp16(sdp):
        if precision != "FP16":
            raise NotModelled(f"SDP_RDMA.D_FEATURE_MODE_CFG.IN_PRECISION={precision} with FP16 SDP")
        x = fp16_sdp.prepare_input(x, sdp, from_memory=True)
    deliver(mem, sdp, sdp_process(x, mem, sdp, rdma, lut_tables, atom), atom, pdp_view)


def _reads_memory(sdp: UnitView, stem: str) -> bool:
    """Whether the active unit ``stem`` (BS, BN, EW) takes its ALU or MUL operand from memory."""
    cfg = f"D_DP_{stem}_CFG"
    if sdp.f(cfg, f"{stem}_BYPASS"):
        return False
    return any(
        not sdp.f(cfg, f"{stem}_{kind}_BYPASS")
        and sdp.enum(f"D_DP_{stem}_{kind}_CFG", f"{stem}_{kind}_SRC") == "MEM"
        for kind in ("ALU", "MUL")
    )


def needs_rdma(sdp: UnitView) -> bool:
    """Whether an active X unit takes an operand from memory (so SDP_RDMA takes part)."""
    return any(_reads_memory(sdp, stem) for stem, _ in _X_UNITS)
