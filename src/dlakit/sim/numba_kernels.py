"""The compiled loops of the replay path (numba, CPU; cached on disk after the first compile).

* ``chain``: the SDP chain of :mod:`dlakit.sim.sdp_fused` over a cube of accumulators or INT8
  values, each read once and each INT8 result written once; same arithmetic as the torch twin
  there, in int64 scalars;
* ``stage``: an INT8 feature cube into a padded float NHWC buffer (for conv2d);
* ``conv_dense``, ``conv_depthwise``: a convolution and its SDP chain from the input surface to
  the output surface, integer sums (see below); a dense one with INT8 weights as INT8 GEMMs
  (torch) over the patches of a few MiB of output rows, each followed by the chain.

The chain after a GEMM and after a depthwise convolution is compiled once per chain structure
(``chain_structure``: which stages run, which shifts are 0), the structure's flags constants
of the loop, so only the stages the chain has remain in it (int64 lanes are four to a vector
register: every operation left out counts).
"""

import itertools
import types
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

from dlakit.system import int8_matmul_exact, numba_thread_pool

numba_thread_pool()

jit = numba.njit(cache=True)


@jit
def srr(x, shift, in_bits, out_bits):
    # shift_right_round: round half away from zero, saturate; shift >= in_bits gives 0.
    if shift >= in_bits:
        return np.int64(0)
    if shift > 0:
        mag = (abs(x) + (np.int64(1) << (shift - 1))) >> shift
        x = -mag if x < 0 else mag
    lim = np.int64(1) << (out_bits - 1)
    return min(max(x, -lim), lim - 1)


@jit
def sat32(x):
    return min(max(x, np.int64(-(1 << 31))), np.int64((1 << 31) - 1))


@jit
def cacc(acc, shift):
    if shift == 0:
        return sat32(acc)
    floor = acc >> shift
    guide = (acc >> (shift - 1)) & 1
    lo = max(shift - 16, 0)
    width = shift - 1 - lo
    sticky = width > 0 and ((acc >> lo) & ((np.int64(1) << width) - 1)) != 0
    up = guide == 1 and (acc >= 0 or sticky)
    return sat32(floor + np.int64(up))


@jit
def x_unit(x, alu, op, mul_on, mul, shift, prelu, relu):
    if alu == 1:
        x = x + op
    elif alu == 2:
        x = max(x, op)
    elif alu == 3:
        x = min(x, op)
    if mul_on:
        y = srr(x * mul, shift, 49, 32)
        if prelu and x >= 0:
            y = x
    else:
        y = srr(x, shift, 49, 32)
    if relu:
        y = max(y, np.int64(0))
    return y


def _chain(inp, out, ew, cfg, chan):
    batch, blocks, height, width, atom = inp.shape
    # The configuration as local scalars: the loop then keeps them in registers (stores to
    # ``out`` could otherwise alias ``cfg``) and its tests do not depend on the element.
    cacc_shift = cfg[0]
    x1, x1_alu, x1_mul, x1_shift, x1_prelu, x1_relu = cfg[1], cfg[2], cfg[3], cfg[4], cfg[5], cfg[6]
    x2, x2_alu, x2_mul, x2_shift, x2_prelu, x2_relu = (
        cfg[7],
        cfg[8],
        cfg[9],
        cfg[10],
        cfg[11],
        cfg[12],
    )
    y, y_mul, y_shift, y_prelu, y_alu, y_elem = cfg[13], cfg[14], cfg[15], cfg[16], cfg[17], cfg[18]
    y_cvt, y_off, y_scale, y_cvt_shift = cfg[19], cfg[20], cfg[21], cfg[22]
    c_off, c_scale, c_shift = cfg[23], cfg[24], cfg[25]
    # Rows in parallel; each row's elements in memory order of an NHWC accumulator.
    for job in numba.prange(batch * height):
        b = job // height
        h = job % height
        for w in range(width):
            for cb in range(blocks):
                for a in range(atom):
                    c = cb * atom + a
                    x = np.int64(inp[b, cb, h, w, a])
                    if cacc_shift >= 0:
                        x = cacc(x, cacc_shift)
                    if x1:
                        x = x_unit(x, x1_alu, chan[0, c], x1_mul, chan[1, c], x1_shift, x1_prelu,
                                   x1_relu)  # fmt: skip
                    if x2:
                        x = x_unit(x, x2_alu, chan[2, c], x2_mul, chan[3, c], x2_shift, x2_prelu,
                                   x2_relu)  # fmt: skip
                    if y:
                        if y_mul:
                            prod = srr(x * chan[4, c], y_shift, 64, 32)
                            if not (y_prelu and x >= 0):
                                x = prod
                        if y_alu:
                            if y_elem:
                                op = np.int64(ew[b, cb, h, w, a])
                                if y_cvt:
                                    op = srr((op - y_off) * y_scale, y_cvt_shift, 49, 32)
                            else:
                                op = chan[5, c]
                            if y_alu == 1:
                                x = sat32(x + op)
                            elif y_alu == 2:
                                x = max(x, op)
                            else:
                                x = min(x, op)
                    x = (x - c_off) * c_scale
                    out[b, cb, h, w, a] = np.int8(srr(x, c_shift, 49, 8))


def _signature(accumulator: str) -> str:
    cube = "{}[:, :, :, :, :]"  # any strides: cubes are views of memory or of a GEMM output
    return (
        f"void({cube.format(accumulator)}, {cube.format('int8')}, {cube.format('int8')}, "
        "int64[::1], int64[:, ::1])"
    )


# One compiled loop per accumulator type (INT8 from memory, float32 or float64 sums), each
# compiled (or loaded from the cache) the first time an operation needs it.
_COMPILED: dict[str, object] = {}


def chain(inp: np.ndarray, out: np.ndarray, ew: np.ndarray, cfg: np.ndarray, chan: np.ndarray):
    kind = inp.dtype.name
    kernel = _COMPILED.get(kind)
    if kernel is None:
        kernel = _COMPILED[kind] = numba.njit(_signature(kind), cache=True, parallel=True)(_chain)
    kernel(inp, out, ew, cfg, chan)


def _stage(src, out, top, left, value, channels):
    # The first ``channels`` channels of an INT8 feature cube [B, C/a, H, W, a] into a padded
    # float NHWC buffer [B, H', W', channels]; the border is ``value``.
    batch, blocks, height, width, atom = src.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for job in numba.prange(batch * out_h):
        b = job // out_h
        oh = job % out_h
        h = oh - top
        for ow in range(out_w):
            w = ow - left
            if h < 0 or h >= height or w < 0 or w >= width:
                for c in range(channels):
                    out[b, oh, ow, c] = value
                continue
            for cb in range(blocks):
                base = cb * atom
                for a in range(min(atom, channels - base)):
                    out[b, oh, ow, base + a] = src[b, cb, h, w, a]


def _stage_signature(kind: str) -> str:
    return f"void(int8[:, :, :, :, :], {kind}[:, :, :, ::1], int64, int64, {kind}, int64)"


def stage(src: np.ndarray, out: np.ndarray, top: int, left: int, value: int, channels: int):
    kind = "stage_" + out.dtype.name
    kernel = _COMPILED.get(kind)
    if kernel is None:
        signature = _stage_signature(out.dtype.name)
        kernel = _COMPILED[kind] = numba.njit(signature, cache=True, parallel=True)(_stage)
    kernel(src, out, top, left, out.dtype.type(value), channels)


def _to_surface(src, out, ov):
    # A planar INT8 cube [B, C, H, W] into a flat feature surface (``_flat``), the lanes past
    # channel C zero: each line's pixels zeroed, then its channels' lanes filled.
    batch, channels, height, width = src.shape
    image, surface, line, pixel, atom = ov[0], ov[1], ov[2], ov[3], ov[4]
    blocks = (channels + atom - 1) // atom
    for job in numba.prange(batch * blocks * height):
        b = job // (blocks * height)
        cb = job // height % blocks
        h = job % height
        at = b * image + cb * surface + h * line
        for w in range(width):
            dst = out[at + w * pixel : at + w * pixel + atom]
            for a in range(atom):
                dst[a] = 0
        for a in range(min(atom, channels - cb * atom)):
            row = src[b, cb * atom + a, h]
            dst = out[at + a : at + a + (width - 1) * pixel + 1]
            for w in range(width):
                dst[w * pixel] = row[w]


def to_surface(src: np.ndarray, out: np.ndarray) -> None:
    """The planar INT8 cube ``src`` [B, C, H, W] into the surface view ``out`` [B, C/a, H, W, a]
    (the lanes past C zero; the gaps between pixels, lines and surfaces as they were)."""
    kernel = _COMPILED.get("to_surface")
    if kernel is None:
        signature = "void(int8[:, :, :, :], int8[::1], int64[::1])"
        kernel = _COMPILED["to_surface"] = numba.njit(signature, cache=True,
                                                      parallel=True)(_to_surface)  # fmt: skip
    kernel(src, *_flat(out))


# ---------------------------------------------------------------- convolution + SDP, fused
#
# One output row per job. Its input rows are staged channels-last (padding included), so every
# inner loop runs over contiguous memory; the sums of a block of output pixels go into a flat
# [pixels, K] int64 buffer held in the first-level cache, the SDP chain runs over that block
# stage by stage (each stage one loop without branches on the data, its flags tested once per
# block, so the compiler vectorises it), then INT8 goes straight into the destination surface.
# Sums are exact (the decoder bounds them below 2**33). Surfaces arrive flat (``_flat``): their
# bytes from the cube's first element and the strides of image, surface, line and pixel.

BLOCK = 2048  # int64 elements of a chain block: 16 KiB


_MIN, _MAX = np.int64(-(1 << 63)), np.int64((1 << 63) - 1)


@jit
def _rounding(shift, in_bits):
    """(shift, half, sign mask, keep mask) that make ``_srr`` ``srr``."""
    if shift >= in_bits:
        return np.int64(0), np.int64(0), np.int64(0), np.int64(0)
    if shift <= 0:
        return np.int64(0), np.int64(0), np.int64(0), np.int64(-1)
    return np.int64(shift), np.int64(1) << (shift - 1), np.int64(-1), np.int64(-1)


@jit
def _srr(x, shift, half, sign, keep, lim):
    # srr without a branch: round half away from zero is floor((x + half - [x < 0]) / 2^shift)
    # ((x >> 63) is -[x < 0]); a shift past the input's width gives 0 (keep mask 0).
    r = (x + half + ((x >> 63) & sign)) >> shift
    return min(max(r, -lim), lim - 1) & keep


@jit
def _unit_rows(cfg, chan):
    """The X units and the Y unit as per-channel rows int64 [3, 4, C]: ALU as
    ``min(max(x, low), high) + add`` (neutral where bypassed) and the multiplier (1 where
    bypassed: the truncate then sees the same value); Y's row 3 is its per-channel ALU
    operand."""
    channels = chan.shape[1]
    rows = np.empty((3, 4, channels), dtype=np.int64)
    for unit in range(3):
        rows[unit, 0, :] = _MIN
        rows[unit, 1, :] = _MAX
        rows[unit, 2, :] = 0
        rows[unit, 3, :] = 1
    for unit in range(2):
        at = 1 + 6 * unit
        if cfg[at]:
            alu = cfg[at + 1]
            if alu == 1:
                rows[unit, 2, :] = chan[2 * unit]
            elif alu == 2:
                rows[unit, 0, :] = chan[2 * unit]
            elif alu == 3:
                rows[unit, 1, :] = chan[2 * unit]
            if cfg[at + 2]:
                rows[unit, 3, :] = chan[2 * unit + 1]
    if cfg[13] and cfg[14]:
        rows[2, 3, :] = chan[4]
    rows[2, 2, :] = chan[5]
    return rows


@jit
def _x_block(v, n, k, c0, rows, cfg, at):
    # One X unit (flags at cfg[at:at + 6]) on v[:n, :k] in one loop: ALU, MUL, truncate,
    # PReLU (non-negative inputs pass unchanged, unsaturated), ReLU.
    # slices from c0: indices inside the loop are the loop's own, so the compiler sees they
    # are not negative (numba wraps negative indices, which keeps a loop from vectorising)
    low, high, add, mul = rows[0, c0:], rows[1, c0:], rows[2, c0:], rows[3, c0:]
    shift, half, sign, keep = _rounding(cfg[at + 3], 49)
    prelu = -np.int64(cfg[at + 2] != 0 and cfg[at + 4] != 0)
    lim = np.int64(1) << 31
    floor = np.int64(0) if cfg[at + 5] else -lim  # the results are 32-bit
    for p in range(n):
        for i in range(k):
            x = min(max(v[p, i], low[i]), high[i]) + add[i]
            y = _srr(x * mul[i], shift, half, sign, keep, lim)
            m = prelu & ~(x >> 63)
            v[p, i] = max((x & m) | (y & ~m), floor)


@jit
def _chain_block(v, e, n, k, c0, cfg, rows, q):
    """The chain of ``_chain`` on ``v[:n, :k]`` (channels c0..c0+k-1 of ``n`` output pixels,
    the CACC truncate already done), INT8 into ``q[:n, :k]``; ``e`` holds the per-element Y
    operands when the chain takes them. Each unit one loop over the block."""
    lim = np.int64(1) << 31
    if cfg[1]:
        _x_block(v, n, k, c0, rows[0], cfg, 1)
    if cfg[7]:
        _x_block(v, n, k, c0, rows[1], cfg, 7)
    if cfg[13]:
        mul, ops = rows[2, 3, c0:], rows[2, 2, c0:]
        shift, half, sign, keep = _rounding(cfg[15] if cfg[14] else 0, 64)
        prelu = -np.int64(cfg[14] != 0 and cfg[16] != 0)
        # the ALU as masks: SUM adds (and saturates), MAX and MIN clamp, else all neutral
        alu = cfg[17]
        take, mx, mn = -np.int64(alu == 1), -np.int64(alu == 2), -np.int64(alu == 3)
        per_element = alu != 0 and cfg[18] != 0
        # the per-element operand: the E-RDMA cube through its converter (neutral when off)
        cvt = cfg[19] != 0
        ce, ch, cs, ck = _rounding(cfg[22] if cvt else 0, 49)
        offset, scale = (cfg[20], cfg[21]) if cvt else (np.int64(0), np.int64(1))
        for p in range(n):
            for i in range(k):
                x = v[p, i]
                y = _srr(x * mul[i], shift, half, sign, keep, lim)
                m = prelu & ~(x >> 63)
                x = (x & m) | (y & ~m)
                if per_element:
                    op = _srr((np.int64(e[p, i]) - offset) * scale, ce, ch, cs, ck, lim)
                else:
                    op = ops[i]
                x = min(max(x + (op & take), -lim), lim - 1)
                x = max(x, (op & mx) | (_MIN & ~mx))
                v[p, i] = min(x, (op & mn) | (_MAX & ~mn))
    offset, scale = cfg[23], cfg[24]
    shift, half, sign, keep = _rounding(cfg[25], 49)
    for p in range(n):
        for i in range(k):
            q[p, i] = np.int8(_srr((v[p, i] - offset) * scale, shift, half, sign, keep, 128))


@jit
def _cacc_block(sums, n, k, shift, v):
    """v[:n, :k] = the CACC truncate of the sums (any numeric type): sat32 for shift 0, else
    floor + the guide bit, rounded up when non-negative or any of the 15 bits below the guide
    (the RTL's kept fraction) is set."""
    lim = np.int64(1) << 31
    if shift <= 0:
        for p in range(n):
            for i in range(k):
                v[p, i] = min(max(np.int64(sums[p, i]), -lim), lim - 1)
        return
    lo = max(shift - 16, 0)
    width = shift - 1 - lo
    mask = (np.int64(1) << width) - 1 if width > 0 else np.int64(0)
    gs = shift - 1
    for p in range(n):
        for i in range(k):
            a = np.int64(sums[p, i])
            sticky = np.int64(((a >> lo) & mask) != 0)
            up = (a >> gs) & 1 & (np.int64(a >= 0) | sticky)
            v[p, i] = min(max((a >> shift) + up, -lim), lim - 1)


@jit
def _get_block(src, sv, b, oh, ow0, n, k, c0, dst):
    # dst[:n, :k] = channels c0.. of pixels (oh, ow0..ow0+n-1) of image b of a flat INT8 surface
    # (strides as local scalars: a store could otherwise alias them and reload them)
    image, surface, line, pixel, atom = sv[0], sv[1], sv[2], sv[3], sv[4]
    for p in range(n):
        base = b * image + oh * line + (ow0 + p) * pixel
        i = 0
        while i < k:
            cb, lane = (c0 + i) // atom, (c0 + i) % atom
            run = min(atom - lane, k - i)
            at = base + cb * surface + lane
            part, into = src[at : at + run], dst[p, i : i + run]
            for j in range(run):
                into[j] = part[j]
            i += run


@jit
def _put_block(q, n, k, c0, out, ov, b, oh, ow0):
    # q[:n, :k] (INT8) into channels c0.. of pixels (oh, ow0..) of image b of a flat surface
    image, surface, line, pixel, atom = ov[0], ov[1], ov[2], ov[3], ov[4]
    for p in range(n):
        base = b * image + oh * line + (ow0 + p) * pixel
        i = 0
        while i < k:
            cb, lane = (c0 + i) // atom, (c0 + i) % atom
            run = min(atom - lane, k - i)
            at = base + cb * surface + lane
            part, into = q[p, i : i + run], out[at : at + run]
            for j in range(run):
                into[j] = part[j]
            i += run


@jit
def _stage_rows(x, xv, b, ih0, dy, rows, iw0, span, channels, pad, staged):
    # staged[r, j, c] = channel c of input pixel (ih0 + r * dy, iw0 + j) of image b, or ``pad``
    # outside the input: the rows a job's taps read, channels-last.
    image, surface, line, pixel, atom = xv[0], xv[1], xv[2], xv[3], xv[4]
    height, width = xv[6], xv[7]
    for r in range(rows):
        ih = ih0 + r * dy
        for j in range(span):
            iw = iw0 + j
            if ih < 0 or ih >= height or iw < 0 or iw >= width:
                for c in range(channels):
                    staged[r, j, c] = pad
                continue
            base = b * image + ih * line + iw * pixel
            for c0 in range(0, channels, atom):
                at = base + (c0 // atom) * surface
                run = min(atom, channels - c0)
                part, into = x[at : at + run], staged[r, j, c0 : c0 + run]
                for i in range(run):
                    into[i] = part[i]


# Jobs (output rows) go to the threads in this many chunks, each with its own buffers.
CHUNKS = 64


def _conv_dense(x, xv, w, out, ov, ew, ev, geo, cfg, chan):
    # x, out, ew: flat surfaces (``_flat``); w [G, R, S, Cg, Kg] (float32, int32 or int64);
    # geo = (stride y, x, dilation y, x, pad top, left, pad value, groups). Four output pixels
    # at a time, so each weight row is read once for all four (a layer's weights rarely fit
    # the first-level cache).
    groups, taps_r, taps_s, cg, kg = w.shape
    batch, out_h, out_w = ov[5], ov[6], ov[7]
    sy, sx, dy, dx, top, left = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    pad = np.int8(geo[6])  # INT8 like the data: products keep the weights' type
    per_element = cfg[13] != 0 and cfg[17] != 0 and cfg[18] != 0
    rows = _unit_rows(cfg, chan)
    quads = (out_w + 3) // 4
    # staged input columns: those of four pixels per quad (the last quad's extra pixels read
    # zeros; their sums are dropped)
    span = (quads * 4 - 1) * sx + (taps_s - 1) * dx + 1
    real = (out_w - 1) * sx + (taps_s - 1) * dx + 1
    block = min(max(4, BLOCK // kg // 4 * 4), quads * 4)
    jobs = batch * out_h
    chunks = min(jobs, CHUNKS)
    for chunk in numba.prange(chunks):
        staged = np.zeros((taps_r, span, groups * cg), dtype=np.int8)
        sums = np.empty((block, kg), dtype=w.dtype)
        v = np.empty((block, kg), dtype=np.int64)
        q = np.empty((block, kg), dtype=np.int8)
        e = np.zeros((block, kg), dtype=np.int8)
        for job in range(chunk * jobs // chunks, (chunk + 1) * jobs // chunks):
            b = job // out_h
            oh = job % out_h
            _stage_rows(x, xv, b, oh * sy - top, dy, taps_r, -left, real, groups * cg, pad,
                        staged)  # fmt: skip
            for g in range(groups):
                c0 = g * kg
                for p0 in range(0, out_w, block):
                    n = min(block, out_w - p0)
                    sums[:, :] = 0
                    for q0 in range(0, n, 4):
                        s0, s1, s2, s3 = sums[q0], sums[q0 + 1], sums[q0 + 2], sums[q0 + 3]
                        for r in range(taps_r):
                            for s in range(taps_s):
                                j0 = (p0 + q0) * sx + s * dx
                                t0 = staged[r, j0, g * cg :]
                                t1 = staged[r, j0 + sx, g * cg :]
                                t2 = staged[r, j0 + 2 * sx, g * cg :]
                                t3 = staged[r, j0 + 3 * sx, g * cg :]
                                weights = w[g, r, s]
                                for ci in range(cg):
                                    x0, x1, x2, x3 = t0[ci], t1[ci], t2[ci], t3[ci]
                                    if x0 != 0 or x1 != 0 or x2 != 0 or x3 != 0:
                                        for k in range(kg):
                                            wk = weights[ci, k]
                                            s0[k] += x0 * wk
                                            s1[k] += x1 * wk
                                            s2[k] += x2 * wk
                                            s3[k] += x3 * wk
                    _cacc_block(sums, n, kg, cfg[0], v)
                    if per_element:
                        _get_block(ew, ev, b, oh, p0, n, kg, c0, e)
                    _chain_block(v, e, n, kg, c0, cfg, rows, q)
                    _put_block(q, n, kg, c0, out, ov, b, oh, p0)


def _conv_depthwise_for(flags: tuple, narrow: tuple):
    """The depthwise convolution and the chain of structure ``flags`` (``chain_structure``),
    its multiplications ``narrow`` (``narrow_muls``)."""

    def conv_depthwise(x, xv, w, out, ov, ew, ev, geo, cfg, chan):
        # One kernel per channel: each tap one loop over all channels of the staged rows.
        # x, out, ew: flat surfaces (``_flat``); w [C/a, R, S, a] (float32, int32 or int64).
        blocks, taps_r, taps_s, atom = w.shape
        channels = blocks * atom
        batch, out_h, out_w = ov[5], ov[6], ov[7]
        sy, sx, dy, dx, top, left = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
        pad = np.int8(geo[6])
        a1, m1, a2, m2, my, ay = chan[0], chan[1], chan[2], chan[3], chan[4], chan[5]
        image, surface, line, pixel = ov[0], ov[1], ov[2], ov[3]
        e_image, e_surface, e_line, e_pixel = ev[0], ev[1], ev[2], ev[3]
        span = (out_w - 1) * sx + (taps_s - 1) * dx + 1
        block = min(max(1, BLOCK // channels), out_w)
        taps = np.empty((taps_r, taps_s, channels), dtype=w.dtype)
        for cb in range(blocks):
            for r in range(taps_r):
                for s in range(taps_s):
                    for i in range(atom):
                        taps[r, s, cb * atom + i] = w[cb, r, s, i]
        jobs = batch * out_h
        chunks = min(jobs, CHUNKS)
        # Staged rows in a ring: the next output row of a chunk reuses the rows it shares with
        # this one (each input row is staged once per chunk, not once per tap row).
        ring = (taps_r - 1) * dy + 1
        for chunk in numba.prange(chunks):
            staged = np.empty((ring, span, channels), dtype=np.int8)
            held_b = np.full(ring, -1, dtype=np.int64)  # the image and row each slot holds
            held_h = np.zeros(ring, dtype=np.int64)
            slots = np.empty(taps_r, dtype=np.int64)
            sums = np.empty((block, channels), dtype=w.dtype)
            q = np.empty(channels, dtype=np.int8)
            e = np.zeros(channels, dtype=np.int8)
            scalars = _chain_scalars(cfg)
            for job in range(chunk * jobs // chunks, (chunk + 1) * jobs // chunks):
                b = job // out_h
                oh = job % out_h
                for r in range(taps_r):
                    ih = oh * sy - top + r * dy
                    slot = ih % ring
                    if held_b[slot] != b or held_h[slot] != ih:
                        _stage_rows(x, xv, b, ih, dy, 1, -left, span, channels, pad,
                                    staged[slot : slot + 1])  # fmt: skip
                        held_b[slot], held_h[slot] = b, ih
                    slots[r] = slot
                for p0 in range(0, out_w, block):
                    n = min(block, out_w - p0)
                    if taps_r == 3 and taps_s == 3:
                        # the nine taps of a pixel in one loop: its sums stay in registers
                        t00, t01, t02 = taps[0, 0], taps[0, 1], taps[0, 2]
                        t10, t11, t12 = taps[1, 0], taps[1, 1], taps[1, 2]
                        t20, t21, t22 = taps[2, 0], taps[2, 1], taps[2, 2]
                        for p in range(n):
                            acc = sums[p]
                            j = (p0 + p) * sx
                            r0, r1, r2 = staged[slots[0]], staged[slots[1]], staged[slots[2]]
                            a0, a1_, a2_ = r0[j], r0[j + dx], r0[j + 2 * dx]
                            b0, b1, b2 = r1[j], r1[j + dx], r1[j + 2 * dx]
                            c0_, c1, c2 = r2[j], r2[j + dx], r2[j + 2 * dx]
                            for c in range(channels):
                                acc[c] = (
                                    a0[c] * t00[c] + a1_[c] * t01[c] + a2_[c] * t02[c]
                                    + b0[c] * t10[c] + b1[c] * t11[c] + b2[c] * t12[c]
                                    + c0_[c] * t20[c] + c1[c] * t21[c] + c2[c] * t22[c]
                                )  # fmt: skip
                    else:
                        sums[:, :] = 0
                        for p in range(n):
                            acc = sums[p]
                            for r in range(taps_r):
                                for s in range(taps_s):
                                    row = staged[slots[r], (p0 + p) * sx + s * dx]
                                    tap = taps[r, s]
                                    for c in range(channels):
                                        acc[c] += row[c] * tap[c]
                    for p in range(n):
                        ow = p0 + p
                        if flags[18]:  # per-element Y operands
                            _get_run(ew, b * e_image + oh * e_line + ow * e_pixel, e_surface,
                                     ev[4], 0, e)  # fmt: skip
                        _pixel_chain(sums, p, channels, q, e, a1, m1, a2, m2, my, ay, scalars,
                                     flags, narrow)  # fmt: skip
                        _put_run(q, out, b * image + oh * line + ow * pixel, surface, ov[4], 0)

    return conv_depthwise


def _patches(x, xv, geo, taps_r, taps_s, c0, cg, out_w, j0, patches):
    # patches[t * out_w + ow, (r * S + s) * cg + ci]: channel c0 + ci of the input pixel tap
    # (r, s) of output pixel (oh, ow) of image b reads, or the pad value, for output rows
    # j0 + t = b * out_h + oh; further columns are left as they are (zero).
    image, surface, line, pixel, atom = xv[0], xv[1], xv[2], xv[3], xv[4]
    height, width = xv[6], xv[7]
    sy, sx, dy, dx, top, left = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    pad = np.int8(geo[6])
    out_h = geo[8]
    for t in numba.prange(patches.shape[0] // out_w):
        b = (j0 + t) // out_h
        oh = (j0 + t) % out_h
        for ow in range(out_w):
            dst = patches[t * out_w + ow]
            for r in range(taps_r):
                ih = oh * sy + r * dy - top
                for s in range(taps_s):
                    iw = ow * sx + s * dx - left
                    into = dst[(r * taps_s + s) * cg : (r * taps_s + s + 1) * cg]
                    if ih < 0 or ih >= height or iw < 0 or iw >= width:
                        for i in range(cg):
                            into[i] = pad
                        continue
                    base = b * image + ih * line + iw * pixel
                    i = 0
                    while i < cg:
                        cb, lane = (c0 + i) // atom, (c0 + i) % atom
                        run = min(atom - lane, cg - i)
                        at = base + cb * surface + lane
                        part, seg = x[at : at + run], into[i : i + run]
                        for j in range(run):
                            seg[j] = part[j]
                        i += run


@numba.njit(inline="always")
def _get_run(src, base, surface, atom, c0, dst):
    # dst[:] = channels c0.. of the pixel at ``base`` of a flat INT8 surface. Inlined, flat
    # indices, runs of lanes counted on: a call, a slice (a reference count) or a division per
    # run cost more than the copy (measured).
    k = dst.shape[0]
    at = base + (c0 // atom) * surface + c0 % atom
    run = atom - c0 % atom
    i = 0
    while i < k:
        run = min(run, k - i)
        part, into = src[at : at + run], dst[i : i + run]
        for j in range(run):
            into[j] = part[j]
        i += run
        at += surface - atom + run
        run = atom


@numba.njit(inline="always")
def _put_run(q, out, base, surface, atom, c0):
    # q (INT8) into channels c0.. of the pixel at ``base`` of a flat surface (as _get_run)
    k = q.shape[0]
    at = base + (c0 // atom) * surface + c0 % atom
    run = atom - c0 % atom
    i = 0
    while i < k:
        run = min(run, k - i)
        part, into = q[i : i + run], out[at : at + run]
        for j in range(run):
            into[j] = part[j]
        i += run
        at += surface - atom + run
        run = atom


_WIDE = (False, False, False)  # every multiplication of the chain in 64 bits
_INT32 = (-(1 << 31), (1 << 31) - 1)


def narrow_muls(flags: tuple, cfg: np.ndarray, chan: np.ndarray, lo: int, hi: int) -> tuple:
    """Which of the chain's MULs (X1, X2, Y) see only values and operands within int32, for
    accumulator sums within [lo, hi] and the chain ``cfg`` of structure ``flags``
    (``chain_structure``): each value's range followed through the stages, loosely (operand
    rows of ``chan`` as ``SdpParams.packed`` lays them out)."""

    def fits(a: int, b: int) -> bool:
        return _INT32[0] <= a and b <= _INT32[1]

    def span(row: np.ndarray) -> tuple[int, int]:
        return (int(row.min()), int(row.max())) if row.size else (0, 0)

    def saturate(a: int, b: int) -> tuple[int, int]:
        return min(max(a, _INT32[0]), _INT32[1]), min(max(b, _INT32[0]), _INT32[1])

    def rounded(a: int, b: int, shift: int) -> tuple[int, int]:
        # a right shift that rounds (either way) gives floor(x / 2**shift) or one more; a
        # shift past the width gives 0
        if shift <= 0:
            return a, b
        return min(a >> shift, 0), max((b >> shift) + 1, 0)

    if flags[0]:
        lo, hi = saturate(*rounded(lo, hi, int(cfg[0])))
    narrow = []
    for at, shift, a, m in (
        (2, int(cfg[4]), chan[0], chan[1]),
        (8, int(cfg[10]), chan[2], chan[3]),
    ):
        on, alu, mul, prelu, relu = flags[at : at + 5]
        if not on:
            narrow.append(False)
            continue
        a_lo, a_hi = span(a)
        if alu == 1:
            lo, hi = lo + a_lo, hi + a_hi
        elif alu == 2:
            lo, hi = max(lo, a_lo), max(hi, a_hi)
        elif alu == 3:
            lo, hi = min(lo, a_lo), min(hi, a_hi)
        x_hi = hi
        if mul:
            m_lo, m_hi = span(m)
            narrow.append(fits(lo, hi) and fits(m_lo, m_hi))
            ends = [lo * m_lo, lo * m_hi, hi * m_lo, hi * m_hi]
            lo, hi = min(ends), max(ends)
        else:
            narrow.append(False)
        lo, hi = saturate(*rounded(lo, hi, shift))
        if mul and prelu:  # non-negative inputs pass unchanged, unsaturated
            lo, hi = min(lo, 0), max(hi, x_hi, 0)
        if relu:
            lo, hi = max(lo, 0), max(hi, 0)
    narrow.append(bool(flags[15]) and fits(lo, hi) and fits(*span(chan[4])))
    return tuple(narrow)


_NARROW: dict[tuple[int, int], tuple] = {}  # (id(w), id(chan)) -> (w, chan, cfg, its narrow)


def _narrow(w, cfg: np.ndarray, chan: np.ndarray, weight_sum) -> tuple:
    """``narrow_muls`` of a layer of weights ``w``: its sums are within 128 times the largest
    sum of a kernel's absolute weights, ``weight_sum()`` (INT8 inputs); kept per weights and
    operands (a program runs the same operations again)."""
    held = _NARROW.get((id(w), id(chan)))
    if held is not None and held[0] is w and held[1] is chan and held[2] is cfg:
        return held[3]
    bound = 128 * int(weight_sum())
    narrow = narrow_muls(_structure(cfg), cfg, chan, -bound, bound)
    if len(_NARROW) > 512:
        _NARROW.clear()
    _NARROW[(id(w), id(chan))] = (w, chan, cfg, narrow)
    return narrow


def chain_structure(cfg: np.ndarray) -> tuple:
    """What a chain's compiled loop specialises on: which units and stages run, and which
    shifts are 0 (the rounding then only saturates), and whether C multiplies (offset 0 and
    scale 1: it does not) or rounds. A stage left out would have left the value as it was, so
    one loop per structure computes what ``_chain`` does in far fewer operations (int64 lanes
    are four to a vector register: each operation counts)."""
    c = [int(v) for v in cfg]

    def unit(at: int) -> tuple:
        on = c[at] != 0
        mul = on and c[at + 2] != 0
        return (on, c[at + 1] if on else 0, mul, mul and c[at + 4] != 0, on and c[at + 5] != 0,
                on and c[at + 3] == 0)  # fmt: skip

    y = c[13] != 0
    y_mul = y and c[14] != 0
    y_alu = c[17] if y else 0
    per_element = y_alu != 0 and c[18] != 0
    cvt = per_element and c[19] != 0
    return (
        c[0] >= 0,
        c[0] == 0,
        *unit(1),
        *unit(7),
        y,
        y_mul,
        y_mul and c[16] != 0,
        y_alu,
        per_element,
        cvt,
        cvt and c[22] == 0,
        (c[23], c[24]) == (0, 1),
        c[25] == 0,
    )


@numba.njit(inline="always")
def _mul(x, m, narrow):
    # int64 x int64, or where both fit 32 bits (``narrow``) said so to the compiler: it then
    # multiplies 32 x 32 -> 64 bits (one instruction; a 64-bit product vector takes three)
    if narrow:
        return np.int64(np.int32(x)) * np.int64(np.int32(m))
    return x * m


@numba.njit(inline="always")
def _x_stage(x, op, mul, shift, half, sign, keep, alu, mul_on, prelu, relu, plain, narrow):
    # ``x_unit`` with its flags compile-time constants: ALU, MUL, truncate (``plain``: shift 0,
    # only the 32-bit saturation), PReLU (non-negative inputs pass unchanged, unsaturated), ReLU;
    # ``narrow``: the MUL's operands are known to fit 32 bits (``narrow_muls``)
    lim = np.int64(1) << 31
    if alu == 1:
        x = x + op
    elif alu == 2:
        x = max(x, op)
    elif alu == 3:
        x = min(x, op)
    y = _mul(x, mul, narrow) if mul_on else x
    y = min(max(y, -lim), lim - 1) if plain else _srr(y, shift, half, sign, keep, lim)
    if mul_on and prelu:
        m = ~(x >> 63)
        y = (x & m) | (y & ~m)
    if relu:
        y = max(y, np.int64(0))
    return y


@numba.njit(inline="always")
def _chain_scalars(cfg):
    """The chain's scalars as the stages of ``_pixel_chain_for`` take them."""
    shift = max(cfg[0], 0)
    lo = max(shift - 16, 0)
    width = shift - 1 - lo
    sticky = (np.int64(1) << width) - 1 if width > 0 else np.int64(0)
    cacc = (shift, lo, sticky, max(shift - 1, 0))
    return (cacc, _rounding(cfg[4], 49), _rounding(cfg[10], 49), _rounding(cfg[15], 64),
            _rounding(cfg[22], 49), (cfg[20], cfg[21], cfg[23], cfg[24]),
            _rounding(cfg[25], 49))  # fmt: skip


@numba.njit(inline="always")
def _pixel_chain(sums, row, k, q, elem, a1, m1, a2, m2, my, ay, scalars, flags, narrow):
    """The chain of ``_chain`` on one pixel's sums ``sums[row, :k]`` (channels of the operand
    rows a1..ay), INT8 into ``q[:k]``, ``elem`` the per-element Y operands: one loop over the
    channels, inlined into a caller whose ``flags`` (``chain_structure``) and ``narrow``
    (``narrow_muls``) are constants, so only their stages remain."""
    (cacc_on, cacc_plain, x1, x1_alu, x1_mul, x1_prelu, x1_relu, x1_plain, x2, x2_alu, x2_mul,
     x2_prelu, x2_relu, x2_plain, y, y_mul, y_prelu, y_alu, y_elem, y_cvt, cvt_plain,
     c_unscaled, c_plain) = flags  # fmt: skip
    lim = np.int64(1) << 31
    (shift, lo, sticky_mask, guide), r1, r2, ry, re, (e_offset, e_scale, offset, scale), \
        ro = scalars  # fmt: skip
    for j in range(k):
        x = np.int64(sums[row, j])
        if cacc_on:
            if not cacc_plain:
                sticky = np.int64(((x >> lo) & sticky_mask) != 0)
                x = (x >> shift) + ((x >> guide) & 1 & (np.int64(x >= 0) | sticky))
            x = min(max(x, -lim), lim - 1)
        if x1:
            x = _x_stage(x, a1[j], m1[j], r1[0], r1[1], r1[2], r1[3], x1_alu, x1_mul,
                         x1_prelu, x1_relu, x1_plain, narrow[0])  # fmt: skip
        if x2:
            x = _x_stage(x, a2[j], m2[j], r2[0], r2[1], r2[2], r2[3], x2_alu, x2_mul,
                         x2_prelu, x2_relu, x2_plain, narrow[1])  # fmt: skip
        if y:
            if y_mul:
                p = _srr(_mul(x, my[j], narrow[2]), ry[0], ry[1], ry[2], ry[3], lim)
                if y_prelu:
                    m = ~(x >> 63)
                    p = (x & m) | (p & ~m)
                x = p
            if y_alu:
                if y_elem:
                    op = np.int64(elem[j])
                    if y_cvt:
                        op = (op - e_offset) * e_scale
                        if cvt_plain:
                            op = min(max(op, -lim), lim - 1)
                        else:
                            op = _srr(op, re[0], re[1], re[2], re[3], lim)
                else:
                    op = ay[j]
                if y_alu == 1:
                    x = min(max(x + op, -lim), lim - 1)
                elif y_alu == 2:
                    x = max(x, op)
                else:
                    x = min(x, op)
        if not c_unscaled:
            x = (x - offset) * scale
        if c_plain:
            q[j] = np.int8(min(max(x, np.int64(-128)), np.int64(127)))
        else:
            q[j] = np.int8(_srr(x, ro[0], ro[1], ro[2], ro[3], 128))


def _chain_rows_for(flags: tuple, narrow: tuple):
    """The chain on the sums [t * out_w + ow, k] of output rows j0 + t = b * out_h + oh,
    channels c0.., INT8 into the flat surface ``out``: each sum read once, each INT8 result
    written once; its multiplications ``narrow`` (``narrow_muls``)."""

    def chain_rows(sums, j0, out_w, out_h, c0, cfg, chan, out, ov, ew, ev):
        k = sums.shape[1]
        image, surface, line, pixel_stride, atom = ov[0], ov[1], ov[2], ov[3], ov[4]
        e_image, e_surface, e_line, e_pixel = ev[0], ev[1], ev[2], ev[3]
        a1, m1, a2, m2 = chan[0, c0 : c0 + k], chan[1, c0 : c0 + k], chan[2, c0 : c0 + k], \
            chan[3, c0 : c0 + k]  # fmt: skip
        my, ay = chan[4, c0 : c0 + k], chan[5, c0 : c0 + k]
        for t in numba.prange(sums.shape[0] // out_w):
            b = (j0 + t) // out_h
            oh = (j0 + t) % out_h
            # a pixel's channels in one loop (runs of an atom's lanes are too short for the
            # vector loop's set-up), INT8 into q, then q's runs of lanes into the surface
            q = np.empty(k, dtype=np.int8)
            elem = np.zeros(k, dtype=np.int8)
            scalars = _chain_scalars(cfg)  # here: a parallel loop takes no tuples from outside
            for ow in range(out_w):
                if flags[18]:  # per-element Y operands
                    _get_run(ew, b * e_image + oh * e_line + ow * e_pixel, e_surface, atom, c0,
                             elem)  # fmt: skip
                _pixel_chain(sums, t * out_w + ow, k, q, elem, a1, m1, a2, m2, my, ay, scalars,
                             flags, narrow)  # fmt: skip
                _put_run(q, out, b * image + oh * line + ow * pixel_stride, surface, atom, c0)

    return chain_rows


_FLAT = "int8[::1], int64[::1]"
_PATCHES_SIGNATURE = f"void({_FLAT}, int64[::1], {', '.join(['int64'] * 6)}, int8[:, ::1])"
_CHAIN_ROWS_SIGNATURE = (
    f"void(int32[:, ::1], {', '.join(['int64'] * 4)}, int64[::1], int64[:, ::1], {_FLAT}, {_FLAT})"
)
_GEMM_KERNELS = {"patches": (_patches, _PATCHES_SIGNATURE)}


def _serial(function, signature: str):
    """``function`` compiled (cached) to run on the calling thread, the GIL released, under a
    name of its own: numba's cache keys an entry by the function and the signature, not by
    ``parallel``, so a parallel and a serial compilation of one function would share it."""
    twin = types.FunctionType(function.__code__, function.__globals__,
                              function.__name__ + "_serial", None,
                              function.__closure__)  # fmt: skip
    twin.__qualname__ = function.__qualname__ + "_serial"
    return numba.njit(signature, cache=True, nogil=True)(twin)


def _gemm_kernel(name: str):
    kernel = _COMPILED.get(name)
    if kernel is None:
        function, signature = _GEMM_KERNELS[name]
        kernel = _COMPILED[name] = _serial(function, signature)
    return kernel


# One compiled chain per structure (a handful per model), each compiled or loaded from the
# cache the first time a GEMM's sums need it: closures over their flags, which the cache keys.
_CHAINED: dict[tuple, object] = {}
_STRUCTURES: dict[int, tuple[np.ndarray, tuple]] = {}  # id(cfg) -> (cfg, its structure)


def _structure(cfg: np.ndarray) -> tuple:
    held = _STRUCTURES.get(id(cfg))
    if held is None or held[0] is not cfg:
        if len(_STRUCTURES) > 4096:
            _STRUCTURES.clear()
        held = _STRUCTURES[id(cfg)] = (cfg, chain_structure(cfg))
    return held[1]


def _chain_rows_kernel(cfg: np.ndarray, narrow: tuple = _WIDE):
    """The chain on a GEMM's sums for ``cfg``'s structure, on the calling thread."""
    key = ("chain_rows", _structure(cfg), narrow)
    kernel = _CHAINED.get(key)
    if kernel is None:
        function = _chain_rows_for(key[1], narrow)
        kernel = _CHAINED[key] = _serial(function, _CHAIN_ROWS_SIGNATURE)
    return kernel


def chain_rows(sums, j0, out_w, out_h, c0, cfg, chan, out, ov, ew, ev) -> None:
    _chain_rows_kernel(cfg)(sums, j0, out_w, out_h, c0, cfg, chan, out, ov, ew, ev)


# Patches and sums of one chunk of output rows: about half the L2 cache, so that the GEMM reads
# the patches and the chain the sums from it (sums through memory took twice as long).
CHUNK_BYTES = 1 << 20
_INT8_WEIGHTS: dict[int, tuple[np.ndarray, torch.Tensor]] = {}
_BUFFERS: list[tuple[np.ndarray, torch.Tensor]] = []  # per worker: patches, sums
_HELPERS: list[ThreadPoolExecutor] = []


def _int8_weights(w: np.ndarray) -> torch.Tensor | None:
    """The dense weights [G, R, S, Cg, Kg] as INT8 [G, R * S * Cg, Kg], or None where one
    is outside INT8 or this machine's INT8 matrix product is not exact (kept per weights
    array: a program runs the same operations again)."""
    if not int8_matmul_exact():
        return None
    held = _INT8_WEIGHTS.get(id(w))
    if held is not None and held[0] is w:
        return held[1]
    if w.size and (w.min() < -128 or w.max() > 127):
        return None
    groups, r, s, cg, kg = w.shape
    w8 = torch.from_numpy(np.ascontiguousarray(w.reshape(groups, r * s * cg, kg).astype(np.int8)))
    if len(_INT8_WEIGHTS) > 512:
        _INT8_WEIGHTS.clear()
    _INT8_WEIGHTS[id(w)] = (w, w8)
    return w8


def _buffers(worker: int, patch_bytes: int, sum_words: int) -> tuple[np.ndarray, torch.Tensor]:
    """Worker ``worker``'s patch and sum buffers, at least as large as asked (kept: one
    allocation per worker, not one per operation)."""
    while len(_BUFFERS) <= worker:
        _BUFFERS.append((np.zeros(0, dtype=np.int8), torch.empty(0, dtype=torch.int32)))
    patches, sums = _BUFFERS[worker]
    if patches.size < patch_bytes or sums.numel() < sum_words:
        patches = np.zeros(max(patch_bytes, patches.size), dtype=np.int8)
        sums = torch.empty(max(sum_words, sums.numel()), dtype=torch.int32)
        _BUFFERS[worker] = (patches, sums)
    return patches, sums


def _in_threads(chunks: int, work) -> None:
    """``work(worker, next_chunk)`` in torch.get_num_threads() Python threads (the compiled
    kernels and torch release the GIL), torch at one thread meanwhile; ``next_chunk()`` hands
    out 0 .. chunks - 1, then ``chunks``."""
    threads = torch.get_num_threads()
    workers = max(1, min(threads, chunks))
    order = itertools.count()
    handout = lambda: min(next(order), chunks)  # noqa: E731
    if workers == 1:
        work(0, handout)
        return
    if not _HELPERS or _HELPERS[0]._max_workers < workers - 1:
        _HELPERS[:] = [ThreadPoolExecutor(workers - 1, "dlakit-gemm")]
    torch.set_num_threads(1)
    try:
        helpers = [_HELPERS[0].submit(work, w, handout) for w in range(1, workers)]
        work(0, handout)
        for helper in helpers:
            helper.result()
    finally:
        torch.set_num_threads(threads)


def _conv_gemm(x, w8, w_shape, out, ew, geo, cfg, chan) -> None:
    """The dense convolution as GEMMs of INT8 patches of output rows by the INT8 weights
    (torch._int_mm: int32 sums, exact below 2**31, which the decoder's bound guarantees for
    weights summed in float32 or int32), then the chain over each GEMM's sums: chunk after
    chunk of output rows in each of a few threads (``_in_threads``)."""
    groups, r, s, cg, kg = w_shape
    xf, xv = _flat(x)
    of, ov = _flat(out)
    ef, ev = _flat(ew)
    batch, out_h, out_w = int(ov[5]), int(ov[6]), int(ov[7])
    # sums of INT8 x INT8 products (the pad value too is INT8)
    narrow = _narrow(w8, cfg, chan, lambda: w8.to(torch.int64).abs().sum(dim=1).max())
    chain = _chain_rows_kernel(cfg, narrow)
    if _rows_are_patches(xv, w_shape, geo, out_h, out_w):
        # The input's rows of pixels are the patches: [pixels, atom] with the lanes past the
        # input channels multiplied by zero weights.
        atom = int(xv[4])
        w_atom = torch.zeros((atom, kg), dtype=torch.int8)
        w_atom[:cg] = w8[0]
        per = max(1, min(out_h, CHUNK_BYTES // (out_w * (atom + 4 * kg))))
        per_image = -(-out_h // per)
        image, line = int(xv[0]), int(xv[2])

        def rows_work(worker: int, next_chunk) -> None:
            sums = _buffers(worker, 0, per * out_w * kg)[1]
            while (chunk := next_chunk()) < batch * per_image:
                b, oh = chunk // per_image, chunk % per_image * per
                m = min(per, out_h - oh) * out_w
                at = b * image + oh * line
                rows = torch.from_numpy(xf[at : at + m * atom].reshape(m, atom))
                part = sums[: m * kg].view(m, kg)
                torch._int_mm(rows, w_atom, out=part)
                chain(part.numpy(), b * out_h + oh, out_w, out_h, 0, cfg, chan, of, ov, ef, ev)

        _in_threads(batch * per_image, rows_work)
        return
    cols = r * s * cg
    jobs = batch * out_h
    per = max(1, min(jobs, CHUNK_BYTES // (out_w * (cols + 4 * kg))))
    geo9 = np.array([*geo[:7], geo[7], out_h], dtype=np.int64)
    make = _gemm_kernel("patches")

    def patch_work(worker: int, next_chunk) -> None:
        patch_buffer, sums = _buffers(worker, per * out_w * cols, per * out_w * kg)
        patches = patch_buffer[: per * out_w * cols].reshape(per * out_w, cols)
        while (chunk := next_chunk()) < -(-jobs // per):
            j0 = chunk * per
            m = min(per, jobs - j0) * out_w
            part = sums[: m * kg].view(m, kg)
            for g in range(groups):
                make(xf, xv, geo9, r, s, g * cg, cg, out_w, j0, patches[:m])
                torch._int_mm(torch.from_numpy(patches[:m]), w8[g], out=part)
                chain(part.numpy(), j0, out_w, out_h, g * kg, cfg, chan, of, ov, ef, ev)

    _in_threads(-(-jobs // per), patch_work)


def _rows_are_patches(xv: np.ndarray, w_shape, geo: np.ndarray, out_h: int, out_w: int) -> bool:
    """Whether a dense convolution's patches are its input surface's rows as they lie: 1x1,
    stride 1, no padding, one group of at most one atom of channels, each output row as wide
    as the input's, pixels of a line and lines of the surface packed."""
    groups, r, s, cg, _ = w_shape
    atom, line, pixel, height, width = int(xv[4]), int(xv[2]), int(xv[3]), int(xv[6]), int(xv[7])
    return (
        (groups, r, s) == (1, 1, 1)
        and cg <= atom
        and tuple(geo[[0, 1, 4, 5]]) == (1, 1, 0, 0)
        and pixel == atom
        and line == width * atom
        and out_h <= height
        and out_w == width
    )


def _flat(cube: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An INT8 cube view [B, C/a, H, W, a] (lanes contiguous) as the flat bytes from its first
    element and int64 (image, surface, line, pixel strides, atom, B, H, W)."""
    batch, _, height, width, atom = cube.shape
    strides = cube.strides
    assert strides[4] == 1 and min(strides) >= 0, strides
    extent = 1 + sum((d - 1) * st for d, st in zip(cube.shape, strides, strict=True))
    flat = np.lib.stride_tricks.as_strided(cube, shape=(max(extent, 0),), strides=(1,))
    view = np.array([*strides[:4], atom, batch, height, width], dtype=np.int64)
    return flat, view


_CUBE = "int8[:, :, :, :, :]"


def _conv_signature(weights: str, dims: int) -> str:
    w = f"{weights}[{', '.join([':'] * (dims - 1))}, ::1]"
    flat = "int8[::1], int64[::1]"
    return f"void({flat}, {w}, {flat}, {flat}, int64[::1], int64[::1], int64[:, ::1])"


def _compiled_conv(name: str, function, w: np.ndarray):
    key = f"{name}_{w.dtype.name}"
    kernel = _COMPILED.get(key)
    if kernel is None:
        signature = _conv_signature(w.dtype.name, w.ndim)
        kernel = _COMPILED[key] = numba.njit(signature, cache=True, parallel=True)(function)
    return kernel


def _conv(name, function, x, w, out, ew, geo, cfg, chan) -> None:
    if x.size == 0 or out.size == 0:
        return
    _compiled_conv(name, function, w)(*_flat(x), w, *_flat(out), *_flat(ew), geo, cfg, chan)


# The weights' type is the sums' type: float32 where every partial sum stays below 2**24
# (exact, and twice the lanes), int32 below 2**31, else int64.
def conv_dense(x, w, out, ew, geo, cfg, chan) -> None:
    if x.size == 0 or out.size == 0:
        return
    w8 = None if w.dtype == np.int64 else _int8_weights(w)
    if w8 is not None:
        _conv_gemm(x, w8, w.shape, out, ew, geo, cfg, chan)
        return
    _conv("conv_dense", _conv_dense, x, w, out, ew, geo, cfg, chan)


def conv_depthwise(x, w, out, ew, geo, cfg, chan) -> None:
    if x.size == 0 or out.size == 0:
        return
    flags = _structure(cfg)
    narrow = _narrow(w, cfg, chan, lambda: np.abs(w.astype(np.int64)).sum(axis=(1, 2)).max())
    key = ("conv_depthwise", w.dtype.name, flags, narrow)
    kernel = _CHAINED.get(key)
    if kernel is None:
        signature = _conv_signature(w.dtype.name, w.ndim)
        function = _conv_depthwise_for(flags, narrow)
        kernel = _CHAINED[key] = numba.njit(signature, cache=True, parallel=True)(function)
    kernel(*_flat(x), w, *_flat(out), *_flat(ew), geo, cfg, chan)


# ---------------------------------------------------------------- PDP


def _pool(x, out, geo, pads, recip):
    # x [B, C/a, H, W, a] INT8 -> out [B, C/a, OH, OW, a] INT8, as replay.pool_cube: max/min of
    # the real elements, or the window sum + the padding terms ``pads`` [OH, OW], then the two
    # reciprocal stages. geo = (method 0 max / 1 min / 2 average, kernel h, w, stride h, w,
    # pad top, left).
    batch, blocks, height, width, atom = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    method, kh, kw, sh, sw, top, left = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6]
    half = np.int64(1) << 15
    for job in numba.prange(batch * blocks):
        b = job // blocks
        cb = job % blocks
        acc = np.empty(atom, dtype=np.int64)
        for oh in range(out_h):
            for ow in range(out_w):
                for i in range(atom):
                    acc[i] = (
                        np.int64(-256)
                        if method == 0
                        else (np.int64(256) if method == 1 else np.int64(0))
                    )
                for r in range(kh):
                    ih = oh * sh + r - top
                    if ih < 0 or ih >= height:
                        continue
                    for s in range(kw):
                        iw = ow * sw + s - left
                        if iw < 0 or iw >= width:
                            continue
                        for i in range(atom):
                            v = np.int64(x[b, cb, ih, iw, i])
                            if method == 0:
                                acc[i] = max(acc[i], v)
                            elif method == 1:
                                acc[i] = min(acc[i], v)
                            else:
                                acc[i] += v
                if method == 2:
                    for i in range(atom):
                        t = (acc[i] + pads[oh, ow]) * recip[0]
                        mag = (abs(t) + half) >> 16
                        t = -mag if t < 0 else mag
                        t = t * recip[1]
                        mag = (abs(t) + half) >> 16
                        t = -mag if t < 0 else mag
                        acc[i] = min(max(t, np.int64(-128)), np.int64(127))
                for i in range(atom):
                    out[b, cb, oh, ow, i] = np.int8(acc[i])


def pool(x, out, geo, pads, recip) -> None:
    kernel = _COMPILED.get("pool")
    if kernel is None:
        signature = f"void({_CUBE}, {_CUBE}, int64[::1], int64[:, ::1], int64[::1])"
        kernel = _COMPILED["pool"] = numba.njit(signature, cache=True, parallel=True)(_pool)
    kernel(x, out, geo, pads, recip)
