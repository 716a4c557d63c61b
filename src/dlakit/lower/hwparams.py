"""Derive the SDP/PDP register integers of a layer from its float scales.

Follows the NVDLA compiler's factorisation (``nvdla.md`` §5.4, ``LowPrecision.h``): a float
rescale ``s`` becomes an INT16 multiplier and a right shift, ``shift = 15 - (floor(log2|s|)+1)``,
``scale = int(|s| * 2^shift)`` with the sign put back, so the multiplier has 15 significant bits.
Per-channel multipliers share the shift of the largest ``|s|`` because the shift is a per-layer
register. Shifts must fit their 6-bit fields (< 64); the compiler warns above 31.

Placement chosen for a convolution (accumulator ``acc`` in units ``s_in * s_w[k]``):

* X1: ALU SUM ``bias[k]`` as ``op16[k] << alu_shift`` (accumulator units), MUL ``m[k]``, TRT
  ``t``: ``y = round((acc + bias) * m >> t)`` is in output units (``s_out``), or in
  ``s_out / 2^EW_HEADROOM`` when a Y add follows. ReLU (lower clip 0) sits in X1.
* X2: upper clip (ReLU6/Clip max) as ALU MIN with a register operand, MUL bypassed, TRT 0;
  omitted when the clip does not bite inside INT8 range (the usual case: a calibrated ReLU6
  output has amax <= 6).
* X2 otherwise, where the shared shift would leave some channel's multiplier with fewer than
  ``MIN_MUL_BITS`` significant bits (depthwise layers span 2^10 in scale): per-channel
  exponents. X1 uses each channel's own 15-bit mantissa with the largest channel's shift, X2
  multiplies by the per-channel power of two ``2^(D - e_k)`` and shifts by ``D``. This departs
  from the NVDLA compiler (which accepts the loss) but uses only what the registers offer.
* Y: the second tensor of an Add, converted to the X1 output units by the ALU operand converter.
* C: identity, or ``shift = EW_HEADROOM`` back to output units after a Y add.
"""

from __future__ import annotations

import math

import numpy as np

from dlakit.errors import DlakitError
from dlakit.lower.qgraph import EwUnit, LutTable, OutCvt, SdpChain, XUnit
from dlakit.support.rules import rule_check

SHIFT_MAX = 63  # 6-bit shift fields (ALU shift, MUL truncate low 6 bits, C shift, cvt truncate)
INT16_MAX = 32767
# Extra fraction bits X1 keeps before a Y add, so both addends are rounded only once, in C.
EW_HEADROOM = 8
PDP_KERNEL_MAX = int(rule_check("nvdla", "pool.window")["max"])  # the PDP window, as the rules say
# Below this many significant bits in a per-channel multiplier, X2 takes per-channel exponents.
MIN_MUL_BITS = 12
MAX_OCTAVES = 14  # 2^14 is the largest power of two an INT16 multiplier holds


def factorize(s: float) -> tuple[int, int]:
    """One float rescale -> (INT16 multiplier, right shift), the compiler's formula."""
    scales, shift = factorize_per_channel(np.array([s], dtype=np.float64))
    return int(scales[0]), shift


def factorize_per_channel(s: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-channel rescales -> (INT16 multipliers, one shared right shift).

    The shift comes from the largest ``|s|``; smaller channels lose low bits, as in the compiler.
    """
    s = np.asarray(s, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise DlakitError("a requantization scale is NaN or infinite (bad scales or weights)")
    top = float(np.max(np.abs(s))) if s.size else 0.0
    if top == 0.0:
        return np.zeros(s.shape, dtype=np.int64), 0
    shift = 15 - (math.floor(math.log2(top)) + 1)
    if shift < 0:
        raise DlakitError(
            f"requantization scale {top:g} >= 2^15 cannot be an INT16 multiplier with a right "
            "shift (the output scale is far smaller than the input's)"
        )
    if shift > SHIFT_MAX:
        # Keep the 6-bit field: the multiplier shrinks instead (a tiny scale loses precision).
        shift = SHIFT_MAX
    mags = np.floor(np.abs(s) * 2.0**shift).astype(np.int64)
    mags = np.minimum(mags, INT16_MAX)
    return np.where(s < 0, -mags, mags), shift


def bias_operand(bias: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer bias (accumulator units) -> (INT16 operands, shared 6-bit ALU left shift).

    The smallest shift that makes every operand fit INT16; operands round half away from zero.
    """
    bias = np.asarray(bias, dtype=np.float64)
    top = float(np.max(np.abs(bias))) if bias.size else 0.0
    shift = 0
    while top / 2.0**shift >= INT16_MAX + 0.5 and shift < SHIFT_MAX:
        shift += 1
    ops = np.sign(bias) * np.floor(np.abs(bias) / 2.0**shift + 0.5)
    return np.clip(ops, -INT16_MAX - 1, INT16_MAX).astype(np.int64), shift


def _clip_units(value: float, scale: float) -> int:
    return int(np.sign(value) * np.floor(abs(value) / scale + 0.5))


def conv_chain(
    acc_scale: np.ndarray,
    bias: np.ndarray | None,
    out_scale: float,
    clip: tuple[float | None, float | None] = (None, None),
    ew_scale: float | None = None,
    ew_operand: str = "",
) -> SdpChain:
    """SDP chain for a layer whose 32-bit input is in units ``acc_scale[k]``.

    ``clip`` is (lower, upper) in real units (None = no clip; only lower 0 is supported, as ReLU),
    ``ew_scale`` the scale of an INT8 tensor added by the Y unit.
    """
    lower, upper = clip
    if lower is not None and lower != 0.0:
        raise DlakitError(f"clip lower bound {lower} is not 0 (only ReLU-style clips lower here)")
    headroom = EW_HEADROOM if ew_scale is not None else 0
    x_scale = out_scale / 2.0**headroom  # units of the X1 (or X2) output
    rescale = np.asarray(acc_scale, dtype=np.float64) / x_scale
    mul, truncate = factorize_per_channel(rescale)
    x1 = XUnit(mul=mul, truncate=truncate, relu=lower is not None)
    if bias is not None and np.any(bias != 0):
        ops, alu_shift = bias_operand(np.asarray(bias, dtype=np.float64) / acc_scale)
        x1.alu, x1.alu_operand, x1.alu_shift = "sum", ops, alu_shift
    x2 = None
    top = None if upper is None else _clip_units(upper, x_scale)
    if top is not None and top < 127 * 2**headroom:  # else INT8 saturation clips there already
        if top > INT16_MAX:
            raise DlakitError(f"clip upper bound {upper} does not fit an INT16 ALU operand")
        x2 = XUnit(alu="min", alu_operand=np.array([top]), truncate=0)
    elif _imprecise(mul):
        x1.mul, x1.truncate, x2 = _two_stage(rescale)
    y = None
    out = OutCvt()
    if ew_scale is not None:
        cvt_scale, cvt_truncate = factorize(ew_scale / x_scale)
        y = EwUnit(operand=ew_operand, cvt_offset=0, cvt_scale=cvt_scale, cvt_truncate=cvt_truncate)
        out = OutCvt(offset=0, scale=1, shift=headroom)
    return SdpChain(x1=x1, x2=x2, y=y, c=out)


def _imprecise(mul: np.ndarray) -> bool:
    """True when the shared shift leaves a non-zero multiplier with < MIN_MUL_BITS bits."""
    nonzero = np.abs(mul[mul != 0])
    return bool(nonzero.size) and int(nonzero.min()) < 1 << (MIN_MUL_BITS - 1)


def _two_stage(rescale: np.ndarray) -> tuple[np.ndarray, int, XUnit]:
    """Per-channel exponents through X2: X1 multiplies by each channel's own 15-bit mantissa
    (shift of the largest channel), X2 by a per-channel power of two ``2^(D - e_k)`` and shifts
    by ``D``; ``e_k`` (<= 14) is how many octaves channel k sits below the largest one."""
    mags = np.abs(rescale)
    live = mags > 0
    own = np.zeros(rescale.shape, dtype=np.int64)  # each channel's compiler-formula shift
    own[live] = 15 - (np.floor(np.log2(mags[live])).astype(np.int64) + 1)
    base = int(own[live].min())
    octaves = np.where(live, own - base, 0)
    depth = int(min(octaves.max(), MAX_OCTAVES))
    exps = np.minimum(octaves, depth)
    if base + depth > SHIFT_MAX or base < 0:
        mul, shift = factorize_per_channel(rescale)
        return mul, shift, XUnit(mul=np.ones(1, dtype=np.int64), truncate=0)
    m1 = np.minimum(np.floor(mags * 2.0 ** (base + exps)).astype(np.int64), INT16_MAX)
    m1 = np.where(rescale < 0, -m1, m1)
    p = (np.int64(1) << (depth - exps)).astype(np.int64)
    return m1, base, XUnit(mul=p, truncate=depth)


def pool_reciprocals(kernel: tuple[int, int]) -> tuple[int, int]:
    """(RECIP_KERNEL_WIDTH, RECIP_KERNEL_HEIGHT) for an INT8 average pool."""
    kh, kw = kernel
    if not (1 <= kh <= PDP_KERNEL_MAX and 1 <= kw <= PDP_KERNEL_MAX):
        raise DlakitError(f"PDP pooling kernel {kh}x{kw} is outside 1..{PDP_KERNEL_MAX}")
    return pdp_reciprocal(kw), pdp_reciprocal(kh)


def pdp_reciprocal(k: int) -> int:
    """``floor(2^16 / k)``: reproduces the firmware's INT8 table (``pdp.c recip_kernel_size``:
    0x10000, 0x8000, 0x5555, 0x4000, 0x3333, 0x2aaa, 0x2492, 0x2000 for k = 1..8)."""
    return (1 << 16) // k


LRN_SIZES = tuple(rule_check("nvdla", "lrn.size")["values"])  # CDP windows, as the rules say
LE_ENTRIES = 65
LO_ENTRIES = 257


def lrn_params(
    size: int, alpha: float, beta: float, bias: float, s_in: float, s_out: float
) -> dict:
    """CDP registers of ONNX ``LRN`` (``y = x / (bias + alpha/size * sum x^2)^beta``).

    Derivation: the input converter is the identity, so ``x9`` is the INT8 input ``q`` and the
    integer square sum ``s = sum q^2`` (at most ``size * 128^2 < 2^18``) stands for
    ``sum x^2 = s_in^2 * s``. The LUT holds ``f(s) = (bias + alpha/size * s_in^2 * s)^-beta``
    scaled by ``2^F``, the largest power of two keeping ``f(0) * 2^F`` in INT16. The LO table is
    linear from 0 with step ``2^k``, the smallest step whose 256 intervals cover every ``s``; the
    LE table (linear, step ``2^(k+2)``) covers the same range and every priority picks LO, so LE
    is never the answer. Then ``y = lut * q`` is ``x * f`` in units ``s_in / 2^F``, and the
    output converter rescales by ``s_in / (2^F * s_out)`` (INT16 multiplier, right shift).

    Error against float, in output units before rounding to INT8: the entries are rounded
    (``2^-(F+1)`` relative to ``f(0)``), linear interpolation of the convex ``f`` over a step
    ``h`` overshoots by at most ``h^2/8 * max f''`` with
    ``f'' = beta (beta+1) a^2 (bias + a s)^(-beta-2)``, ``a = alpha/size * s_in^2``, and the
    output multiplier has 15 significant bits.
    """
    if size not in LRN_SIZES:
        raise DlakitError(f"LRN size {size} is not one CDP offers ({LRN_SIZES})")
    if bias <= 0 or alpha < 0 or s_in <= 0 or s_out <= 0:
        raise DlakitError(f"LRN needs bias > 0 and alpha >= 0 (bias {bias:g}, alpha {alpha:g})")
    top = size * 128 * 128
    k = max(0, math.ceil(math.log2(top / (LO_ENTRIES - 1))))
    a = alpha / size * s_in * s_in
    fmax = bias**-beta if beta >= 0 else (bias + a * top) ** -beta
    frac = min(30, math.floor(math.log2(INT16_MAX / fmax)))

    def table(n: int, step: int) -> np.ndarray:
        s = np.arange(n, dtype=np.float64) * step
        vals = np.round((bias + a * s) ** -beta * 2.0**frac)
        return np.clip(vals, 0, INT16_MAX).astype(np.int16)

    end = (LO_ENTRIES - 1) << k
    mult, shift = factorize(s_in / (2.0**frac * s_out))
    return {
        "size": size,
        "normalz_len": (size - 3) // 2,
        "le": LutTable(table(LE_ENTRIES, 4 << k), 0, end, k + 2),
        "lo": LutTable(table(LO_ENTRIES, 1 << k), 0, end, k),
        "out_scale": mult,
        "out_shift": shift,
    }
