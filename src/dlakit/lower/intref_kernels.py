"""CACC output + SDP chain of the integer reference as one compiled pass (numba, CPU).

The same integers as the whole-tensor functions of :mod:`dlakit.lower.intref`
(``cacc_output``, ``x_unit``, ``y_unit``, ``c_unit``), which stay the definition: each
accumulator is read once and each INT8 result written once (and, for a convolution that reads
it next, its float copy), so a layer's SDP costs one pass instead of a dozen int64 ones. Written
from those functions, independently of the simulator's kernels. ``tests/lower/test_intref_fast.py``
checks both against each other.

``pack`` turns a layer's :class:`~dlakit.lower.qgraph.SdpChain` into a config vector and
per-channel operand rows; ``chain`` runs it on channels-last ``[pixels, K]`` views;
``depthwise_chain`` computes a depthwise convolution's sums in the same pass.
"""

from __future__ import annotations

import functools
import types

import numba
import numpy as np

from dlakit.lower.qgraph import SdpChain, XUnit
from dlakit.system import numba_thread_pool

numba_thread_pool()

CACC_NONE = -1  # the input is INT8 from memory: no CACC stage
# Elements per block: the pass reads a block of accumulators into an int64 buffer (16 KiB, in
# the L1 cache) and runs each stage over it. One loop doing every stage per element from
# memory runs 2-3x slower: its long dependency chains leave too few loads in flight.
BLOCK = 2048
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_Y_ALU = {"sum": 1, "max": 2, "min": 3}


def _x_rows(unit: XUnit, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The ALU as ``min(max(x, low), high) + add`` and the multiplier ``mul`` (int32 [3, K]:
    low, high, mul), and int64 [2, K]: add, add * mul."""
    add = np.zeros(channels, dtype=np.int64)
    low = np.full(channels, _I32_MIN, dtype=np.int64)
    high = np.full(channels, _I32_MAX, dtype=np.int64)
    if unit.alu is not None:
        # sat32(operand << shift), as shift_left_saturate computes it.
        op = np.broadcast_to(np.asarray(unit.alu_operand, dtype=np.int64), (channels,))
        limit = 1 << 31
        if unit.alu_shift >= 32:
            op = np.where(op > 0, limit - 1, np.where(op < 0, -limit, 0))
        else:
            op = np.clip(np.clip(op, -limit, limit) << unit.alu_shift, -limit, limit - 1)
        {"sum": add, "max": low, "min": high}[unit.alu][:] = op
    # A bypassed MUL is a multiplier of 1: the truncate then sees the same 49-bit value.
    mul = np.broadcast_to(np.asarray(1 if unit.mul is None else unit.mul, np.int64), (channels,))
    return np.stack([low, high, mul]).astype(np.int32), np.stack([add, add * mul])


def _folded(chain: SdpChain, channels: int, bound: np.ndarray):
    """X1 and X2 as one unit (its ``_x_rows``), or None where that could change a result.

    X1 = ``(x + a1) * m1`` with truncate 0 and no ReLU or PReLU is exact (its sat32 never
    clips) when ``bound * |m1| + |a1 * m1| < 2^31`` for the input bound ``bound``; X2 with a
    SUM (or no) ALU and no PReLU then multiplies ``(x * m1 + a1 * m1 + a2) * m2``, which is
    ``x * (m1 * m2) + (a1 * m1 + a2) * m2``: one multiply (``|m1 * m2| <= 2^30``) instead of
    two, the same integers (``|x * m1 * m2| < 2^61``)."""
    x1, x2 = chain.x1, chain.x2
    if x1 is None or x2 is None or x1.alu in ("max", "min") or x2.alu in ("max", "min"):
        return None
    if x1.truncate or x1.relu or (x1.prelu and x1.mul is not None):
        return None
    if x2.prelu and x2.mul is not None:
        return None
    (_, _, m1), (_, am1) = (r.astype(np.int64) for r in _x_rows(x1, channels))
    if np.any(bound * np.abs(m1) + np.abs(am1) >= 1 << 31):
        return None
    (low, high, m2), (a2, _) = (r.astype(np.int64) for r in _x_rows(x2, channels))
    rows32 = np.stack([low, high, m1 * m2]).astype(np.int32)
    return rows32, np.stack([am1 + a2, (am1 + a2) * m2])


def pack(
    chain: SdpChain, channels: int, cacc_truncate: int, bound: np.ndarray | int
) -> tuple[np.ndarray, ...]:
    """(config int64 [21], per-channel rows int32 [6, K] and int64 [4, K]) of a layer's chain
    (``_x_rows`` of X1, then of X2), for inputs (accumulators or INT8 values) of at most
    ``bound`` (per channel) in magnitude."""
    bound = np.broadcast_to(np.asarray(bound, dtype=np.int64), (channels,))
    cfg = [cacc_truncate]
    rows32, rows64 = [], []
    folded = _folded(chain, channels, bound)
    units = (chain.x1, chain.x2) if folded is None else (None, chain.x2)
    for unit in units:
        if unit is None:
            cfg += [0, 0, 0, 0, 0, 0]
            rows32.append(np.zeros((3, channels), dtype=np.int32))
            rows64.append(np.zeros((2, channels), dtype=np.int64))
        else:
            prelu = unit.prelu and unit.mul is not None
            clamp = unit.alu in ("max", "min")  # a SUM is in add * mul
            cfg += [1, int(clamp), int(unit.mul is not None), unit.truncate, int(prelu),
                    int(unit.relu)]  # fmt: skip
            r32, r64 = _x_rows(unit, channels) if folded is None or unit is not chain.x2 else (
                folded
            )  # fmt: skip
            rows32.append(r32)
            rows64.append(r64)
    y = chain.y
    cfg += [0, 0, 0, 0] if y is None else [_Y_ALU[y.alu], y.cvt_offset, y.cvt_scale,
                                            y.cvt_truncate]  # fmt: skip
    cfg += [chain.c.offset, chain.c.scale, chain.c.shift]
    cfg.append(int(bound.max(initial=0) < 1 << 31))  # accumulators convert straight to int32
    return (np.asarray(cfg, dtype=np.int64), np.ascontiguousarray(np.concatenate(rows32)),
            np.ascontiguousarray(np.concatenate(rows64)))  # fmt: skip


jit = numba.njit(cache=True)


@jit
def _rounding(shift, in_bits):
    """(shift, half, sign mask, keep mask) that make ``_srr`` intref.shift_right_round."""
    if shift == 0:
        return np.int64(0), np.int64(0), np.int64(0), np.int64(-1)
    if shift >= in_bits:
        return np.int64(0), np.int64(0), np.int64(0), np.int64(0)
    return np.int64(shift), np.int64(1) << (shift - 1), np.int64(-1), np.int64(-1)


@numba.njit(inline="always")
def _srr(x, shift, half, sign, keep, lim):
    # floor((x + 2^(s-1) - [x < 0]) / 2^s), saturated; (x >> 63) is -[x < 0]. Branch-free, so
    # the loops around it vectorise.
    r = (x + half + ((x >> 63) & sign)) >> shift
    return min(max(r, -lim), lim - 1) & keep


@numba.njit(inline="always")
def _wide(x):
    # int64 of an int32: products of two of them compile to one 32x32->64 multiply (vpmuldq)
    # instead of the 64-bit one (vpmullq, three times the work).
    return np.int64(x)


@numba.njit(inline="always")
def _x_loop(t, n, low, high, mul, add_mul, clamp, shift, floor):
    # ALU -> MUL -> truncate -> ReLU without PReLU, for a shift below 49. The callers pass
    # clamp (a MAX or MIN ALU) and shift == 0 as constants: each call compiles to a loop of
    # its own with only the operations that case needs.
    lim = np.int64(1) << 31
    half = np.int64(1) << max(shift - 1, 0)
    for i in range(n):
        for k in range(t.shape[1]):
            x = min(max(t[i, k], low[k]), high[k]) if clamp else t[i, k]
            p = _wide(x) * _wide(mul[k]) + add_mul[k]
            if shift:
                p = (p + half + (p >> 63)) >> shift
            t[i, k] = max(min(max(p, -lim), lim - 1), floor)


@numba.njit(inline="always")
def _x_out_loop(t, n, mul, add_mul, shift, floor, out, wide, p0, with_wide):
    # The last X unit (SUM or no ALU, no PReLU, shift below 49), a plain output converter
    # (sat8) and the stores in one loop; shift == 0 and with_wide are constants of each call.
    half = np.int64(1) << max(shift - 1, 0)
    for i in range(n):
        for k in range(t.shape[1]):
            p = _wide(t[i, k]) * _wide(mul[k]) + add_mul[k]
            if shift:
                p = (p + half + (p >> 63)) >> shift
            v = np.int32(min(max(p, floor), np.int64(127)))  # sat32, ReLU, sat8 in one
            out[p0 + i, k] = np.int8(v)
            if with_wide:
                wide[p0 + i, k] = np.float32(v)


@jit
def _x_block(t, n, rows32, rows64, r, cfg, c):
    """SDP X1 or X2 on ``t[:n]`` (int32) in place: ALU -> MUL -> truncate (49-bit input) ->
    ReLU; its flags from ``cfg[c:c + 6]``, its per-channel operands from ``rows32[r:r + 3]``
    and ``rows64[2r/3:2r/3 + 2]`` (``_x_rows``). ``(x + add) * mul`` is computed as
    ``x * mul + add * mul``: the same integer, from a 32-bit product."""
    clamp, truncate, prelu, relu = cfg[c + 1], cfg[c + 3], cfg[c + 4], cfg[c + 5]
    low, high, mul = rows32[r], rows32[r + 1], rows32[r + 2]
    add, add_mul = rows64[2 * r // 3], rows64[2 * r // 3 + 1]
    floor = np.int64(0) if relu else np.int64(_I32_MIN)
    channels = t.shape[1]
    if prelu:  # non-negatives skip MUL and truncate
        shift, half, sign, keep = _rounding(truncate, 49)
        lim = np.int64(1) << 31
        for i in range(n):
            for k in range(channels):
                x = _wide(min(max(t[i, k], low[k]), high[k])) + add[k]
                y = _srr(x * mul[k], shift, half, sign, keep, lim)
                t[i, k] = max(min(x, lim - 1) if x >= 0 else y, floor)
    elif truncate >= 49:
        for i in range(n):
            for k in range(channels):
                t[i, k] = max(np.int64(0), floor)
    elif clamp == 1 and truncate == 0:
        _x_loop(t, n, low, high, mul, add_mul, True, 0, floor)
    elif clamp == 1:
        _x_loop(t, n, low, high, mul, add_mul, True, truncate, floor)
    elif truncate == 0:
        _x_loop(t, n, low, high, mul, add_mul, False, 0, floor)
    else:
        _x_loop(t, n, low, high, mul, add_mul, False, truncate, floor)


@jit
def _x_out_block(t, n, rows32, rows64, cfg, last, out, wide, p0, with_wide):
    """The last X unit (``cfg[last:last + 6]``), a plain converter and the stores, fused."""
    unit = last // 7  # X1 or X2
    mul, add_mul = rows32[3 * unit + 2], rows64[2 * unit + 1]
    shift, floor = cfg[last + 3], np.int64(0) if cfg[last + 5] else np.int64(-128)
    if shift == 0 and with_wide:
        _x_out_loop(t, n, mul, add_mul, 0, floor, out, wide, p0, True)
    elif shift == 0:
        _x_out_loop(t, n, mul, add_mul, 0, floor, out, wide, p0, False)
    elif with_wide:
        _x_out_loop(t, n, mul, add_mul, shift, floor, out, wide, p0, True)
    else:
        _x_out_loop(t, n, mul, add_mul, shift, floor, out, wide, p0, False)


@jit
def _y_block(t, n, ew, p0, cfg):
    """SDP Y's ALU with the INT8 operand ``ew`` through its converter, on ``t[:n]``."""
    y_alu, y_scale, y_offset_scale = cfg[13], np.int32(cfg[15]), cfg[14] * cfg[15]
    shift, half, sign, keep = _rounding(cfg[16], 49)
    lim = np.int64(1) << 31
    for i in range(n):
        for k in range(t.shape[1]):
            op = _srr(_wide(np.int32(ew[p0 + i, k])) * _wide(y_scale) - y_offset_scale, shift,
                      half, sign, keep, lim)  # fmt: skip
            x = _wide(t[i, k])
            if y_alu == 1:
                x = min(max(x + op, -lim), lim - 1)
            elif y_alu == 2:
                x = max(x, op)
            else:
                x = min(x, op)
            t[i, k] = x


@jit
def _c_out_block(t, n, cfg, out, wide, p0, with_wide):
    """SDP C (INT17, then INT8) on ``t[:n]`` and the stores."""
    channels = t.shape[1]
    if cfg[17] == 0 and cfg[18] == 1 and cfg[19] == 0:  # sat8(sat17(x)) = sat8(x)
        for i in range(n):
            for k in range(channels):
                t[i, k] = min(max(t[i, k], np.int32(-128)), np.int32(127))
    else:
        scale, offset_scale = np.int32(cfg[18]), cfg[17] * cfg[18]
        shift, half, sign, keep = _rounding(cfg[19], 49)
        lim = np.int64(1) << 16
        for i in range(n):
            for k in range(channels):
                v = _srr(_wide(t[i, k]) * _wide(scale) - offset_scale, shift, half, sign, keep,
                         lim)  # fmt: skip
                t[i, k] = min(max(v, np.int64(-128)), np.int64(127))
    for i in range(n):
        for k in range(channels):
            out[p0 + i, k] = np.int8(t[i, k])
    if with_wide:
        for i in range(n):
            for k in range(channels):
                wide[p0 + i, k] = np.float32(t[i, k])


@jit
def _last_unit(cfg):
    """The X unit (cfg offset 1 or 7) that runs with the converter and the stores
    (``_x_out_loop``), or 0 where the chain cannot end that way."""
    c_plain = cfg[17] == 0 and cfg[18] == 1 and cfg[19] == 0
    last = 7 if cfg[7] else (1 if cfg[1] else 0)
    if not c_plain or cfg[13] or cfg[last + 1] or cfg[last + 4] or cfg[last + 3] >= 49:
        return 0
    return last


@numba.njit(inline="always")
def _load(t, n, acc, p0, cacc, small):
    # The accumulators acc[p0:p0 + n] (float sums, int32 sums, or INT8 values) as int32 in t.
    lim34 = np.int64(1) << 33
    lim32 = np.int64(1) << 31
    channels = t.shape[1]
    if cacc > 0:
        # {acc34, 16'b0} >>> truncate, rounded with the RTL's 16 kept fraction bits.
        for i in range(n):
            for k in range(channels):
                a = min(max(np.int64(acc[p0 + i, k]), -lim34), lim34 - 1)
                v = (a << 16) >> cacc
                up = ((v >> 15) & 1) & ((a >= 0) | ((v & 32767) != 0))
                t[i, k] = min(max((v >> 16) + up, -lim32), lim32 - 1)
    elif cacc == 0 and small:
        for i in range(n):
            for k in range(channels):
                t[i, k] = np.int32(acc[p0 + i, k])
    elif cacc == 0:
        for i in range(n):
            for k in range(channels):
                t[i, k] = min(max(np.int64(acc[p0 + i, k]), -lim32), lim32 - 1)
    else:
        for i in range(n):
            for k in range(channels):
                t[i, k] = acc[p0 + i, k]


@numba.njit(inline="always")
def _stages(t, n, rows32, rows64, cfg, last, ew, out, wide, p0, with_wide):
    # X1, X2, Y, C and the stores on the block t[:n] of int32 values.
    if cfg[1] and last != 1:
        _x_block(t, n, rows32, rows64, 0, cfg, 1)
    if cfg[7] and last != 7:
        _x_block(t, n, rows32, rows64, 3, cfg, 7)
    if last:
        _x_out_block(t, n, rows32, rows64, cfg, last, out, wide, p0, with_wide)
    else:
        if cfg[13]:
            _y_block(t, n, ew, p0, cfg)
        _c_out_block(t, n, cfg, out, wide, p0, with_wide)


@jit
def _one_pass_unit(cfg, clear):
    """The cfg offset (1 or 7) of the chain's one X unit, 0 where it has none, or -1 where
    ``_one_pass`` cannot run it: a CACC round or a saturating load, sums to clear, two X units
    (after folding), a MAX or MIN ALU, PReLU, a truncate >= 49, or Y's MAX or MIN."""
    loads_plain = cfg[0] == -1 or (cfg[0] == 0 and cfg[20])
    if clear or not loads_plain or (cfg[1] and cfg[7]) or cfg[13] > 1:
        return -1
    unit = 7 if cfg[7] else (1 if cfg[1] else 0)
    if unit and (cfg[unit + 1] or cfg[unit + 4] or cfg[unit + 3] >= 49):
        return -1
    return unit


@numba.njit(inline="always")
def _one_pass_rows(acc, out, wide, ew, i0, i1, o, mul, add_mul, xr, floor, y, yr, c, cr, with_y,
                   c_plain, with_wide):  # fmt: skip
    # Every stage per element from the accumulator to the stores, in one loop: an X unit (SUM
    # or no ALU, ``xr`` its ``_rounding``), the Y ALU's SUM (``y``: scale, offset * scale),
    # the converter (``c`` likewise); with_y, c_plain and with_wide are constants per call.
    lim = np.int64(1) << 31
    lim17 = np.int64(1) << 16
    for i in range(i0, i1):
        for k in range(acc.shape[1]):
            p = _wide(np.int32(acc[i, k])) * _wide(mul[k]) + add_mul[k]
            x = min(max((p + xr[1] + ((p >> 63) & xr[2])) >> xr[0], floor), lim - 1)
            if with_y:
                op = _wide(np.int32(ew[o + i, k])) * y[0] - y[1]
                x = min(max(x + _srr(op, yr[0], yr[1], yr[2], yr[3], lim), -lim), lim - 1)
            if not c_plain:
                x = _srr(x * c[0] - c[1], cr[0], cr[1], cr[2], cr[3], lim17)
            v = np.int32(min(max(x, np.int64(-128)), np.int64(127)))
            out[o + i, k] = np.int8(v)
            if with_wide:
                wide[o + i, k] = np.float32(v)


@jit
def _one_pass_span(acc, out, wide, ew, i0, i1, o, cfg, rows32, rows64, unit, with_wide):
    """``_one_pass_rows`` on pixels ``i0:i1`` of ``acc`` (``o + i0:o + i1`` of the others) of a
    chain ``_one_pass_unit`` accepts."""
    channels = acc.shape[1]
    if unit:
        r = 3 * (unit // 7)
        mul, add_mul = rows32[r + 2], rows64[2 * r // 3 + 1]
        xr = _rounding(cfg[unit + 3], 49)
        floor = np.int64(0) if cfg[unit + 5] else np.int64(_I32_MIN)
    else:
        mul, add_mul = np.ones(channels, np.int32), np.zeros(channels, np.int64)
        xr = _rounding(0, 49)
        floor = np.int64(_I32_MIN)
    y = (np.int64(cfg[15]), cfg[14] * cfg[15])
    yr = _rounding(cfg[16], 49)
    c = (np.int64(cfg[18]), cfg[17] * cfg[18])
    cr = _rounding(cfg[19], 49)
    with_y = cfg[13] == 1
    c_plain = cfg[17] == 0 and cfg[18] == 1 and cfg[19] == 0
    a = (acc, out, wide, ew, i0, i1, o, mul, add_mul, xr, floor, y, yr, c, cr)
    if with_y and c_plain:
        _one_pass_wide(a, True, True, with_wide)
    elif with_y:
        _one_pass_wide(a, True, False, with_wide)
    elif c_plain:
        _one_pass_wide(a, False, True, with_wide)
    else:
        _one_pass_wide(a, False, False, with_wide)


@numba.njit(inline="always")
def _one_pass_wide(a, with_y, c_plain, with_wide):
    # with_wide as a constant too: each of the eight calls is a loop of its own.
    acc, out, wide, ew, i0, i1, o, mul, add_mul, xr, floor, y, yr, c, cr = a
    if with_wide:
        _one_pass_rows(acc, out, wide, ew, i0, i1, o, mul, add_mul, xr, floor, y, yr, c, cr,
                       with_y, c_plain, True)  # fmt: skip
    else:
        _one_pass_rows(acc, out, wide, ew, i0, i1, o, mul, add_mul, xr, floor, y, yr, c, cr,
                       with_y, c_plain, False)  # fmt: skip


def _chain(acc, out, wide, ew, cfg, rows32, rows64, clear, threads):
    # The stages are functions of their own, compiled once for every input type; only the
    # loads below are compiled per type.
    pixels, channels = acc.shape
    per = max(1, BLOCK // channels)
    blocks = (pixels + per - 1) // per
    jobs = min(blocks, 8 * threads)
    cacc, small = cfg[0], cfg[20]
    last = _last_unit(cfg)
    with_wide = wide.shape[0] == pixels
    unit = _one_pass_unit(cfg, clear)
    if unit >= 0:
        for job in numba.prange(jobs):
            i0, i1 = job * blocks // jobs * per, min((job + 1) * blocks // jobs * per, pixels)
            _one_pass_span(acc, out, wide, ew, i0, i1, 0, cfg, rows32, rows64, unit, with_wide)
        return
    for job in numba.prange(jobs):
        t = np.empty((per, channels), dtype=np.int32)  # every stage's result fits 32 bits
        for block in range(job * blocks // jobs, (job + 1) * blocks // jobs):
            p0 = block * per
            n = min(pixels - p0, per)
            _load(t, n, acc, p0, cacc, small)
            if clear:
                for i in range(n):
                    for k in range(channels):
                        acc[p0 + i, k] = 0
            _stages(t, n, rows32, rows64, cfg, last, ew, out, wide, p0, with_wide)


@numba.njit(inline="always")
def _taps_3x3(sums, i, x, b, iy, ix, dh, dw, weight):
    # The nine taps of a pixel whose window lies inside the input, summed in registers: one
    # store per sum instead of a load and a store per tap.
    r0, r1, r2 = x[b, iy], x[b, iy + dh], x[b, iy + 2 * dh]
    c0, c1, c2 = ix, ix + dw, ix + 2 * dw
    w0, w1, w2 = weight[0], weight[1], weight[2]
    for k in range(sums.shape[1]):
        s = np.int32(r0[c0, k]) * w0[0, k] + np.int32(r0[c1, k]) * w0[1, k]
        s += np.int32(r0[c2, k]) * w0[2, k] + np.int32(r1[c0, k]) * w1[0, k]
        s += np.int32(r1[c1, k]) * w1[1, k] + np.int32(r1[c2, k]) * w1[2, k]
        s += np.int32(r2[c0, k]) * w2[0, k] + np.int32(r2[c1, k]) * w2[1, k]
        sums[i, k] = s + np.int32(r2[c2, k]) * w2[2, k]


@numba.njit(inline="always")
def _taps(sums, i, x, b, oy, ox, geometry, weight):
    # Every tap of one output pixel; taps outside the input read the pad value.
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    taps_h, taps_w = weight.shape[0], weight.shape[1]
    sh, sw, dh, dw, top, left, pad = geometry[:7]
    iy0, ix0 = oy * sh - top, ox * sw - left
    inside = iy0 >= 0 and ix0 >= 0
    inside = inside and iy0 + dh * (taps_h - 1) < height and ix0 + dw * (taps_w - 1) < width
    if inside and taps_h == 3 and taps_w == 3:
        _taps_3x3(sums, i, x, b, iy0, ix0, dh, dw, weight)
        return
    for k in range(channels):
        sums[i, k] = 0
    for r in range(taps_h):
        iy = iy0 + r * dh
        for c in range(taps_w):
            ix = ix0 + c * dw
            if 0 <= iy < height and 0 <= ix < width:
                for k in range(channels):
                    sums[i, k] += np.int32(x[b, iy, ix, k]) * weight[r, c, k]
            else:
                for k in range(channels):
                    sums[i, k] += np.int32(pad) * weight[r, c, k]


@numba.njit(inline="always")
def _pair_taps(sums, i, v0, v1, v2, v3, v4, v5, v6, v7, v8, w):
    # The nine taps (INT8 rows v0..v8, weights int16 [9, K]) in int16 pairs, each widened to
    # int32 once: 16-bit multiplies and adds where int32 ones do twice the work per lane.
    # Exact where ``pairs`` accepted the weights (no pair's sum leaves int16).
    for k in range(sums.shape[1]):
        p = np.int16(np.int16(v0[k]) * w[0, k] + np.int16(v1[k]) * w[1, k])
        q = np.int16(np.int16(v2[k]) * w[2, k] + np.int16(v3[k]) * w[3, k])
        r = np.int16(np.int16(v4[k]) * w[4, k] + np.int16(v5[k]) * w[5, k])
        s = np.int16(np.int16(v6[k]) * w[6, k] + np.int16(v7[k]) * w[7, k])
        t = np.int16(np.int16(v8[k]) * w[8, k])
        sums[i, k] = np.int32(p) + np.int32(q) + np.int32(r) + np.int32(s) + np.int32(t)


@numba.njit(inline="always")
def _pair_pixel(sums, i, x, b, oy, ox, geometry, w, pad_row):
    # A 3x3 pixel's taps by ``_pair_taps``; taps outside the input read ``pad_row`` (the pad
    # value in every channel), so border pixels take the same loop.
    height, width = x.shape[1], x.shape[2]
    sh, sw, dh, dw, top, left = geometry[:6]
    iy0, ix0 = oy * sh - top, ox * sw - left
    c0, c1, c2 = ix0, ix0 + dw, ix0 + 2 * dw
    if iy0 >= 0 and ix0 >= 0 and iy0 + 2 * dh < height and c2 < width:
        r0, r1, r2 = x[b, iy0], x[b, iy0 + dh], x[b, iy0 + 2 * dh]
        _pair_taps(sums, i, r0[c0], r0[c1], r0[c2], r1[c0], r1[c1], r1[c2], r2[c0], r2[c1],
                   r2[c2], w)  # fmt: skip
        return
    in0, in1, in2 = 0 <= c0 < width, 0 <= c1 < width, 0 <= c2 < width
    iy1, iy2 = iy0 + dh, iy0 + 2 * dh
    ok0, ok1, ok2 = 0 <= iy0 < height, 0 <= iy1 < height, 0 <= iy2 < height
    v0 = x[b, iy0, c0] if ok0 and in0 else pad_row
    v1 = x[b, iy0, c1] if ok0 and in1 else pad_row
    v2 = x[b, iy0, c2] if ok0 and in2 else pad_row
    v3 = x[b, iy1, c0] if ok1 and in0 else pad_row
    v4 = x[b, iy1, c1] if ok1 and in1 else pad_row
    v5 = x[b, iy1, c2] if ok1 and in2 else pad_row
    v6 = x[b, iy2, c0] if ok2 and in0 else pad_row
    v7 = x[b, iy2, c1] if ok2 and in1 else pad_row
    v8 = x[b, iy2, c2] if ok2 and in2 else pad_row
    _pair_taps(sums, i, v0, v1, v2, v3, v4, v5, v6, v7, v8, w)


def pairs(weight: np.ndarray, pad: int) -> np.ndarray:
    """A 3x3 depthwise layer's int32 weights [3, 3, K] as int16 [9, K] for ``_pair_taps``,
    where every tap pair's sum of products with INT8 inputs and the pad value provably fits
    int16 (it does unless both weights of a pair are -128, or the pad is not INT8); else an
    empty [0, K] array, and the int32 taps run."""
    channels = weight.shape[-1]
    none = np.zeros((0, channels), dtype=np.int16)
    if weight.shape[:2] != (3, 3) or not -128 <= pad <= 127:
        return none
    w = weight.reshape(9, channels).astype(np.int64)
    high = np.maximum(127 * w, -128 * w)  # the largest product with an INT8 input
    low = np.minimum(127 * w, -128 * w)
    pair_high = np.concatenate([high[0:8:2] + high[1:8:2], high[8:]])
    pair_low = np.concatenate([low[0:8:2] + low[1:8:2], low[8:]])
    if pair_high.max() > 32767 or pair_low.min() < -32768:
        return none
    return np.ascontiguousarray(w, dtype=np.int16)


def _depthwise_chain(x, weight, paired, geometry, out, wide, ew, cfg, rows32, rows64, threads):
    # A depthwise convolution's sums, computed row segment by row segment into the L1 cache
    # (int32: the caller checks the layer's bound < 2^31), then the chain: no sums in memory,
    # the INT8 input read as it is, and no index division per pixel (three of them cost as
    # much as a 32-channel pixel's taps).
    channels = x.shape[3]
    out_h, out_w = geometry[7], geometry[8]
    pixels = out.shape[0]
    per = max(1, min(out_w, BLOCK // channels))
    segments = (out_w + per - 1) // per
    rows = x.shape[0] * out_h
    jobs = min(rows, 8 * threads)
    cacc, small = cfg[0], cfg[20]
    last = _last_unit(cfg)
    with_wide = wide.shape[0] == pixels
    # The sums are int32 in the L1 cache: the one-pass loop applies when the chain does
    # (``cacc == -1`` stands for a plain load, the CACC stage checked below).
    plain = cacc == 0 and small
    unit = -1
    if plain:
        unit = _one_pass_unit(cfg, False)
    with_pairs = paired.shape[0] == 9
    for job in numba.prange(jobs):
        t = np.empty((per, channels), dtype=np.int32)
        sums = np.empty((per, channels), dtype=np.int32)
        pad_row = np.full(channels, geometry[6], dtype=np.int8)  # read only with_pairs
        for row in range(job * rows // jobs, (job + 1) * rows // jobs):
            b = row // out_h
            oy = row - b * out_h
            for segment in range(segments):
                ox0 = segment * per
                n = min(out_w - ox0, per)
                p0 = row * out_w + ox0
                if with_pairs:
                    for i in range(n):
                        _pair_pixel(sums, i, x, b, oy, ox0 + i, geometry, paired, pad_row)
                else:
                    for i in range(n):
                        _taps(sums, i, x, b, oy, ox0 + i, geometry, weight)
                if unit >= 0:
                    _one_pass_span(sums, out, wide, ew, 0, n, p0, cfg, rows32, rows64, unit,
                                   with_wide)  # fmt: skip
                else:
                    _load(t, n, sums, 0, cacc, small)
                    _stages(t, n, rows32, rows64, cfg, last, ew, out, wide, p0, with_wide)


def _compiled(func, signature: str, parallel: bool):
    """``func`` compiled (cached) for ``signature``, on the thread pool or on the calling
    thread. The serial one is compiled from a copy of ``func`` under a name of its own: numba's
    cache keys an entry by the function and the signature, not by ``parallel``, so both would
    share one entry and run whichever was compiled first (the pool's, which is not
    thread-safe, or the serial one on the pool's layers)."""
    if not parallel:
        twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_serial")
        twin.__qualname__ = func.__qualname__ + "_serial"
        func = twin
    return numba.njit(signature, cache=True, parallel=parallel, nogil=True)(func)


_COMPILED: dict[tuple[np.dtype, bool], object] = {}


@functools.cache
def _placeholders(channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The Y operand and float copy a chain without them is passed (never written: the
    kernels read ``ew`` only with a Y stage and write ``wide`` only with its pixels' rows)."""
    return np.zeros((1, channels), dtype=np.int8), np.zeros((0, channels), dtype=np.float32)


# Below this many elements a layer's pass runs on the calling thread: waking the thread pool
# costs more (0.1-0.5 ms a call measured, about the pass of 200k elements).
SERIAL_BELOW = 1 << 17


def chain(
    acc: np.ndarray,
    out: np.ndarray,
    cfg: np.ndarray,
    rows32: np.ndarray,
    rows64: np.ndarray,
    ew: np.ndarray | None = None,
    wide: np.ndarray | None = None,
    clear: bool = False,
    parallel: bool | None = None,
) -> None:
    """INT8 ``out`` [pixels, K] of accumulators (float sums) or INT8 values ``acc``, both
    C-contiguous (channels last); ``ew`` the Y operand (INT8, ``out``'s shape) where the chain
    has one; ``wide``, if given, receives the result as float32 too (a convolution's input);
    with ``clear`` the pass sets every element of ``acc`` it read to 0. ``parallel`` (default:
    from the size) picks the thread pool or the calling thread."""
    if parallel is None:
        parallel = acc.size >= SERIAL_BELOW
    # Keyed by the dtype itself: a pointwise layer calls this once per chunk (hundreds of
    # times a batch), and dtype.name and fresh placeholders cost as much as a small chunk.
    kernel = _COMPILED.get((acc.dtype, parallel))
    if kernel is None:
        kind = acc.dtype.name
        signature = f"void({kind}[:, ::1], int8[:, ::1], float32[:, ::1], int8[:, ::1], "
        signature += "int64[::1], int32[:, ::1], int64[:, ::1], boolean, int64)"
        compiled = _compiled(_chain, signature, parallel)
        kernel = _COMPILED[acc.dtype, parallel] = compiled
    if ew is None or wide is None:
        none_ew, none_wide = _placeholders(acc.shape[1])
        ew = none_ew if ew is None else ew
        wide = none_wide if wide is None else wide
    # numba.get_num_threads() inside the kernel would keep it from being cached; on the
    # calling thread the pool is not touched (the thread pool is not thread-safe).
    threads = numba.get_num_threads() if parallel else 1
    kernel(acc, out, wide, ew, cfg, rows32, rows64, clear, threads)


_DEPTHWISE: dict[bool, object] = {}


def depthwise_chain(
    x: np.ndarray,
    weight: np.ndarray,
    geometry: np.ndarray,
    out: np.ndarray,
    cfg: np.ndarray,
    rows32: np.ndarray,
    rows64: np.ndarray,
    ew: np.ndarray | None = None,
    wide: np.ndarray | None = None,
    paired: np.ndarray | None = None,
) -> None:
    """``chain`` of a depthwise convolution's sums, computed in the pass: INT8 ``x``
    [B, H, W, K] (C-contiguous), int32 ``weight`` [R, S, K] whose sums stay below 2^31,
    ``geometry`` int64 (stride h, w, dilation h, w, pad top, left, pad value, output h, w);
    ``out`` [B * out h * out w, K]; ``paired``, if given, ``pairs`` of the weights and pad
    value (the int16 taps where it is not empty)."""
    parallel = out.size >= SERIAL_BELOW
    kernel = _DEPTHWISE.get(parallel)
    if kernel is None:
        signature = "void(int8[:, :, :, ::1], int32[:, :, ::1], int16[:, ::1], int64[::1], "
        signature += "int8[:, ::1], "
        signature += "float32[:, ::1], int8[:, ::1], int64[::1], int32[:, ::1], int64[:, ::1], "
        signature += "int64)"
        compiled = _compiled(_depthwise_chain, signature, parallel)
        kernel = _DEPTHWISE[parallel] = compiled
    channels = out.shape[1]
    if ew is None or wide is None:
        none_ew, none_wide = _placeholders(channels)
        ew = none_ew if ew is None else ew
        wide = none_wide if wide is None else wide
    if paired is None:
        paired = np.zeros((0, channels), dtype=np.int16)
    threads = numba.get_num_threads() if parallel else 1
    kernel(x, weight, paired, geometry, out, wide, ew, cfg, rows32, rows64, threads)


@numba.njit(inline="always")
def _quantize_span(x, scale, out, i0, i1):
    # Branch-free, so the loop vectorises (the float64 division is most of its time); a
    # non-finite input counts and leaves 0 behind.
    bad = 0
    for i in range(i0, i1):
        finite = np.isfinite(x[i])
        bad += np.int64(not finite)
        v = np.float64(x[i]) / scale if finite else 0.0
        q = np.floor(abs(v) + 0.5)
        q = -q if v < 0 else q
        out[i] = np.int8(min(max(q, -128.0), 127.0))
    return bad


@numba.njit(cache=True, parallel=True)
def _quantize(x, scale, out, jobs):
    # A serial loop on each job's slices: a prange over the elements with the count as its
    # reduction did not vectorise, nor one indexing the whole arrays (2-3x slower, measured).
    bad = np.zeros(jobs, dtype=np.int64)
    for job in numba.prange(jobs):
        i0, i1 = job * x.size // jobs, (job + 1) * x.size // jobs
        bad[job] = _quantize_span(x[i0:i1], scale, out[i0:i1], 0, i1 - i0)
    return bad.sum()


def quantize(x: np.ndarray, scale: float) -> np.ndarray | None:
    """INT8 of float32 ``x`` as ``intref.quantize`` computes it (round half away from zero of
    ``x / scale`` in float64, saturated); None if ``x`` holds NaN or infinite values."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.shape, dtype=np.int8)
    if _quantize(flat, np.float64(scale), out, 8 * numba.get_num_threads()):
        return None
    return out.reshape(x.shape)


@numba.njit(cache=True, parallel=True)
def _widen(x, out):
    for i in numba.prange(x.size):
        out[i] = x[i]


def widen_into(x: np.ndarray, out: np.ndarray) -> None:
    """``x`` (INT8, C-contiguous) cast into ``out`` (float32 or float64, C-contiguous, ``x``'s
    shape), in parallel (torch's and numpy's casts take one core)."""
    _widen(x.reshape(-1), out.reshape(-1))


@numba.njit(cache=True, parallel=True)
def _widen_channels_last(x, out):
    for row in numba.prange(x.shape[0] * x.shape[2]):
        b, y = row // x.shape[2], row % x.shape[2]
        for c in range(x.shape[1]):
            for i in range(x.shape[3]):
                out[b, y, i, c] = x[b, c, y, i]


def widen_channels_last(x: np.ndarray, out: np.ndarray) -> None:
    """INT8 ``x`` [B, C, H, W] (C-contiguous) cast into float32 ``out`` [B, H, W, C]
    (C-contiguous), in parallel."""
    _widen_channels_last(x, out)


@numba.njit(cache=True, nogil=True)
def _average_pool(x, geometry, out):
    kh, kw, sh, sw, top, left, pad, recip_w, recip_h = geometry
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    total = np.empty(channels, dtype=np.int64)
    lim = np.int64(1) << 47
    for b in range(x.shape[0]):
        for oy in range(out.shape[1]):
            for ox in range(out.shape[2]):
                total[:] = 0
                real = 0
                for r in range(kh):
                    iy = oy * sh - top + r
                    if iy < 0 or iy >= height:
                        continue
                    for c in range(kw):
                        ix = ox * sw - left + c
                        if 0 <= ix < width:
                            real += 1
                            for k in range(channels):
                                total[k] += x[b, iy, ix, k]
                fill = (kh * kw - real) * pad
                for k in range(channels):
                    # shift_right_round(., 16, 48, 48) twice, then sat8, as ``intref.pool``.
                    p = (total[k] + fill) * recip_w
                    t = min(max((p + 32768 + (p >> 63)) >> 16, -lim), lim - 1)
                    p = t * recip_h
                    v = min(max((p + 32768 + (p >> 63)) >> 16, -lim), lim - 1)
                    out[b, oy, ox, k] = np.int8(min(max(v, np.int64(-128)), np.int64(127)))


def average_pool(x: np.ndarray, geometry: np.ndarray, out: np.ndarray) -> None:
    """PDP average pooling as ``intref.pool`` computes it, on INT8 ``x`` [B, H, W, K] into
    INT8 ``out`` [B, H', W', K] (both C-contiguous); ``geometry`` int64 (kernel h, w, stride
    h, w, pad top, left, pad value, recip_w, recip_h)."""
    _average_pool(x, geometry, out)
