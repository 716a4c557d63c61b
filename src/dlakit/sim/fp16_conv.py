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

import torch
import torch.nn.functional as F

from dlakit.errors import DlakitError
from dlakit.sim.fp16 import bit_length
from dlakit.sim.regs import NotModelled

BLOCK = 64  # CSC/CMAC PARALLEL_CHANNEL_NUM for FP16
_M32 = 0xFFFFFFFF
# Sign compensation of the Booth partial products, by the product's right shift (cmac.h).
_SIGN_COMP = {0: 0xAAAB0000, 4: 0xFAAAB000, 8: 0xFFAAAB00, 12: 0xFFFAAAB0, 16: 0xFFFFAAAB,
              20: 0xFFFFFAAB, 24: 0xFFFFFFAB, 28: 0xFFFFFFFB}  # fmt: skip


def booth_product(
    sign: torch.Tensor, wt: torch.Tensor, dat: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """``cal_fp16_booth``: the signed, right-shifted product of two mantissas (int64 out)."""
    code_rev = torch.where(sign == 1, 7, 0)
    w = (wt << 1) & _M32
    pp: list[torch.Tensor] = []
    inv: list[torch.Tensor] = []
    ones = torch.full_like(dat, 0x10000)
    for _ in range(8):
        code = (w & 7) ^ code_rev
        w = w >> 2
        value = torch.where(
            (code == 0) | (code == 7),
            ones,
            torch.where(
                (code == 1) | (code == 2),
                dat | 0x10000,
                torch.where(
                    code == 3,
                    (dat << 1) | 0x10000,
                    torch.where(code == 4, ~(dat << 1) & 0xFFFF, ~dat & 0xFFFF),
                ),
            ),
        )
        pp.append(value & _M32)
        inv.append(((code >= 4) & (code <= 6)).to(torch.int64))
    csa = [
        pp[0],
        (pp[1] << 2) | inv[0],
        (pp[2] << 4) | (inv[1] << 2),
        (pp[3] << 6) | (inv[2] << 4),
        inv[3] << 6,
        pp[4] << 8,
        (pp[5] << 10) | (inv[4] << 8),
        (pp[6] << 12) | (inv[5] << 10),
        (pp[7] << 14) | (inv[6] << 12),
        inv[7] << 14,
    ]
    csa = [c & _M32 for c in csa]
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
                s = a ^ b ^ c
                carry = (((a & b) | (b & c) | (a & c)) << 1) & _M32
                csa[st + 2 * j], csa[st + 2 * j + 1] = s, carry
            for j in range(groups * 3, cur):
                csa[st + j - groups] = csa[st + j]
            cur -= groups
    sh = shift.clamp(max=31)
    comp = torch.zeros_like(shift)
    for amount, value in _SIGN_COMP.items():
        comp = torch.where(shift == amount, value, comp)
    total = ((csa[0] >> sh) + (csa[1] >> sh) + comp) & _M32
    total = torch.where(total >= 1 << 31, total - (1 << 32), total)
    return torch.where(shift >= 32, torch.zeros_like(total), total)


def mac_blocks(data: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One atomic operation per row: FP16 bits ``data`` [..., n] and ``weight`` [..., n] (n <=
    64 channels) to the CMAC result (exponent 4*max, 38-bit mantissa), both [...]."""
    nonzero = ((data & 0x7FFF) != 0) & ((weight & 0x7FFF) != 0)
    d_exp, w_exp = (data >> 10) & 0x1F, (weight >> 10) & 0x1F
    if bool(((d_exp == 31) & ((data & 0x3FF) != 0)).any()) or bool(
        ((w_exp == 31) & ((weight & 0x3FF) != 0)).any()
    ):
        raise NotModelled("CMAC: FP16 NaN operands are not modelled")
    d_sft = torch.where(d_exp == 0, 1, d_exp & 3)
    w_sft = torch.where(w_exp == 0, 1, w_exp & 3)
    sum_exp = torch.where(nonzero, (d_exp >> 2) + (w_exp >> 2), 0)
    max_exp = sum_exp.amax(dim=-1, keepdim=True) if sum_exp.shape[-1] else sum_exp.sum(-1, True)
    shift = (max_exp - sum_exp) << 2
    d_m = (data & 0x3FF) | ((d_exp != 0).to(torch.int64) << 10)
    w_m = (weight & 0x3FF) | ((w_exp != 0).to(torch.int64) << 10)
    sign = ((data >> 15) ^ (weight >> 15)) & 1
    prod = booth_product(sign, w_m << w_sft, d_m << d_sft, shift)
    prod = torch.where(nonzero, prod, torch.zeros_like(prod))
    return (max_exp[..., 0] << 2), prod.sum(dim=-1)


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
    acc_e = torch.zeros((k, oh * ow), dtype=torch.int64, device=x.device)
    acc_m = torch.zeros_like(acc_e)
    for c0 in range(0, c, BLOCK):
        c1 = min(c, c0 + BLOCK)
        for rr in range(r):
            for ss in range(s):
                rows = padded[c0:c1, rr * dy : rr * dy + (oh - 1) * sy + 1 : sy]
                taps = rows[:, :, ss * dx : ss * dx + (ow - 1) * sx + 1 : sx].reshape(c1 - c0, -1)
                data = taps.t()[None].expand(k, -1, -1)  # [K, P, n]
                weight = w[:, c0:c1, rr, ss][:, None, :].expand(-1, oh * ow, -1)
                e, m = mac_blocks(data, weight)
                acc_e, acc_m = cacc_add(acc_e, acc_m, e, m)
    return fp48_to_fp32(acc_e, acc_m).reshape(k, oh, ow)
