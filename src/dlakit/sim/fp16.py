"""The floating-point primitives of the NVDLA C model, bit for bit, on int64 tensors of bit
patterns (nvdla/hw nvdlav1 ``cmod/hls/include/nvdla_float.h``).

They are not IEEE 754 in every corner, and the differences are the point:

* Overflow and infinities saturate to the largest finite number (``SetToInf``: exponent
  max-1, mantissa all ones); FP16 infinity widens to the FP32 maximum.
* ``FpAdd`` aligns the smaller operand by truncating the bits shifted out (no sticky bit) into a
  2M+3-bit sum, flushes results below the normal range to (signed) zero, rounds to nearest even;
  the sign of an exact zero sum is the sign of the larger operand (``a`` when equal).
* ``FpMul`` flushes underflow to zero and rounds the 2M+2-bit product to nearest even.
* FP32 -> FP16 rounds to nearest even, keeps subnormals, saturates to 65504; FP16 -> FP32 is
  exact (subnormals normalized).
* A NaN operand is returned as it is (the first of two), its payload cut to the output width.

Bit patterns are non-negative int64 (FP16: 0..0xFFFF, FP32: 0..0xFFFFFFFF).
"""

from __future__ import annotations

import torch

FP16 = (5, 10)
FP32 = (8, 23)


def _fields(bits: torch.Tensor, fmt: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    e_w, m_w = fmt
    return (bits >> (e_w + m_w)) & 1, (bits >> m_w) & ((1 << e_w) - 1), bits & ((1 << m_w) - 1)


def _pack(sign: torch.Tensor, expo: torch.Tensor, mant: torch.Tensor, fmt: tuple[int, int]):
    e_w, m_w = fmt
    return (sign << (e_w + m_w)) | (expo << m_w) | mant


def _is_nan(expo: torch.Tensor, mant: torch.Tensor, fmt: tuple[int, int]) -> torch.Tensor:
    return (expo == (1 << fmt[0]) - 1) & (mant != 0)


def bit_length(v: torch.Tensor) -> torch.Tensor:
    """Bits needed for non-negative integers below 2**53 (0 for 0), exactly."""
    _, e = torch.frexp(v.to(torch.float64))
    return torch.where(v > 0, e.to(torch.int64), torch.zeros_like(v))


def _rne(value: torch.Tensor, drop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``FpMantRNE``: drop ``drop`` low bits rounding to nearest even; (result, carry)."""
    kept = value >> drop
    guard = (value >> (drop - 1)) & 1
    sticky = (value & ((1 << (drop - 1)) - 1)) != 0
    carry = guard & (sticky | ((kept & 1) == 1)).to(torch.int64)
    return kept + carry, carry


def fp16_to_fp32(bits: torch.Tensor) -> torch.Tensor:
    """``Fp16ToFp32`` (FpWidthInc<5,10,8,23,DENORM_YES,NAN_YES>)."""
    sign, expo, mant = _fields(bits, FP16)
    m23 = mant << 13
    zero = (expo == 0) & (mant == 0)
    denorm = (expo == 0) & (mant != 0)
    lz = 23 - bit_length(m23)
    o_expo = torch.where(denorm, 112 - lz, expo + 112)
    o_mant = torch.where(denorm, (m23 << (lz + 1)) & 0x7FFFFF, m23)
    inf = (expo == 31) & (mant == 0)
    nan = (expo == 31) & (mant != 0)
    o_expo = torch.where(inf, 254, torch.where(nan, 255, o_expo))
    o_mant = torch.where(inf, 0x7FFFFF, o_mant)
    o_expo = torch.where(zero, 0, o_expo)
    o_mant = torch.where(zero, 0, o_mant)
    return _pack(sign, o_expo, o_mant, FP32)


def fp32_to_fp16(bits: torch.Tensor) -> torch.Tensor:
    """``Fp32ToFp16`` (FpWidthDec<8,23,5,10,DENORM_YES,NAN_YES>)."""
    sign, expo, mant = _fields(bits, FP32)
    m24 = mant | (1 << 23)
    # Normal range: round 24 -> 11 bits.
    rounded, _ = _rne(m24, 13)
    n_expo = expo - 112 + (rounded >> 11)
    n_mant = rounded & 0x3FF
    # Subnormal range (expo 102..112): shift by 113 - expo with round to nearest even.
    shift = (113 - expo).clamp(1, 11)
    guard = (m24 >> (12 + shift)) & 1
    sticky = (m24 & ((torch.ones_like(shift) << (12 + shift)) - 1)) != 0
    least = (m24 >> (13 + shift)) & 1
    carry = guard & (sticky | (least == 1)).to(torch.int64)
    total = ((m24 >> shift) >> 13 & 0x7FF) + carry
    d_expo = (total >> 10) & 1
    d_mant = total & 0x3FF
    is_inf = (expo >= 143) | ((expo > 112) & (n_expo >= 31))
    is_zero = expo < 102
    is_denorm = ~is_zero & (expo <= 112)
    o_expo = torch.where(is_denorm, d_expo, n_expo)
    o_mant = torch.where(is_denorm, d_mant, n_mant)
    o_expo = torch.where(is_inf, 30, torch.where(is_zero, 0, o_expo))
    o_mant = torch.where(is_inf, 0x3FF, torch.where(is_zero, 0, o_mant))
    nan = _is_nan(expo, mant, FP32)
    o_expo = torch.where(nan, 31, o_expo)
    o_mant = torch.where(nan, mant & 0x3FF, o_mant)
    return _pack(sign, o_expo, o_mant, FP16)


def fp_add(a: torch.Tensor, b: torch.Tensor, fmt: tuple[int, int] = FP32) -> torch.Tensor:
    """``FpAdd<E,M>``."""
    e_w, m_w = fmt
    e_max = (1 << e_w) - 1
    more = m_w + 2
    width = more + m_w + 1  # InternalMantWidth
    a_s, a_e, a_m = _fields(a, fmt)
    b_s, b_e, b_m = _fields(b, fmt)
    a_p1 = a_m | (((a_e != 0) | (a_m != 0)).to(torch.int64) << m_w)
    b_p1 = b_m | (((b_e != 0) | (b_m != 0)).to(torch.int64) << m_w)
    a_big = (a_e > b_e) | ((a_e == b_e) & (a_m >= b_m))
    o_e = torch.where(a_big, a_e, b_e)
    big = torch.where(a_big, a_p1, b_p1) << more
    small_p1 = torch.where(a_big, b_p1, a_p1)
    diff = (a_e - b_e).abs()
    # Shifted right by the exponent difference: the bits shifted out are lost.
    small = torch.where(
        diff <= more,
        small_p1 << (more - diff).clamp(min=0),
        small_p1 >> (diff - more).clamp(min=0, max=62),
    )
    mask = (1 << width) - 1
    small = small & mask
    o_s = torch.where(a_big, a_s, b_s)
    total = torch.where(a_s == b_s, big + small, big - small)
    carry_out = (total >> width) & 1
    inf = (carry_out == 1) & (o_e >= e_max - 1)
    o_e = torch.where((carry_out == 1) & ~inf, o_e + 1, o_e)
    mant = torch.where(carry_out == 1, total >> 1, total) & mask
    # FpNormalize: bring the leading one to the top, or flush to zero below the normal range.
    zc = width - bit_length(mant)
    flush = (carry_out == 0) & ((o_e <= zc) | (mant == 0))
    norm = (carry_out == 0) & ~flush
    o_e = torch.where(norm, o_e - zc, torch.where(flush, 0, o_e))
    mant = torch.where(norm, (mant << zc.clamp(min=0)) & mask, torch.where(flush, 0, mant))
    rounded, _ = _rne(mant, width - (m_w + 1))
    over = rounded >> (m_w + 1)
    inf = inf | ((over == 1) & (o_e >= e_max - 1))
    o_e = torch.where((over == 1) & ~inf, o_e + 1, o_e)
    o_m = rounded & ((1 << m_w) - 1)
    o_e = torch.where(inf, e_max - 1, o_e)
    o_m = torch.where(inf, (1 << m_w) - 1, o_m)
    out = _pack(o_s, o_e, o_m, fmt)
    out = torch.where(_is_nan(b_e, b_m, fmt), b, out)
    return torch.where(_is_nan(a_e, a_m, fmt), a, out)


def fp_mul(a: torch.Tensor, b: torch.Tensor, fmt: tuple[int, int] = FP32) -> torch.Tensor:
    """``FpMul<E,M>`` (the product rounded by FpMantWidthDec, DENORM_NO)."""
    e_w, m_w = fmt
    bias = (1 << (e_w - 1)) - 1
    e_max = (1 << e_w) - 1
    a_s, a_e, a_m = _fields(a, fmt)
    b_s, b_e, b_m = _fields(b, fmt)
    a_zero = (a_e == 0) & (a_m == 0)
    b_zero = (b_e == 0) & (b_m == 0)
    a_p1 = a_m | ((~a_zero).to(torch.int64) << m_w)
    b_p1 = b_m | ((~b_zero).to(torch.int64) << m_w)
    p_w = 2 * m_w + 1
    prod = a_p1 * b_p1  # p_w + 1 bits
    o_s = a_s ^ b_s
    e_sum = a_e + b_e
    zero = a_zero | b_zero | (e_sum < bias)
    inf = ~zero & (e_sum >= e_max + bias)
    p_e = e_sum - bias
    top = (prod >> p_w) & 1
    inf = inf | (~zero & (top == 1) & (p_e >= e_max - 1))
    p_e = torch.where(top == 1, p_e + 1, p_e)
    p_m = torch.where(top == 1, prod, prod << 1) & ((1 << p_w) - 1)
    rounded, _ = _rne(p_m | (1 << p_w), p_w - m_w)
    over = rounded >> (m_w + 1)
    o_e = p_e + over
    inf = inf | (~zero & (o_e >= e_max))
    o_m = rounded & ((1 << m_w) - 1)
    o_e = torch.where(inf, e_max - 1, o_e)
    o_m = torch.where(inf, (1 << m_w) - 1, o_m)
    zero = zero | (o_e == 0)
    o_e = torch.where(zero, 0, o_e)
    o_m = torch.where(zero, 0, o_m)
    out = _pack(o_s, o_e & e_max, o_m, fmt)
    out = torch.where(_is_nan(b_e, b_m, fmt), b, out)
    return torch.where(_is_nan(a_e, a_m, fmt), a, out)


def fp_max(a: torch.Tensor, b: torch.Tensor, fmt: tuple[int, int] = FP32) -> torch.Tensor:
    return _fp_cmp(a, b, fmt, True)


def fp_min(a: torch.Tensor, b: torch.Tensor, fmt: tuple[int, int] = FP32) -> torch.Tensor:
    return _fp_cmp(a, b, fmt, False)


def _fp_cmp(a: torch.Tensor, b: torch.Tensor, fmt: tuple[int, int], take_max: bool):
    """``FpCmp``: signs, then exponent and mantissa (equal magnitudes count b as greater)."""
    a_s, a_e, a_m = _fields(a, fmt)
    b_s, b_e, b_m = _fields(b, fmt)
    abs_a_greater = (a_e > b_e) | ((a_e == b_e) & (a_m > b_m))
    a_greater = torch.where(
        a_s == 0,
        torch.where(b_s == 0, abs_a_greater, torch.ones_like(abs_a_greater)),
        torch.where(b_s == 0, torch.zeros_like(abs_a_greater), ~abs_a_greater),
    )
    out = torch.where(a_greater, a, b) if take_max else torch.where(a_greater, b, a)
    out = torch.where(_is_nan(b_e, b_m, fmt), b, out)
    return torch.where(_is_nan(a_e, a_m, fmt), a, out)


def fp_relu(x: torch.Tensor, fmt: tuple[int, int] = FP32) -> torch.Tensor:
    """``FpRelu``: negative numbers (and -0) become +0; NaNs pass."""
    s, e, m = _fields(x, fmt)
    return torch.where((s == 0) | _is_nan(e, m, fmt), x, torch.zeros_like(x))


FP17 = (6, 10)  # PDP's and CDP's internal format: FP16's mantissa, a 6-bit exponent


def fp16_to_fp17(bits: torch.Tensor) -> torch.Tensor:
    """``Fp16ToFp17`` (FpExpoWidthInc<5,6,10>) of finite FP16 patterns: exact, subnormals become
    normal numbers (callers refuse infinities and NaNs)."""
    sign, expo, mant = _fields(fp16_to_fp32(bits), FP32)
    zero = (expo == 0) & (mant == 0)
    return _pack(sign, torch.where(zero, 0, expo - 96), torch.where(zero, 0, mant >> 13), FP17)


def fp17_to_fp16(bits: torch.Tensor) -> torch.Tensor:
    """``Fp17ToFp16`` (FpExpoWidthDec<6,5,10>) of the normal or zero FP17 numbers that FpAdd and
    FpMul return: the same rounding to the FP16 subnormal grid and saturation as
    ``fp32_to_fp16`` of the exactly widened number."""
    sign, expo, mant = _fields(bits, FP17)
    zero = (expo == 0) & (mant == 0)
    wide = _pack(sign, torch.where(zero, 0, expo + 96), torch.where(zero, 0, mant << 13), FP32)
    return fp32_to_fp16(wide)
