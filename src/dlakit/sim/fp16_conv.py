"""FP16 direct convolution as the C model computes it (nvdla/hw nvdlav1 ``cmod/cmac/
NV_NVDLA_cmac.h`` ``calculation_fp16``, ``cmod/cacc/NV_NVDLA_cacc.cpp`` ``cacc_fp16_add``,
``cacc_fp48_to_fp32``, ``cmod/csc`` for the order).

CSC feeds CMAC one atomic operation at a time: for one output point and kernel, one kernel tap
(r, s) and one block of 64 input channels. Channels whose data or weight is +-0 are masked
(``element_mask_bit``). CMAC aligns the block's products to their largest exponent: per
channel, exponent bits 4:2 of data and weight add up (``sum_exp``), bits 1:0 pre-shift the
11-bit mantissas, and each product is a radix-4 Booth multiply of the two 14-bit mantissas whose
carry-save pair is shifted right by ``4 * (max - sum_exp)`` before the sign compensation is
added. The block's 64 products sum exactly into a 38-bit mantissa with the 6-bit exponent
``4 * max``. CACC accumulates these in order (C-blocks, then kernel rows, then columns) into a
48-bit float (8-bit exponent, 40-bit two's-complement mantissa, its own rounding) and hands SDP
an FP32 number.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dlakit.errors import DlakitError
from dlakit.sim.fp16 import bit_length
from dlakit.sim.regs import NotModelled

BLOCK = 64  # CSC/CMAC PARALLEL_CHANNEL_NUM for FP16
_BATCH = 1 << 21  # products per vectorized step
_M32 = 0xFFFFFFFF
# Sign compensation of the Booth partial products, by the product's right shift (cmac.h).
_SIGN_COMP = {
    0: 0xAAAB0000,
    4: 0xFAAAB000,
    8: 0xFFAAAB00,
    12: 0xFFFAAAB0,
    16: 0xFFFFAAAB,
    20: 0xFFFFFAAB,
    24: 0xFFFFFFAB,
    28: 0xFFFFFFFB,
}


# Radix-4 Booth digit (3 bits of the multiplier, sign-adjusted) -> multiple of the multiplicand
# and whether the partial product is inverted (cmac.h cal_fp16_booth).
_BOOTH_MULT = np.array((0, 1, 1, 2, 2, 1, 1, 0), dtype=np.uint32)
_BOOTH_NEG = np.array((0, 0, 0, 0, 1, 1, 1, 0), dtype=np.uint32)
_U = np.uint32


def booth_product(sign: np.ndarray, wt: np.ndarray, dat: np.ndarray, shift: np.ndarray):
    """``cal_fp16_booth``: the signed, right-shifted product of two mantissas (int64 out).

    uint32 arithmetic as in the C (numpy: wrapping, logical shifts, one thread)."""
    w1 = wt.astype(_U) << _U(1)
    rev = sign.astype(_U) * _U(7)
    d = dat.astype(_U)
    pp, inv = [], []
    for i in range(8):
        code = ((w1 >> _U(2 * i)) & _U(7)) ^ rev
        neg = _BOOTH_NEG[code]
        multiple = _BOOTH_MULT[code] * d
        pp.append(np.where(neg == 1, ~multiple & _U(0xFFFF), multiple | _U(0x10000)))
        inv.append(neg)
    csa = [
        pp[0],
        (pp[1] << _U(2)) | inv[0],
        (pp[2] << _U(4)) | (inv[1] << _U(2)),
        (pp[3] << _U(6)) | (inv[2] << _U(4)),
        inv[3] << _U(6),
        pp[4] << _U(8),
        (pp[5] << _U(10)) | (inv[4] << _U(8)),
        (pp[6] << _U(12)) | (inv[5] << _U(10)),
        (pp[7] << _U(14)) | (inv[6] << _U(12)),
        inv[7] << _U(14),
    ]
    # The carry-save adder tree: two 5-input groups, then the four survivors.
    for i in range(3):
        if i == 0:
            cur, st = 5, 0
        elif i == 1:
            cur, st = 5, 5
        else:
            csa[2], csa[3] = csa[5], csa[6]
            cur, st = 4, 0
        while cur >= 3:
            groups = cur // 3
            for j in range(groups):
                a, b, c = csa[st + 3 * j], csa[st + 3 * j + 1], csa[st + 3 * j + 2]
                csa[st + 2 * j] = a ^ b ^ c
                csa[st + 2 * j + 1] = ((a & b) | (b & c) | (a & c)) << _U(1)
            for j in range(groups * 3, cur):
                csa[st + j - groups] = csa[st + j]
            cur -= groups
    sh = np.minimum(shift, 31).astype(_U)
    comp = np.zeros(shift.shape, dtype=_U)
    for amount, value in _SIGN_COMP.items():
        comp = np.where(shift == amount, _U(value), comp)
    total = (csa[0] >> sh) + (csa[1] >> sh) + comp
    return np.where(shift >= 32, 0, total.view(np.int32).astype(np.int64))


def mac_blocks(data: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One atomic operation per row: FP16 bits ``data`` [..., n] and ``weight`` [..., n] (n <=
    64 channels) to the CMAC result (exponent 4*max, 38-bit mantissa), both [...]."""
    nonzero = ((data & 0x7FFF) != 0) & ((weight & 0x7FFF) != 0)
    d_exp, w_exp = (data >> 10) & 0x1F, (weight >> 10) & 0x1F
    if ((d_exp == 31) & ((data & 0x3FF) != 0)).any() or (
        (w_exp == 31) & ((weight & 0x3FF) != 0)
    ).any():
        raise NotModelled("CMAC: FP16 NaN operands are not modelled")
    d_sft = np.where(d_exp == 0, 1, d_exp & 3)
    w_sft = np.where(w_exp == 0, 1, w_exp & 3)
    sum_exp = np.where(nonzero, (d_exp >> 2) + (w_exp >> 2), 0)
    max_exp = sum_exp.max(axis=-1, keepdims=True)
    shift = (max_exp - sum_exp) << 2
    d_m = (data & 0x3FF) | ((d_exp != 0).astype(np.int64) << 10)
    w_m = (weight & 0x3FF) | ((w_exp != 0).astype(np.int64) << 10)
    sign = ((data >> 15) ^ (weight >> 15)) & 1
    prod = booth_product(sign, w_m << w_sft, d_m << d_sft, shift)
    prod = np.where(nonzero, prod, 0)
    return max_exp[..., 0] << 2, prod.sum(axis=-1)


def _sign_run(value: torch.Tensor, top: int) -> torch.Tensor:
    """How many bits below bit ``top`` repeat the sign bit (the left shift that normalizes a
    two's-complement number whose sign is bit ``top``)."""
    sign = (value >> top) & 1
    magnitude = torch.where(sign == 1, ~value, value) & ((1 << top) - 1)
    return top - bit_length(magnitude)


def _signed(v: torch.Tensor, bits: int) -> torch.Tensor:
    v = v & ((1 << bits) - 1)
    return torch.where(v >= 1 << (bits - 1), v - (1 << bits), v)


def cacc_add(
    acc_exp: torch.Tensor, acc_mant: torch.Tensor, mac_exp: torch.Tensor, mac_mant: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cacc_fp16_add`` (FP48: 8-bit exponent, 40-bit signed mantissa), element-wise."""
    skip = mac_mant == 0
    if bool((acc_exp == 255).any()) or bool((mac_exp == 63).any()):
        raise NotModelled("CACC: FP16 NaN partial sums are not modelled")
    # Normalize the MAC mantissa (38-bit two's complement, sign bit 37).
    m38 = mac_mant & ((1 << 38) - 1)
    n0 = _sign_run(m38, 37)
    mac_ext = _signed((m38 << n0) & ((1 << 38) - 1), 38) << 2  # 40 bits
    mac_e = (mac_exp - n0 + 49) & 0xFF
    acc_e = torch.where(acc_mant == 0, 0, acc_exp)
    acc_ext = acc_mant
    bigger = torch.maximum(mac_e, acc_e)
    diff = (mac_e - acc_e).abs()
    shift_acc = mac_e > acc_e
    shift_mac = mac_e < acc_e
    d = diff.clamp(max=40)
    low = (torch.ones_like(d) << d) - 1
    out_acc = torch.where(shift_acc & (diff <= 40), (acc_ext & low) << (40 - d), 0)
    out_mac = torch.where(shift_mac & (diff <= 40), (mac_ext & low) << (40 - d), 0)
    shifted_out = (out_acc | out_mac) & ((1 << 40) - 1)
    acc_ext = torch.where(shift_acc, torch.where(diff <= 40, acc_ext >> d, 0), acc_ext)
    mac_ext = torch.where(shift_mac, torch.where(diff <= 40, mac_ext >> d, 0), mac_ext)
    total = _signed(acc_ext + mac_ext, 40)
    s_mac, s_acc, s_tot = (mac_ext >> 39) & 1, (acc_ext >> 39) & 1, (total >> 39) & 1
    overflow = (s_mac == s_acc) & (s_mac != s_tot)
    high_bit = total & 1
    over_sum = torch.where(
        s_mac == 1, (total & ((1 << 40) - 1)) >> 1 | (1 << 39), (total & ((1 << 40) - 1)) >> 1
    )
    n1 = torch.where(overflow, 0, _sign_run(total & ((1 << 40) - 1), 39))
    # Left-normalize, shifting in the top bits that the alignment shifted out.
    left = ((total & ((1 << 40) - 1)) << n1) | (shifted_out >> (40 - n1).clamp(max=40))
    left = torch.where(n1 == 0, total & ((1 << 40) - 1), left & ((1 << 40) - 1))
    shifted_out = torch.where(overflow, shifted_out, (shifted_out << n1) & ((1 << 40) - 1))
    summed = torch.where(overflow, over_sum, left)
    real_e = torch.where(overflow, bigger + 1, bigger - n1)
    guard0 = (shifted_out >> 39) & 1
    sticky0 = (shifted_out & ((1 << 39) - 1)) != 0
    sticky1 = shifted_out != 0
    negative = ((summed >> 39) & 1) == 1
    need = torch.where(
        overflow,
        torch.where(negative, (high_bit == 1) & sticky1, high_bit == 1),
        torch.where(negative, (guard0 == 1) & sticky0, guard0 == 1),
    )
    rounded = (summed + need.to(torch.int64)) & ((1 << 40) - 1)
    carry = ((rounded >> 39) & 1) != ((summed >> 39) & 1)
    final = torch.where(carry, (rounded >> 1) | (((summed >> 39) & 1) << 39), rounded)
    real_e = torch.where(carry, real_e + 1, real_e)
    final_s = _signed(final, 40)
    exp = torch.where(final_s == 0, 0, real_e & 0xFF)
    return torch.where(skip, acc_exp, exp), torch.where(skip, acc_mant, final_s)


def fp48_to_fp32(exp: torch.Tensor, mant: torch.Tensor) -> torch.Tensor:
    """``cacc_fp48_to_fp32``: FP32 bit patterns of the accumulators."""
    if bool((exp == 255).any()):
        raise NotModelled("CACC: FP16 NaN sums are not modelled")
    m = mant & ((1 << 40) - 1)
    sign = (m >> 39) & 1
    minus_two = (sign == 1) & ((m & ((1 << 39) - 1)) == 0)
    magnitude = torch.where(sign == 1, (~m + 1) & ((1 << 39) - 1), m & ((1 << 39) - 1))
    e = torch.where(m == 0, 0, (exp + 64) & 0xFF)
    top25 = (sign << 24) | (magnitude >> 15)
    guard = (magnitude >> 14) & 1
    inc = (top25 + 1) & ((1 << 25) - 1)
    over = ((inc >> 24) & 1) != sign
    frac_rounded = torch.where(over, (inc >> 1) & 0x7FFFFF, inc & 0x7FFFFF)
    e = torch.where((guard == 1) & over, (e + 1) & 0xFF, e)
    frac = torch.where(guard == 1, frac_rounded, (magnitude >> 15) & 0x7FFFFF)
    e = torch.where(minus_two, (exp + 65) & 0xFF, e)
    frac = torch.where(minus_two, 0, frac)
    return (sign << 31) | (e << 23) | frac


def conv_fp16(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pads: tuple[int, int, int, int],
    out_hw: tuple[int, int],
    pad_value: int,
) -> torch.Tensor:
    """FP32 bit patterns [K, OH, OW] that CACC hands SDP for FP16 data [C, H, W] and weights
    [K, C, R, S] (bit patterns); ``pads`` = (left, right, top, bottom)."""
    k, c, r, s = w.shape
    h, wd = x.shape[1:]
    sy, sx = stride
    dy, dx = dilation
    left, _, top, _ = pads
    oh, ow = out_hw
    bottom = max((oh - 1) * sy + (r - 1) * dy + 1 - h - top, 0)
    right = max((ow - 1) * sx + (s - 1) * dx + 1 - wd - left, 0)
    if max(bottom, right) > 63:
        raise DlakitError(f"CSC.D_DATAOUT_SIZE_0: {ow}x{oh} outputs need more padding than 63")
    padded = F.pad(x[None].to(torch.float64), (left, right, top, bottom), value=float(pad_value))
    padded = padded[0].to(torch.int64)
    p = oh * ow
    # Taps of every output point: [C, R, S, P], one strided view of the padded cube.
    cs, hs, ws = padded.stride()
    taps = padded.as_strided((c, r, s, oh, ow), (cs, dy * hs, dx * ws, sy * hs, sx * ws))
    taps = taps.reshape(c, r * s, p)
    taps_np = taps.cpu().numpy()
    w_np = w.cpu().numpy()
    acc_e = torch.zeros((k, p), dtype=torch.int64, device=x.device)
    acc_m = torch.zeros_like(acc_e)
    for c0 in range(0, c, BLOCK):
        c1 = min(c, c0 + BLOCK)
        data = taps_np[c0:c1].transpose(1, 2, 0)[None]  # [1, RS, P, n]
        weight = w_np[:, c0:c1].reshape(k, c1 - c0, r * s).transpose(0, 2, 1)[:, :, None, :]
        # Whole kernel groups at a time, a few million products per batch.
        step = max(1, _BATCH // max(1, r * s * p * (c1 - c0)))
        exps, mants = [], []
        for k0 in range(0, k, step):
            e, m = mac_blocks(data, weight[k0 : k0 + step])  # broadcast to [k, RS, P, n]
            exps.append(e)
            mants.append(m)
        exp_all = torch.from_numpy(np.concatenate(exps)).to(x.device)  # [K, RS, P]
        mant_all = torch.from_numpy(np.concatenate(mants)).to(x.device)
        for tap in range(r * s):  # CACC adds in CSC order: C-block, then kernel row, column
            acc_e, acc_m = cacc_add(acc_e, acc_m, exp_all[:, tap], mant_all[:, tap])
    return fp48_to_fp32(acc_e, acc_m).reshape(k, oh, ow)
