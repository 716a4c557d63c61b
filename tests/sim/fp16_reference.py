"""Scalar Python references of the C model's floating-point primitives, written from their
description (nvdla_float.h: FpAdd, FpMul, FpWidthDec/Inc) with exact rationals: no torch, no
bit-vector tricks, no code shared with dlakit.sim.fp16."""

from __future__ import annotations

from fractions import Fraction

F32 = (8, 23)
F16 = (5, 10)


def decode(bits: int, fmt=F32) -> tuple[int, int, int]:
    e_w, m_w = fmt
    return bits >> (e_w + m_w) & 1, bits >> m_w & ((1 << e_w) - 1), bits & ((1 << m_w) - 1)


def value(bits: int, fmt=F32) -> Fraction:
    """The exact number of finite bits (IEEE: subnormals included)."""
    e_w, m_w = fmt
    bias = (1 << (e_w - 1)) - 1
    s, e, m = decode(bits, fmt)
    mag = (
        Fraction(m, 1 << m_w) * Fraction(2) ** (1 - bias)
        if e == 0
        else (Fraction((1 << m_w) + m, 1 << m_w) * Fraction(2) ** (e - bias))
    )
    return -mag if s else mag


def largest(fmt) -> Fraction:
    e_w, m_w = fmt
    return value(((1 << e_w) - 2) << m_w | ((1 << m_w) - 1), fmt)


def round_even(x: Fraction) -> int:
    """x rounded to the nearest integer, ties to even."""
    n = x.numerator // x.denominator
    rest = x - n
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and n % 2):
        n += 1
    return n


def encode(v: Fraction, fmt, sign: int = 0, subnormals: bool = True) -> int:
    """Bits of v rounded to nearest even on fmt's grid; overflow saturates to the largest finite
    number (the C model's SetToInf); without ``subnormals`` results below the normal range are
    zero."""
    e_w, m_w = fmt
    bias = (1 << (e_w - 1)) - 1
    s = 1 if v < 0 else 0 if v > 0 else sign
    mag = abs(v)
    if mag == 0:
        return s << (e_w + m_w)
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    if Fraction(2) ** e > mag:
        e -= 1
    e = max(e, 1 - bias)
    q = round_even(mag / Fraction(2) ** (e - m_w))
    rounded = q * Fraction(2) ** (e - m_w)
    if rounded > largest(fmt):
        rounded = largest(fmt)
    if not subnormals and rounded < Fraction(2) ** (1 - bias):
        return s << (e_w + m_w)
    # exact re-encode of a grid value
    if rounded < Fraction(2) ** (1 - bias):
        return s << (e_w + m_w) | int(rounded / Fraction(2) ** (1 - bias - m_w))
    e = rounded.numerator.bit_length() - rounded.denominator.bit_length()
    if Fraction(2) ** e > rounded:
        e -= 1
    m = int(rounded / Fraction(2) ** (e - m_w)) - (1 << m_w)
    return s << (e_w + m_w) | (e + bias) << m_w | m


def fp32_to_fp16(bits: int) -> int:
    s, e, m = decode(bits)
    if e == 255:
        return s << 15 | (31 << 10 | (m & 0x3FF) if m else 0x7BFF)
    return encode(value(bits), F16, s)


def fp16_to_fp32(bits: int) -> int:
    s, e, m = decode(bits, F16)
    if e == 31:
        return s << 31 | (255 << 23 | m << 13 if m else 0x7F7FFFFF)
    return encode(value(bits, F16), F32, s)


def _operand(e: int, m: int, m_w: int = 23) -> int:
    """The integer significand the C model's adders and multipliers see: an implied one unless
    the number is zero (a subnormal counts as a normal number of exponent 0)."""
    return (1 << m_w) | m if (e or m) else 0


def fp32_add(a: int, b: int, fmt=F32) -> int:
    """FpAdd<E,M> (here <8,23> unless ``fmt`` says otherwise): the smaller operand keeps M+2 bits
    below the larger's implied one (the rest is truncated); the exact sum is rounded to nearest
    even, results below the normal range are (signed) zero, an exact zero takes the larger
    operand's sign (a's when they tie)."""
    e_w, m_w = fmt
    bias = (1 << (e_w - 1)) - 1
    top = 1 << (e_w + m_w)
    sa, ea, ma = decode(a, fmt)
    sb, eb, mb = decode(b, fmt)
    for e, m, bits in ((ea, ma, a), (eb, mb, b)):
        if e == (1 << e_w) - 1 and m:
            return bits
    first = (sa, ea, ma) if (ea, ma) >= (eb, mb) else (sb, eb, mb)
    second = (sb, eb, mb) if first == (sa, ea, ma) else (sa, ea, ma)
    s1, e1, m1 = first
    s2, e2, m2 = second
    more = m_w + 2
    big = _operand(e1, m1, m_w) << more
    small = (_operand(e2, m2, m_w) << more) >> (e1 - e2)
    total = big + small if s1 == s2 else big - small
    mag = Fraction(total) * Fraction(2) ** (e1 - bias - m_w - more)
    if total == 0 or mag < Fraction(2) ** (1 - bias):
        return s1 * top
    return encode(-mag if s1 else mag, fmt, s1, subnormals=False)


def fp32_mul(a: int, b: int, fmt=F32) -> int:
    """FpMul<E,M> (<8,23> unless ``fmt`` says otherwise): the exact product of the significands,
    rounded to nearest even; zero below the normal range, saturated above it."""
    e_w, m_w = fmt
    bias = (1 << (e_w - 1)) - 1
    sa, ea, ma = decode(a, fmt)
    sb, eb, mb = decode(b, fmt)
    for e, m, bits in ((ea, ma, a), (eb, mb, b)):
        if e == (1 << e_w) - 1 and m:
            return bits
    s = sa ^ sb
    if _operand(ea, ma, m_w) == 0 or _operand(eb, mb, m_w) == 0 or ea + eb < bias:
        return s << (e_w + m_w)
    prod = Fraction(_operand(ea, ma, m_w) * _operand(eb, mb, m_w)) * Fraction(2) ** (
        ea + eb - 2 * bias - 2 * m_w
    )
    return encode(-prod if s else prod, fmt, s, subnormals=False)
