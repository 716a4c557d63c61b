"""The SDP chain of :mod:`dlakit.sim.sdp_fused` compiled by numba: one loop over the batch,
each accumulator read once and each INT8 result written once (cached on disk after the first
compile). Same arithmetic as the torch twin there, in int64 scalars."""

import numba
import numpy as np

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
    # Rows in parallel; each row's elements in memory order of an NHWC accumulator.
    for job in numba.prange(batch * height):
        b = job // height
        h = job % height
        for w in range(width):
            for cb in range(blocks):
                for a in range(atom):
                    c = cb * atom + a
                    x = np.int64(inp[b, cb, h, w, a])
                    if cfg[0] >= 0:
                        x = cacc(x, cfg[0])
                    if cfg[1]:
                        x = x_unit(x, cfg[2], chan[0, c], cfg[3], chan[1, c], cfg[4],
                                   cfg[5], cfg[6])  # fmt: skip
                    if cfg[7]:
                        x = x_unit(x, cfg[8], chan[2, c], cfg[9], chan[3, c], cfg[10],
                                   cfg[11], cfg[12])  # fmt: skip
                    if cfg[13]:
                        if cfg[14]:
                            prod = srr(x * chan[4, c], cfg[15], 64, 32)
                            if not (cfg[16] and x >= 0):
                                x = prod
                        if cfg[17]:
                            if cfg[18]:
                                op = np.int64(ew[b, cb, h, w, a])
                                if cfg[19]:
                                    op = srr((op - cfg[20]) * cfg[21], cfg[22], 49, 32)
                            else:
                                op = chan[5, c]
                            if cfg[17] == 1:
                                x = sat32(x + op)
                            elif cfg[17] == 2:
                                x = max(x, op)
                            else:
                                x = min(x, op)
                    x = (x - cfg[23]) * cfg[24]
                    out[b, cb, h, w, a] = np.int8(srr(x, cfg[25], 49, 8))


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
