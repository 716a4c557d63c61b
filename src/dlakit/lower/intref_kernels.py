"""CACC output + SDP chain of the integer reference as one compiled pass (numba, CPU).

The same integers as the whole-tensor functions of :mod:`dlakit.lower.intref`
(``cacc_output``, ``x_unit``, ``y_unit``, ``c_unit``), which stay the definition: each
accumulator is read once and each INT8 result written once (and, for a convolution that reads
it next, its float copy), so a layer's SDP costs one pass instead of a dozen int64 ones. Written
from those functions, independently of the simulator's kernels. ``tests/lower/test_intref_fast.py``
checks both against each other.

``pack`` turns a layer's :class:`~dlakit.lower.qgraph.SdpChain` into a config vector and
per-channel operand rows; ``chain`` runs it on channels-last ``[pixels, K]`` views.
"""

from __future__ import annotations

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
_WIDE = np.int64(1) << 40  # beyond any 33-bit value: the bound of an ALU that is not there
_Y_ALU = {"sum": 1, "max": 2, "min": 3}


def _x_rows(unit: XUnit, channels: int) -> np.ndarray:
    """int64 [4, K]: the ALU as ``min(max(x + add, low), high)``, then the multiplier."""
    add = np.zeros(channels, dtype=np.int64)
    low = np.full(channels, -_WIDE)
    high = np.full(channels, _WIDE)
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
    return np.stack([add, low, high, mul])


def pack(chain: SdpChain, channels: int, cacc_truncate: int) -> tuple[np.ndarray, np.ndarray]:
    """(config int64 [20], per-channel rows int64 [8, K]) of a layer's chain."""
    cfg = [cacc_truncate]
    rows = []
    for unit in (chain.x1, chain.x2):
        if unit is None:
            cfg += [0, 0, 0, 0, 0, 0]
            rows.append(np.zeros((4, channels), dtype=np.int64))
        else:
            prelu = unit.prelu and unit.mul is not None
            cfg += [1, int(unit.alu is not None), int(unit.mul is not None), unit.truncate,
                    int(prelu), int(unit.relu)]  # fmt: skip
            rows.append(_x_rows(unit, channels))
    y = chain.y
    cfg += [0, 0, 0, 0] if y is None else [_Y_ALU[y.alu], y.cvt_offset, y.cvt_scale,
                                            y.cvt_truncate]  # fmt: skip
    cfg += [chain.c.offset, chain.c.scale, chain.c.shift]
    return np.asarray(cfg, dtype=np.int64), np.ascontiguousarray(np.concatenate(rows))


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
def _x_truncate(t, n, mul, use_mul, shift, floor):
    # MUL (or its bypass: the ALU value itself) -> truncate -> ReLU, without PReLU; the
    # callers pass use_mul as a constant, so each call compiles to its own loops.
    lim = np.int64(1) << 31
    channels = t.shape[1]
    if shift == 0:
        for i in range(n):
            for k in range(channels):
                x = t[i, k] * mul[k] if use_mul else t[i, k]
                t[i, k] = max(min(max(x, -lim), lim - 1), floor)
    elif shift >= 49:
        for i in range(n):
            for k in range(channels):
                t[i, k] = max(np.int64(0), floor)
    else:
        half = np.int64(1) << (shift - 1)
        for i in range(n):
            for k in range(channels):
                x = t[i, k] * mul[k] if use_mul else t[i, k]
                x = (x + half + (x >> 63)) >> shift
                t[i, k] = max(min(max(x, -lim), lim - 1), floor)


@jit
def _x_block(t, n, rows, r, cfg, c):
    """SDP X1 or X2 on ``t[:n]`` in place: ALU -> MUL -> truncate (49-bit input) -> ReLU;
    its flags from ``cfg[c:c + 6]``, its per-channel operands from ``rows[r:r + 4]``."""
    alu, use_mul, truncate, prelu, relu = cfg[c + 1], cfg[c + 2], cfg[c + 3], cfg[c + 4], cfg[c + 5]
    add, low, high, mul = rows[r], rows[r + 1], rows[r + 2], rows[r + 3]
    floor = np.int64(0) if relu else -_WIDE
    channels = t.shape[1]
    if alu:
        for i in range(n):
            for k in range(channels):
                t[i, k] = min(max(t[i, k] + add[k], low[k]), high[k])
    if prelu:  # non-negatives skip MUL and truncate
        shift, half, sign, keep = _rounding(truncate, 49)
        lim = np.int64(1) << 31
        for i in range(n):
            for k in range(channels):
                x = t[i, k]
                y = _srr(x * mul[k], shift, half, sign, keep, lim)
                t[i, k] = max(min(x, lim - 1) if x >= 0 else y, floor)
    elif use_mul:
        _x_truncate(t, n, mul, True, truncate, floor)
    else:
        _x_truncate(t, n, mul, False, truncate, floor)


@numba.njit(inline="always")
def _store(t, n, out, wide, p0, with_wide):
    for i in range(n):
        for k in range(t.shape[1]):
            out[p0 + i, k] = np.int8(t[i, k])
    if with_wide:
        for i in range(n):
            for k in range(t.shape[1]):
                wide[p0 + i, k] = np.float32(t[i, k])


def _chain(acc, out, wide, ew, cfg, rows, threads):
    pixels, channels = acc.shape
    per = max(1, BLOCK // channels)
    blocks = (pixels + per - 1) // per
    jobs = min(blocks, 8 * threads)
    cacc = cfg[0]
    y_alu, y_off, y_scale = cfg[13], cfg[14], cfg[15]
    y_shift, y_half, y_sign, y_keep = _rounding(cfg[16], 49)
    c_off, c_scale = cfg[17], cfg[18]
    c_shift, c_half, c_sign, c_keep = _rounding(cfg[19], 49)
    c_plain = c_off == 0 and c_scale == 1 and cfg[19] == 0  # sat8(sat17(x)) = sat8(x)
    lim34 = np.int64(1) << 33
    lim32 = np.int64(1) << 31
    lim17 = np.int64(1) << 16
    with_wide = wide.shape[0] == pixels
    for job in numba.prange(jobs):
        t = np.empty((per, channels), dtype=np.int64)
        for block in range(job * blocks // jobs, (job + 1) * blocks // jobs):
            p0 = block * per
            n = min(pixels - p0, per)
            if cacc > 0:
                # {acc34, 16'b0} >>> truncate, rounded with the RTL's 16 kept fraction bits.
                for i in range(n):
                    for k in range(channels):
                        a = min(max(np.int64(acc[p0 + i, k]), -lim34), lim34 - 1)
                        v = (a << 16) >> cacc
                        up = ((v >> 15) & 1) & ((a >= 0) | ((v & 32767) != 0))
                        t[i, k] = min(max((v >> 16) + up, -lim32), lim32 - 1)
            elif cacc == 0:
                for i in range(n):
                    for k in range(channels):
                        t[i, k] = min(max(np.int64(acc[p0 + i, k]), -lim32), lim32 - 1)
            else:
                for i in range(n):
                    for k in range(channels):
                        t[i, k] = np.int64(acc[p0 + i, k])
            if cfg[1]:
                _x_block(t, n, rows, 0, cfg, 1)
            if cfg[7]:
                _x_block(t, n, rows, 4, cfg, 7)
            if y_alu:
                for i in range(n):
                    for k in range(channels):
                        e = (np.int64(ew[p0 + i, k]) - y_off) * y_scale
                        op = _srr(e, y_shift, y_half, y_sign, y_keep, lim32)
                        x = t[i, k]
                        if y_alu == 1:
                            x = min(max(x + op, -lim32), lim32 - 1)
                        elif y_alu == 2:
                            x = max(x, op)
                        else:
                            x = min(x, op)
                        t[i, k] = x
            if c_plain:
                for i in range(n):
                    for k in range(channels):
                        t[i, k] = min(max(t[i, k], np.int64(-128)), np.int64(127))
            else:
                for i in range(n):
                    for k in range(channels):
                        v = (t[i, k] - c_off) * c_scale
                        v = _srr(v, c_shift, c_half, c_sign, c_keep, lim17)
                        t[i, k] = min(max(v, np.int64(-128)), np.int64(127))
            _store(t, n, out, wide, p0, with_wide)


_COMPILED: dict[str, object] = {}


def chain(
    acc: np.ndarray,
    out: np.ndarray,
    cfg: np.ndarray,
    rows: np.ndarray,
    ew: np.ndarray | None = None,
    wide: np.ndarray | None = None,
) -> None:
    """INT8 ``out`` [pixels, K] of accumulators (float sums) or INT8 values ``acc``, both
    C-contiguous (channels last); ``ew`` the Y operand (INT8, ``out``'s shape) where the chain
    has one; ``wide``, if given, receives the result as float32 too (a convolution's input)."""
    kind = acc.dtype.name
    kernel = _COMPILED.get(kind)
    if kernel is None:
        signature = f"void({kind}[:, ::1], int8[:, ::1], float32[:, ::1], int8[:, ::1], "
        signature += "int64[::1], int64[:, ::1], int64)"
        kernel = _COMPILED[kind] = numba.njit(signature, cache=True, parallel=True)(_chain)
    channels = acc.shape[1]
    if ew is None:
        ew = np.zeros((1, channels), dtype=np.int8)
    if wide is None:
        wide = np.zeros((0, channels), dtype=np.float32)
    # numba.get_num_threads() inside the kernel would keep it from being cached.
    kernel(acc, out, wide, ew, cfg, rows, numba.get_num_threads())


@numba.njit(cache=True, parallel=True)
def _quantize(x, scale, out):
    bad = 0
    for i in numba.prange(x.size):
        v = np.float64(x[i])
        if not np.isfinite(v):
            bad += 1
            continue
        v = v / scale
        q = np.floor(abs(v) + 0.5)
        q = -q if v < 0 else q
        out[i] = np.int8(min(max(q, -128.0), 127.0))
    return bad


def quantize(x: np.ndarray, scale: float) -> np.ndarray | None:
    """INT8 of float32 ``x`` as ``intref.quantize`` computes it (round half away from zero of
    ``x / scale`` in float64, saturated); None if ``x`` holds NaN or infinite values."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(flat.shape, dtype=np.int8)
    if _quantize(flat, np.float64(scale), out):
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
