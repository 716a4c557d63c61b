"""Plain numpy int64 references of the NVDLA INT8 arithmetic, written from nvdla.md §5.

Independent of dlakit.sim: explicit loops and numpy slicing, no torch, no shared helpers.
"""

from __future__ import annotations

import numpy as np


def rnd(v: np.ndarray, shift: int) -> np.ndarray:
    """Round half away from zero of v / 2**shift."""
    v = np.asarray(v, dtype=np.int64)
    if shift == 0:
        return v
    return np.sign(v) * ((np.abs(v) + (1 << (shift - 1))) >> shift)


def sat(v: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def conv(x, w, stride, dilation, pads, pad_value):
    """Direct convolution sums [K, OH, OW]; pads = (left, right, top, bottom)."""
    c, h, wd = x.shape
    k, _, r, s = w.shape
    left, right, top, bottom = pads
    xp = np.full((c, h + top + bottom, wd + left + right), pad_value, dtype=np.int64)
    xp[:, top : top + h, left : left + wd] = x
    oh = (h + top + bottom - (r - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (wd + left + right - (s - 1) * dilation[1] - 1) // stride[1] + 1
    out = np.zeros((k, oh, ow), dtype=np.int64)
    for i in range(r):
        for j in range(s):
            y0, x0 = i * dilation[0], j * dilation[1]
            patch = xp[
                :,
                y0 : y0 + (oh - 1) * stride[0] + 1 : stride[0],
                x0 : x0 + (ow - 1) * stride[1] + 1 : stride[1],
            ]
            out += np.einsum("kc,chw->khw", w[:, :, i, j].astype(np.int64), patch)
    return out


def cacc(acc, truncate):
    return sat(rnd(acc, truncate), 32)


def cvt_out(x, offset, scale, shift):
    return sat(sat(rnd((x - offset) * scale, shift), 17), 8)


def x_unit(x, alu=None, alu_algo="SUM", alu_shift=0, mul=None, prelu=False, shift=0, relu=False):
    """One SDP X unit; ``alu``/``mul`` None means bypassed."""
    x = np.asarray(x, dtype=np.int64)
    if alu is not None:
        op = sat(np.asarray(alu, dtype=np.int64) << alu_shift, 32)
        x = {"SUM": x + op, "MAX": np.maximum(x, op), "MIN": np.minimum(x, op)}[alu_algo]
    if mul is None:
        y = sat(rnd(x, shift), 32)
    else:
        y = sat(rnd(x * np.asarray(mul, dtype=np.int64), shift), 32)
        if prelu:
            y = np.where(x >= 0, x, y)
    return np.maximum(y, 0) if relu else y


def pool(x, method, kernel, stride, pads, out_hw, pad_table=(0,) * 7, recip=(0x10000, 0x10000)):
    """PDP over [C, H, W]; pads = (left, right, top, bottom); explicit window loops.

    Average: every real row of the window adds pad_table[n-1] for n padded columns on each side;
    n padded rows on each side add kernel_w * pad_table[n-1] (C model PDP line/column passes).
    """
    table = (0, *pad_table)
    c, h, w = x.shape
    kh, kw = kernel
    left, _, top, _ = pads
    out = np.zeros((c, *out_hw), dtype=np.int64)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            y0, x0 = oy * stride[0] - top, ox * stride[1] - left
            ys = [y for y in range(y0, y0 + kh) if 0 <= y < h]
            xs = [xx for xx in range(x0, x0 + kw) if 0 <= xx < w]
            win = x[:, ys][:, :, xs].reshape(c, -1)
            if method == "MAX":
                out[:, oy, ox] = win.max(axis=1)
            elif method == "MIN":
                out[:, oy, ox] = win.min(axis=1)
            else:
                n_left = sum(1 for xx in range(x0, x0 + kw) if xx < 0)
                n_right = sum(1 for xx in range(x0, x0 + kw) if xx >= w)
                n_top = sum(1 for y in range(y0, y0 + kh) if y < 0)
                n_bottom = sum(1 for y in range(y0, y0 + kh) if y >= h)
                total = (
                    win.sum(axis=1)
                    + len(ys) * (table[n_left] + table[n_right])
                    + kw * (table[n_top] + table[n_bottom])
                )
                t = rnd(total * recip[0], 16)
                out[:, oy, ox] = sat(rnd(t * recip[1], 16), 8)
    return out


def _rnd_signed(v: int, shift: int) -> int:
    """v / 2**shift, round half away; a negative shift multiplies."""
    if shift <= 0:
        return v << -shift
    q = (abs(v) + (1 << (shift - 1))) >> shift
    return -q if v < 0 else q


def _clamp(v: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


def cdp_lut(s: int, le: list[int], lo: list[int], p: dict) -> int:
    """One CDP LUT lookup (linear LE and LO tables) of the C model, in Python ints."""

    def s16(v):
        return v - 65536 if v >= 32768 else v

    def table(tab, start, end, sel, n, under, over):
        rel = s - start
        idx = rel >> sel
        if idx < 0 or rel <= 0:
            return "u", _clamp(
                tab[0] + _clamp(_rnd_signed((s - start) * under[0], under[1]), 56), 16
            )
        if idx >= n:
            return "o", _clamp(tab[n] + _clamp(_rnd_signed((s - end) * over[0], over[1]), 56), 16)
        frac = (rel % (1 << sel)) << (16 - sel)
        y0, y1 = s16(tab[idx]), s16(tab[idx + 1])
        return "h", _clamp(y0 + _clamp(_rnd_signed((y1 - y0) * frac, 16), 56), 16)

    le_flag, le_v = table(le, p["le_start"], p["le_end"], p["le_sel"], 64, p["le_u"], p["le_o"])
    lo_flag, lo_v = table(lo, p["lo_start"], p["lo_end"], p["lo_sel"], 256, p["lo_u"], p["lo_o"])
    if le_flag == lo_flag == "u":
        return lo_v if p["uflow_lo"] else le_v
    if le_flag == lo_flag == "o":
        return lo_v if p["oflow_lo"] else le_v
    if (le_flag == "h") != (lo_flag == "h"):
        return le_v if le_flag == "h" else lo_v
    return lo_v if p["hybrid_lo"] else le_v


def cdp(x, offset, scale, shifter, size, le, lo, p, out_offset, out_scale, out_shift):
    """CDP LRN of an INT8 cube [C, H, W] (channels past C count 0)."""
    c = x.shape[0]
    x9 = sat(rnd((np.asarray(x, dtype=np.int64) - offset) * scale, shifter), 9)
    half = size // 2
    out = np.zeros_like(x9)
    for idx in np.ndindex(*x9.shape):
        ch = idx[0]
        total = sum(
            int(x9[j, idx[1], idx[2]]) ** 2 for j in range(max(0, ch - half), min(c, ch + half + 1))
        )
        y = cdp_lut(total, le, lo, p) * int(x9[idx])
        out[idx] = _clamp(_rnd_signed((y - out_offset) * out_scale, out_shift), 8)
    return out
