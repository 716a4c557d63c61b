"""SDP with FP16 processing (nvdla/hw nvdlav1 ``cmod/hls/sdp/sdp_x.cpp``, ``sdp_c.cpp``,
``cmod/hls_wrapper/sdp_hls_wrapper.cpp``).

Data flows as FP32 bit patterns: from CACC as they are, from memory widened from FP16. Each X
unit: ALU (operand FP16 -> FP32, then ``FpAdd`` / ``FpMax`` / ``FpMin``; the ALU shift does not
apply) -> MUL (``FpMul``; PReLU passes non-negative inputs) -> ReLU (``FpRelu``); the truncate
does not apply. The output converter is only ``Fp32ToFp16`` (offset, scale and shift are for
integer data). With ``NAN_TO_ZERO`` NaN inputs and operands become zero.
"""

from __future__ import annotations

import torch

from dlakit.sim.fp16 import (
    FP16,
    FP32,
    fp16_to_fp32,
    fp32_to_fp16,
    fp_add,
    fp_max,
    fp_min,
    fp_mul,
    fp_relu,
)
from dlakit.sim.regs import NotModelled, UnitView

_ALU = {"SUM": fp_add, "MAX": fp_max, "MIN": fp_min}


def _flush_nan(bits: torch.Tensor, fmt: tuple[int, int]) -> torch.Tensor:
    e_w, m_w = fmt
    expo = (bits >> m_w) & ((1 << e_w) - 1)
    nan = (expo == (1 << e_w) - 1) & ((bits & ((1 << m_w) - 1)) != 0)
    return torch.where(nan, torch.zeros_like(bits), bits)


def _operand(
    sdp: UnitView, stem: str, kind: str, mem_value: torch.Tensor | None, nan_to_zero: bool
) -> torch.Tensor | int:
    """An X unit's FP16 ALU or MUL operand (register or memory) widened to FP32."""
    cfg = f"D_DP_{stem}_{kind}_CFG"
    if sdp.enum(cfg, f"{stem}_{kind}_SRC") == "MEM":
        if mem_value is None:
            raise NotModelled(f"SDP.{cfg}.{stem}_{kind}_SRC=MEM with its RDMA off")
        op = mem_value & 0xFFFF
    else:
        op = torch.tensor(sdp[f"D_DP_{stem}_{kind}_SRC_VALUE"] & 0xFFFF, dtype=torch.int64)
    if nan_to_zero:
        op = _flush_nan(op, FP16)
    return fp16_to_fp32(op)


def x_unit_fp16(
    x: torch.Tensor,
    sdp: UnitView,
    stem: str,
    alu_mem: torch.Tensor | None,
    mul_mem: torch.Tensor | None,
) -> torch.Tensor:
    cfg = f"D_DP_{stem}_CFG"
    nan_to_zero = bool(sdp.f("D_FEATURE_MODE_CFG", "NAN_TO_ZERO"))
    if not sdp.f(cfg, f"{stem}_ALU_BYPASS"):
        algo = sdp.enum(cfg, f"{stem}_ALU_ALGO")
        if algo not in _ALU:
            raise NotModelled(f"SDP.{cfg}.{stem}_ALU_ALGO={algo} is not modelled for FP16")
        op = _operand(sdp, stem, "ALU", alu_mem, nan_to_zero)
        x = _ALU[algo](x, torch.as_tensor(op, device=x.device).expand_as(x), FP32)
    if not sdp.f(cfg, f"{stem}_MUL_BYPASS"):
        op = _operand(sdp, stem, "MUL", mul_mem, nan_to_zero)
        y = fp_mul(x, torch.as_tensor(op, device=x.device).expand_as(x), FP32)
        if sdp.f(cfg, f"{stem}_MUL_PRELU"):
            y = torch.where(((x >> 31) & 1) == 0, x, y)
        x = y
    if not sdp.f(cfg, f"{stem}_RELU_BYPASS"):
        x = fp_relu(x, FP32)
    return x


def prepare_input(x: torch.Tensor, sdp: UnitView, from_memory: bool) -> torch.Tensor:
    """FP32 patterns for the datapath: memory data are FP16 patterns, CACC's are FP32."""
    x = fp16_to_fp32(x) if from_memory else x
    if sdp.f("D_FEATURE_MODE_CFG", "NAN_TO_ZERO"):
        x = _flush_nan(x, FP32)
    return x


def convert_out_fp16(x: torch.Tensor, sdp: UnitView) -> torch.Tensor:
    out = sdp.enum("D_DATA_FORMAT", "OUT_PRECISION")
    if out != "FP16":
        raise NotModelled(f"SDP.D_DATA_FORMAT.OUT_PRECISION={out} with FP16 processing")
    return fp32_to_fp16(x)
