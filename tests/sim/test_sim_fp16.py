"""FP16 datapath primitives vs scalar references of the C model (fp16_reference.py), numpy's
IEEE arithmetic where the two agree, and the MAC/CACC accumulation vs exact sums."""

from fractions import Fraction

import fp16_reference as ref
import numpy as np
import pytest
import torch

from dlakit.sim import fp16
from dlakit.sim.fp16_conv import booth_product, cacc_add, fp48_to_fp32, mac_blocks

RNG = np.random.default_rng(1)


def _bits32(n: int) -> np.ndarray:
    """Random FP32 patterns of every finite exponent, plus zeros, subnormals, extremes.
    Infinities never reach the FP32 units (FP16 infinity widens to the largest number)."""
    expo = RNG.integers(0, 255, n)
    expo[: n // 2] = RNG.integers(100, 160, n // 2)  # most where additions interact
    bits = RNG.integers(0, 2, n) << 31 | expo << 23 | RNG.integers(0, 1 << 23, n)
    special = [0, 0x80000000, 1, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x7FC00001, 0x00800000]
    return np.concatenate([bits, special]).astype(np.int64)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.int64))


def test_fp16_fp32_conversions_match_the_reference_and_ieee():
    halves = np.arange(1 << 16, dtype=np.int64)
    wide = fp16.fp16_to_fp32(_t(halves)).numpy()
    assert [int(v) for v in wide[::97]] == [ref.fp16_to_fp32(int(h)) for h in halves[::97]]
    finite = (halves >> 10 & 0x1F) != 0x1F
    ieee = halves[finite].astype(np.uint16).view(np.float16).astype(np.float32).view(np.uint32)
    np.testing.assert_array_equal(wide[finite], ieee.astype(np.int64))
    assert fp16.fp16_to_fp32(_t([0x7C00])).item() == 0x7F7FFFFF  # infinity saturates
    bits = _bits32(4000)
    narrow = fp16.fp32_to_fp16(_t(bits)).numpy()
    assert [int(v) for v in narrow] == [ref.fp32_to_fp16(int(b)) for b in bits]
    f = bits.astype(np.uint32).view(np.float32)
    ok = np.isfinite(f) & (np.abs(f) < 65504)
    np.testing.assert_array_equal(narrow[ok], f[ok].astype(np.float16).view(np.uint16))


@pytest.mark.parametrize("op", ["add", "mul"])
def test_fp32_add_and_mul_match_the_reference(op):
    a, b = _bits32(3000), np.roll(_bits32(3000), 7)
    if op == "add":
        got, want = (
            fp16.fp_add(_t(a), _t(b)).numpy(),
            [ref.fp32_add(int(x), int(y)) for x, y in zip(a, b, strict=True)],
        )
    else:
        got, want = (
            fp16.fp_mul(_t(a), _t(b)).numpy(),
            [ref.fp32_mul(int(x), int(y)) for x, y in zip(a, b, strict=True)],
        )
    np.testing.assert_array_equal(got, np.array(want, dtype=np.int64))


def test_fp32_add_is_ieee_when_no_bit_is_lost():
    # Exponents within 25 of each other lose nothing in the alignment: IEEE round to nearest
    # even, except that -x + x is -0 here when -x is the larger-or-equal operand.
    a = _bits32(5000)
    b = (a & ~(0xFF << 23)) ^ (RNG.integers(0, 2, a.size) << 31)
    b |= np.clip((a >> 23 & 0xFF) + RNG.integers(-25, 26, a.size), 1, 254) << 23
    fa, fb = (x.astype(np.uint32).view(np.float32) for x in (a, b))
    with np.errstate(all="ignore"):
        ieee = fa + fb
    keep = np.isfinite(ieee) & (np.abs(ieee) >= np.float32(2.0**-126)) & (a >> 23 & 0xFF != 0)
    keep &= (a >> 23 & 0xFF) != 255
    got = fp16.fp_add(_t(a), _t(b)).numpy()
    np.testing.assert_array_equal(got[keep], ieee[keep].view(np.uint32).astype(np.int64))


def test_max_min_relu():
    a, b = _bits32(2000), np.roll(_bits32(2000), 3)
    fa, fb = (x.astype(np.uint32).view(np.float32) for x in (a, b))
    fine = ~np.isnan(fa) & ~np.isnan(fb) & ~((fa == 0) & (fb == 0))
    mx = fp16.fp_max(_t(a), _t(b)).numpy().astype(np.uint32).view(np.float32)
    mn = fp16.fp_min(_t(a), _t(b)).numpy().astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(mx[fine], np.maximum(fa, fb)[fine])
    np.testing.assert_array_equal(mn[fine], np.minimum(fa, fb)[fine])
    relu = fp16.fp_relu(_t(a)).numpy()
    assert all(
        int(r) == (int(x) if x >> 31 == 0 else 0)
        for r, x in zip(relu, a, strict=True)
        if (x >> 23 & 0xFF) != 255
    )


def test_booth_products_are_exact_unshifted_and_within_one_after_the_shift():
    n = 20000
    sign = RNG.integers(0, 2, n)
    wt, dat = RNG.integers(0, 1 << 14, n), RNG.integers(0, 1 << 14, n)
    shift = RNG.integers(0, 9, n) * 4
    got = booth_product(sign, wt, dat, shift)
    exact = np.where(sign == 1, -(wt * dat), wt * dat)
    assert np.array_equal(got[shift == 0], exact[shift == 0])
    # cmac.h's own check (DEBUG_ERROR_CHECK): within 1 of the shifted product
    assert np.abs(got - (exact >> np.minimum(shift, 40))).max() <= 1
    assert np.all(got[shift >= 32] == 0)


def _half_value(bits: int) -> Fraction:
    return ref.value(int(bits), ref.F16)


def test_mac_and_cacc_accumulate_close_to_the_exact_sum():
    """A 64-channel block's product sum, accumulated over taps in FP48 and handed over as FP32,
    stays within a few FP32 ulps of the exact sum of products (the C model's own checker allows
    one ulp per stage)."""
    k, taps, n = 6, 9, 64
    data = np.where(RNG.random((k, taps, n)) < 0.1, 0, RNG.integers(0, 0x7C00, (k, taps, n)))
    data = data | (RNG.integers(0, 2, (k, taps, n)) << 15)
    weight = RNG.integers(0x2000, 0x4400, (k, taps, n)) | (RNG.integers(0, 2, (k, taps, n)) << 15)
    exps, mants = mac_blocks(data, weight)
    acc_e = torch.zeros(k, dtype=torch.int64)
    acc_m = torch.zeros(k, dtype=torch.int64)
    for t in range(taps):
        acc_e, acc_m = cacc_add(
            acc_e, acc_m, torch.from_numpy(exps[:, t]), torch.from_numpy(mants[:, t])
        )
    out = fp48_to_fp32(acc_e, acc_m).numpy()
    for i in range(k):
        exact = sum(
            _half_value(d) * _half_value(w)
            for d, w in zip(data[i].ravel(), weight[i].ravel(), strict=True)
        )
        got = ref.value(int(out[i]))
        ulp = Fraction(2) ** ((int(out[i]) >> 23 & 0xFF) - 127 - 23)
        # alignment truncates products below the block's largest exponent by up to 2**-10 of it
        biggest = max(
            abs(_half_value(d) * _half_value(w))
            for d, w in zip(data[i].ravel(), weight[i].ravel(), strict=True)
        )
        assert abs(got - exact) <= 4 * ulp + taps * n * biggest * Fraction(1, 1 << 20), (
            i,
            float(got),
            float(exact),
        )
