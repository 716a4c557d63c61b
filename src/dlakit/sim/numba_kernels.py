"""The compiled loops of the replay path (numba, CPU; cached on disk after the first compile).

* ``chain``: the SDP chain of :mod:`dlakit.sim.sdp_fused` over a cube of accumulators or INT8
  values, each read once and each INT8 result written once; same arithmetic as the torch twin
  there, in int64 scalars;
* ``stage``: an INT8 feature cube into a padded float NHWC buffer (for conv2d);
* ``conv_dense``, ``conv_depthwise``: a convolution and its SDP chain in one pass from the input
  surface to the output surface, integer sums (see below).
"""

import numba
import numpy as np

from dlakit.system import numba_thread_pool

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


# ---------------------------------------------------------------- convolution + SDP, fused
#
# One output pixel at a time: the accumulators of all its kernels (or, depthwise, of one atom of
# channels) in a lane array, then the SDP chain stage by stage over the lanes (each stage one
# short loop without branches on the data, which the compiler vectorises), then INT8 straight
# into the destination surface. Sums are int64: exact (the decoder bounds them below 2**33).


@jit
def _srr_lanes(v, rows, n, shift, in_bits, out_bits):
    lim = np.int64(1) << (out_bits - 1)
    if shift >= in_bits:
        v[:rows, :n] = 0
        return
    if shift > 0:
        half = np.int64(1) << (shift - 1)
        for p in range(rows):
            for i in range(n):
                x = v[p, i]
                mag = (abs(x) + half) >> shift
                v[p, i] = -mag if x < 0 else mag
    for p in range(rows):
        for i in range(n):
            v[p, i] = min(max(v[p, i], -lim), lim - 1)


@jit
def _x_lanes(v, u, rows, n, c0, alu, ops, mul_on, muls, shift, prelu, relu):
    for p in range(rows):
        if alu == 1:
            for i in range(n):
                v[p, i] += ops[c0 + i]
        elif alu == 2:
            for i in range(n):
                v[p, i] = max(v[p, i], ops[c0 + i])
        elif alu == 3:
            for i in range(n):
                v[p, i] = min(v[p, i], ops[c0 + i])
    if mul_on:
        for p in range(rows):
            for i in range(n):
                u[p, i] = v[p, i] * muls[c0 + i]
        _srr_lanes(u, rows, n, shift, 49, 32)
        for p in range(rows):
            if prelu:
                for i in range(n):
                    v[p, i] = v[p, i] if v[p, i] >= 0 else u[p, i]
            else:
                for i in range(n):
                    v[p, i] = u[p, i]
    else:
        _srr_lanes(v, rows, n, shift, 49, 32)
    if relu:
        for p in range(rows):
            for i in range(n):
                v[p, i] = max(v[p, i], np.int64(0))


@jit
def _chain_lanes(v, u, e, rows, n, c0, cfg, chan, ew, b, oh, ow0, per_element):
    """The chain of ``_chain`` on ``v[:rows, :n]``: ``rows`` output pixels (oh, ow0 + p) of
    image b, channels c0..c0+n-1 in the lanes; ``ew`` holds the per-element Y operands when the
    chain takes them (``e``, ``u``: scratch of the same shape)."""
    if per_element:
        atom = ew.shape[4]
        for p in range(rows):
            k = 0
            while k < n:
                cb, lane = (c0 + k) // atom, (c0 + k) % atom
                run = min(atom - lane, n - k)
                for j in range(run):
                    e[p, k + j] = ew[b, cb, oh, ow0 + p, lane + j]
                k += run
    shift = cfg[0]
    lo32, hi32 = np.int64(-(1 << 31)), np.int64((1 << 31) - 1)
    for p in range(rows):
        if shift == 0:
            for i in range(n):
                v[p, i] = min(max(v[p, i], lo32), hi32)
        elif shift > 0:
            for i in range(n):
                v[p, i] = cacc(v[p, i], shift)
    if cfg[1]:
        _x_lanes(v, u, rows, n, c0, cfg[2], chan[0], cfg[3], chan[1], cfg[4], cfg[5], cfg[6])
    if cfg[7]:
        _x_lanes(v, u, rows, n, c0, cfg[8], chan[2], cfg[9], chan[3], cfg[10], cfg[11], cfg[12])
    if cfg[13]:
        if cfg[14]:
            for p in range(rows):
                for i in range(n):
                    u[p, i] = v[p, i] * chan[4, c0 + i]
            _srr_lanes(u, rows, n, cfg[15], 64, 32)
            for p in range(rows):
                for i in range(n):
                    v[p, i] = v[p, i] if (cfg[16] and v[p, i] >= 0) else u[p, i]
        if cfg[17]:
            if cfg[18]:
                for p in range(rows):
                    for i in range(n):
                        u[p, i] = (e[p, i] - cfg[20]) * cfg[21] if cfg[19] else e[p, i]
                if cfg[19]:
                    _srr_lanes(u, rows, n, cfg[22], 49, 32)
            else:
                for p in range(rows):
                    for i in range(n):
                        u[p, i] = chan[5, c0 + i]
            for p in range(rows):
                if cfg[17] == 1:
                    for i in range(n):
                        v[p, i] = min(max(v[p, i] + u[p, i], lo32), hi32)
                elif cfg[17] == 2:
                    for i in range(n):
                        v[p, i] = max(v[p, i], u[p, i])
                else:
                    for i in range(n):
                        v[p, i] = min(v[p, i], u[p, i])
    for p in range(rows):
        for i in range(n):
            v[p, i] = (v[p, i] - cfg[23]) * cfg[24]
    _srr_lanes(v, rows, n, cfg[25], 49, 8)


def _conv_dense(x, w, out, ew, geo, cfg, chan):
    # x [B, C/a, H, W, a] INT8; w [G, R, S, Cg, Kg] (float32, int32 or int64);
    # out/ew [B, K/a, OH, OW, a] INT8; geo = (stride y, x, dilation y, x, pad top, left, pad
    # value, groups). Four output pixels of a row at a time, so each weight row is read once
    # for all four (a layer's weights rarely fit the first-level cache).
    batch, _, height, width, atom = x.shape
    groups, taps_r, taps_s, cg, kg = w.shape
    out_h, out_w = out.shape[2], out.shape[3]
    sy, sx, dy, dx, top, left = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    pad = np.int8(geo[6])  # INT8 like the data: products keep the weights' type
    zero = np.int8(0)
    per_element = cfg[13] and cfg[17] and cfg[18]
    for job in numba.prange(batch * out_h):
        b = job // out_h
        oh = job % out_h
        sums = np.zeros((4, kg), dtype=w.dtype)
        taps = np.zeros((4, cg), dtype=np.int8)
        v = np.empty((4, kg), dtype=np.int64)
        u = np.empty((4, kg), dtype=np.int64)
        e = np.zeros((4, kg), dtype=np.int64)
        for ow0 in range(0, out_w, 4):
            count = min(4, out_w - ow0)
            for g in range(groups):
                sums[:, :] = 0
                s0, s1, s2, s3 = sums[0], sums[1], sums[2], sums[3]
                for r in range(taps_r):
                    ih = oh * sy + r * dy - top
                    for s in range(taps_s):
                        iw0 = ow0 * sx + s * dx - left
                        # The tap's inputs for the four pixels, channel by channel (channel
                        # c = g * cg + ci sits in atom block c // atom, lane c % atom: walk
                        # blocks and lanes, no division per channel).
                        c = g * cg
                        ci = 0
                        while ci < cg:
                            cb, lane = (c + ci) // atom, (c + ci) % atom
                            run = min(atom - lane, cg - ci)
                            for p in range(4):
                                iw = iw0 + p * sx
                                inside = p < count and 0 <= ih < height and 0 <= iw < width
                                for j in range(run):
                                    taps[p, ci + j] = x[b, cb, ih, iw, lane + j] if inside else pad
                                if p >= count:
                                    for j in range(run):
                                        taps[p, ci + j] = zero
                            ci += run
                        rows = w[g, r, s]
                        t0, t1, t2, t3 = taps[0], taps[1], taps[2], taps[3]
                        for ci in range(cg):
                            x0, x1, x2, x3 = t0[ci], t1[ci], t2[ci], t3[ci]
                            if x0 != 0 or x1 != 0 or x2 != 0 or x3 != 0:
                                for k in range(kg):
                                    wk = rows[ci, k]
                                    s0[k] += x0 * wk
                                    s1[k] += x1 * wk
                                    s2[k] += x2 * wk
                                    s3[k] += x3 * wk
                c0 = g * kg
                for p in range(count):
                    for k in range(kg):
                        v[p, k] = np.int64(sums[p, k])
                _chain_lanes(v, u, e, count, kg, c0, cfg, chan, ew, b, oh, ow0, per_element)
                for p in range(count):
                    k = 0
                    while k < kg:
                        cb, lane = (c0 + k) // atom, (c0 + k) % atom
                        run = min(atom - lane, kg - k)
                        for j in range(run):
                            out[b, cb, oh, ow0 + p, lane + j] = np.int8(v[p, k + j])
                        k += run


def _conv_depthwise(x, w, out, ew, geo, cfg, chan):
    # One kernel per channel: lanes are the channels of an atom, contiguous in memory; four
    # output pixels of a row per pass. x [B, C/a, H, W, a] INT8; w [C/a, R, S, a] (float32,
    # int32 or int64); out/ew [B, C/a, OH, OW, a] INT8.
    batch, blocks, height, width, atom = x.shape
    taps_r, taps_s = w.shape[1], w.shape[2]
    out_h, out_w = out.shape[2], out.shape[3]
    sy, sx, dy, dx, top, left = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    pad = np.int8(geo[6])  # INT8 like the data: products keep the weights' type
    per_element = cfg[13] and cfg[17] and cfg[18]
    for job in numba.prange(batch * out_h):
        b = job // out_h
        oh = job % out_h
        sums = np.zeros((4, atom), dtype=w.dtype)
        v = np.empty((4, atom), dtype=np.int64)
        u = np.empty((4, atom), dtype=np.int64)
        e = np.zeros((4, atom), dtype=np.int64)
        for ow0 in range(0, out_w, 4):
            count = min(4, out_w - ow0)
            for cb in range(blocks):
                sums[:, :] = 0
                for r in range(taps_r):
                    ih = oh * sy + r * dy - top
                    row_inside = 0 <= ih < height
                    for s in range(taps_s):
                        weights = w[cb, r, s]
                        for p in range(count):
                            iw = (ow0 + p) * sx + s * dx - left
                            acc = sums[p]
                            if row_inside and 0 <= iw < width:
                                for i in range(atom):
                                    acc[i] += x[b, cb, ih, iw, i] * weights[i]
                            elif pad != 0:
                                for i in range(atom):
                                    acc[i] += pad * weights[i]
                for p in range(count):
                    for i in range(atom):
                        v[p, i] = np.int64(sums[p, i])
                _chain_lanes(v, u, e, count, atom, cb * atom, cfg, chan, ew, b, oh, ow0,
                             per_element)  # fmt: skip
                for p in range(count):
                    for i in range(atom):
                        out[b, cb, oh, ow0 + p, i] = np.int8(v[p, i])


_CUBE = "int8[:, :, :, :, :]"


def _conv_signature(weights: str, dims: int) -> str:
    w = f"{weights}[{', '.join([':'] * (dims - 1))}, ::1]"
    return f"void({_CUBE}, {w}, {_CUBE}, {_CUBE}, int64[::1], int64[::1], int64[:, ::1])"


def _compiled_conv(name: str, function, w: np.ndarray):
    key = f"{name}_{w.dtype.name}"
    kernel = _COMPILED.get(key)
    if kernel is None:
        signature = _conv_signature(w.dtype.name, w.ndim)
        kernel = _COMPILED[key] = numba.njit(signature, cache=True, parallel=True)(function)
    return kernel


# The weights' type is the sums' type: float32 where every partial sum stays below 2**24
# (exact, and twice the lanes), int32 below 2**31, else int64.
def conv_dense(x, w, out, ew, geo, cfg, chan) -> None:
    _compiled_conv("conv_dense", _conv_dense, w)(x, w, out, ew, geo, cfg, chan)


def conv_depthwise(x, w, out, ew, geo, cfg, chan) -> None:
    _compiled_conv("conv_depthwise", _conv_depthwise, w)(x, w, out, ew, geo, cfg, chan)


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
