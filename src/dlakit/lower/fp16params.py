"""The SDP and PDP values of an FP16 layer (nv_full, ``dlakit compile --precision fp16``).

In FP16 mode every SDP operand is an FP16 number, widened to FP32 inside the unit
(``sim/fp16_sdp.py``); the ALU shift, the MUL truncate and the output converter's offset, scale
and shift do not apply. Each X unit runs ALU -> MUL -> ReLU in that order, so a layer's stages
are packed into X1 and X2 in the order the model computes them:

* convolution: X1 ALU SUM the bias (BatchNormalization folded into weights and bias), ReLU;
  X2 ALU MIN the upper clip (ReLU6/Clip);
* standalone BatchNormalization: X1 MUL the multiplier, X2 ALU SUM the offset;
* standalone Relu/Clip: X1 ReLU (or ALU MAX a non-zero lower bound), X2 ALU MIN the upper one.

Operands are rounded to FP16 to nearest even (numpy ``float16``). PDP average pooling multiplies
by two FP17 reciprocals; they are the firmware's (``pdp.c`` ``recip_kernel_size[1]``), what
:func:`pdp_reciprocal_fp16` computes: ``1/k`` with its mantissa truncated to 10 bits.
"""

from __future__ import annotations

import numpy as np

from dlakit.errors import DlakitError
from dlakit.lower.qgraph import OutCvt, SdpChain, XUnit

FP17_BIAS = 31  # FP17: sign, 6 exponent bits, 10 mantissa bits
PDP_KERNEL_MAX = 8


def _f16(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1).astype(np.float16)


def sdp_chain(
    bias: np.ndarray | None = None,
    mul: np.ndarray | None = None,
    clip: tuple[float | None, float | None] = (None, None),
    where: str = "",
) -> SdpChain:
    """X1/X2 of an FP16 layer: ``mul`` first, then ``bias``, then the clip bounds."""
    lo, hi = clip
    stages: list[tuple[str, object]] = []
    if mul is not None:
        stages.append(("mul", _f16(mul)))
    if bias is not None:
        stages.append(("sum", _f16(bias)))
    if lo == 0.0:
        stages.append(("relu", None))
    elif lo is not None:
        stages.append(("max", _f16([lo])))
    if hi is not None:
        stages.append(("min", _f16([hi])))
    units: list[XUnit] = []
    for kind, value in stages:
        unit = units[-1] if units else None
        if kind == "relu":
            if unit is None or unit.relu:
                units.append(XUnit(relu=True))
            else:
                unit.relu = True
        elif kind == "mul":
            if unit is None or unit.mul is not None or unit.relu:
                units.append(XUnit(mul=value))  # type: ignore[arg-type]
            else:
                unit.mul = value  # type: ignore[assignment]
        elif unit is None or unit.alu is not None or unit.mul is not None or unit.relu:
            units.append(XUnit(alu=kind, alu_operand=value))  # type: ignore[arg-type]
        else:
            unit.alu, unit.alu_operand = kind, value  # type: ignore[assignment]
    if len(units) > 2:
        raise DlakitError(f"layer {where}: {len(units)} SDP stages in FP16; X1 and X2 hold two")
    return SdpChain(
        x1=units[0] if units else None,
        x2=units[1] if len(units) > 1 else None,
        c=OutCvt(precision="fp16"),
    )


def pdp_reciprocal_fp16(k: int) -> int:
    """The FP17 bits of ``1/k`` with a truncated mantissa, as the firmware's FP16 table holds
    them (0x7C00, 0x7800, 0x7555, 0x7400, 0x7266, 0x7155, 0x7092, 0x7000 for k = 1..8)."""
    if not 1 <= k <= PDP_KERNEL_MAX:
        raise DlakitError(f"PDP pooling kernel {k} is outside 1..{PDP_KERNEL_MAX}")
    n = (k - 1).bit_length()  # 1/k = 2^-n * (2^n / k), 2^n / k in [1, 2)
    mantissa = (1 << (10 + n)) // k - (1 << 10)
    return ((FP17_BIAS - n) << 10) | mantissa
