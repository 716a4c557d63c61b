"""CACC output + SDP chain of the integer reference as one compiled pass (numba, CPU).

The same integers as the whole-tensor functions of :mod:`dlakit.lower.intref`
(``cacc_output``, ``x_unit``, ``y_unit``, ``c_unit``), which stay the definition: each
accumulator is read once and each INT8 result written once, so a layer's SDP costs one pass
instead of a dozen int64 ones. Written from those functions, independently of the simulator's
kernels. ``tests/lower/test_intref_fast.py`` checks both against each other.

``pack`` turns a layer's :class:`~dlakit.lower.qgraph.SdpChain` into a config vector and
per-channel operand rows; ``chain`` runs it on ``[B, K, H, W]`` tensors of any strides.
"""

from __future__ import annotations

import numba
import numpy as np

from dlakit.lower.qgraph import SdpChain, XUnit
from dlakit.system import numba_thread_pool

numba_thread_pool()

_ALU = {None: 0, "sum": 1, "max": 2, "min": 3}
CACC_NONE = -1  # the input is INT8 from memory: no CACC stage


def _x_cfg(unit: XUnit | None, channels: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    zeros = np.zeros(channels, dtype=np.int64)
    if unit is None:
        return [0, 0, 0, 0, 0, 0, 0], zeros, zeros
    alu = np.zeros(channels, dtype=np.int64)
    if unit.alu is not None:
        # sat32(operand << shift), as shift_left_saturate computes it.
        op = np.broadcast_to(np.asarray(unit.alu_operand, dtype=np.int64), (channels,))
        limit = 1 << 31
        if unit.alu_shift >= 32:
            alu = np.where(op > 0, limit - 1, np.where(op < 0, -limit, 0))
        else:
            alu = np.clip(np.clip(op, -limit, limit) << unit.alu_shift, -limit, limit - 1)
    mul = (
        zeros if unit.mul is None else np.broadcast_to(np.asarray(unit.mul, np.int64), (channels,))
    )
    cfg = [1, _ALU[unit.alu], int(unit.mul is not None), unit.truncate, int(unit.prelu),
           int(unit.relu), 0]  # fmt: skip
    return cfg, np.asarray(alu, dtype=np.int64), np.asarray(mul, dtype=np.int64)


def pack(chain: SdpChain, channels: int, cacc_truncate: int) -> tuple[np.ndarray, np.ndarray]:
    """(config int64 [23], per-channel rows int64 [4, K]) of a layer's chain."""
    c1, alu1, mul1 = _x_cfg(chain.x1, channels)
    c2, alu2, mul2 = _x_cfg(chain.x2, channels)
    y = chain.y
    cy = [0, 0, 0, 0, 0] if y is None else [1, _ALU[y.alu], y.cvt_offset, y.cvt_scale,
                                              y.cvt_truncate]  # fmt: skip
    cfg = [cacc_truncate, *c1, *c2, *cy, chain.c.offset, chain.c.scale, chain.c.shift]
    rows = np.ascontiguousarray(np.stack([alu1, mul1, alu2, mul2]))
    return np.asarray(cfg, dtype=np.int64), rows


jit = numba.njit(cache=True)


@jit
def _sat(x, bits):
    lim = np.int64(1) << (bits - 1)
    return min(max(x, -lim), lim - 1)


@jit
def _srr(x, shift, in_bits, out_bits):
    # intref.shift_right_round: floor((x + 2^(s-1) - [x < 0]) / 2^s), then saturate.
    if shift == 0:
        return _sat(x, out_bits)
    if shift >= in_bits:
        return np.int64(0)
    neg = np.int64(1) if x < 0 else np.int64(0)
    return _sat((x + ((np.int64(1) << (shift - 1)) - neg)) >> shift, out_bits)


@jit
def _cacc(acc, truncate):
    acc = _sat(acc, 34)
    if truncate == 0:
        return _sat(acc, 32)
    v = (acc << 16) >> truncate
    data = v >> 16
    guide = (v >> 15) & 1
    sticky = (v & ((np.int64(1) << 15) - 1)) != 0
    up = guide == 1 and (acc >= 0 or sticky)
    return _sat(data + np.int64(up), 32)


@jit
def _x(x, alu, op, mul_on, mul, truncate, prelu, relu):
    if alu == 1:
        x = x + op
    elif alu == 2:
        x = max(x, op)
    elif alu == 3:
        x = min(x, op)
    if mul_on:
        y = _srr(x * mul, truncate, 49, 32)
        if prelu and x >= 0:
            y = _sat(x, 32)
    else:
        y = _srr(x, truncate, 49, 32)
    if relu:
        y = max(y, np.int64(0))
    return y


@jit
def _srr_rows(v, shift, in_bits, out_bits):
    if shift >= in_bits and shift != 0:
        v[:, :] = 0
        return
    lim = np.int64(1) << (out_bits - 1)
    pixels, n = v.shape
    if shift > 0:
        half = np.int64(1) << (shift - 1)
        for p in range(pixels):
            for i in range(n):
                neg = np.int64(1) if v[p, i] < 0 else np.int64(0)
                v[p, i] = (v[p, i] + (half - neg)) >> shift
    for p in range(pixels):
        for i in range(n):
            v[p, i] = min(max(v[p, i], -lim), lim - 1)


@jit
def _x_rows(v, u, alu, ops, mul_on, muls, truncate, prelu, relu):
    pixels, n = v.shape
    for p in range(pixels):
        if alu == 1:
            for i in range(n):
                v[p, i] += ops[i]
        elif alu == 2:
            for i in range(n):
                v[p, i] = max(v[p, i], ops[i])
        elif alu == 3:
            for i in range(n):
                v[p, i] = min(v[p, i], ops[i])
    if mul_on:
        for p in range(pixels):
            for i in range(n):
                u[p, i] = v[p, i] * muls[i]
        _srr_rows(u, truncate, 49, 32)
        lim = np.int64(1) << 31
        for p in range(pixels):
            if prelu:
                for i in range(n):
                    u[p, i] = min(max(v[p, i], -lim), lim - 1) if v[p, i] >= 0 else u[p, i]
            for i in range(n):
                v[p, i] = u[p, i]
    else:
        _srr_rows(v, truncate, 49, 32)
    if relu:
        for p in range(pixels):
            for i in range(n):
                v[p, i] = max(v[p, i], np.int64(0))


def _chain(acc, out, ew, cfg, rows):
    # One row of pixels at a time, each stage a loop over its pixels' channels (vectorised).
    batch, channels, height, width = acc.shape
    truncate = cfg[0]
    y, y_alu, y_off, y_scale, y_t = cfg[15], cfg[16], cfg[17], cfg[18], cfg[19]
    c_off, c_scale, c_shift = cfg[20], cfg[21], cfg[22]
    lim32 = np.int64(1) << 31
    for job in numba.prange(batch * height):
        b = job // height
        h = job % height
        v = np.empty((width, channels), dtype=np.int64)
        u = np.empty((width, channels), dtype=np.int64)
        for w in range(width):
            for k in range(channels):
                v[w, k] = np.int64(acc[b, k, h, w])
        if truncate >= 0:
            for w in range(width):
                for k in range(channels):
                    v[w, k] = _cacc(v[w, k], truncate)
        if cfg[1]:
            _x_rows(v, u, cfg[2], rows[0], cfg[3], rows[1], cfg[4], cfg[5], cfg[6])
        if cfg[8]:
            _x_rows(v, u, cfg[9], rows[2], cfg[10], rows[3], cfg[11], cfg[12], cfg[13])
        if y:
            for w in range(width):
                for k in range(channels):
                    u[w, k] = (np.int64(ew[b, k, h, w]) - y_off) * y_scale
            _srr_rows(u, y_t, 49, 32)
            for w in range(width):
                if y_alu == 1:
                    for k in range(channels):
                        v[w, k] = min(max(v[w, k] + u[w, k], -lim32), lim32 - 1)
                elif y_alu == 2:
                    for k in range(channels):
                        v[w, k] = max(v[w, k], u[w, k])
                else:
                    for k in range(channels):
                        v[w, k] = min(v[w, k], u[w, k])
        for w in range(width):
            for k in range(channels):
                v[w, k] = (v[w, k] - c_off) * c_scale
        _srr_rows(v, c_shift, 49, 17)
        for w in range(width):
            for k in range(channels):
                out[b, k, h, w] = np.int8(min(max(v[w, k], np.int64(-128)), np.int64(127)))


_COMPILED: dict[str, object] = {}


def chain(acc: np.ndarray, out: np.ndarray, ew: np.ndarray, cfg: np.ndarray, rows: np.ndarray):
    """INT8 ``out`` [B, K, H, W] of accumulators (float sums) or INT8 values ``acc``."""
    kind = acc.dtype.name
    kernel = _COMPILED.get(kind)
    if kernel is None:
        cube = "{}[:, :, :, :]"
        signature = (
            f"void({cube.format(kind)}, {cube.format('int8')}, {cube.format('int8')}, "
            "int64[::1], int64[:, ::1])"
        )
        kernel = _COMPILED[kind] = numba.njit(signature, cache=True, parallel=True)(_chain)
    kernel(acc, out, ew, cfg, rows)


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
