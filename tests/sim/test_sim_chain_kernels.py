"""The chain loops compiled per chain structure (``numba_kernels.chain_rows``: the SDP chain on a
GEMM's sums, straight into a surface) equal the whole-tensor definition
(``sdp_fused.chain_torch``) byte for byte, on chains whose shifts are 0 (the rounding then only
saturates) or not, C the identity or not, and channel ranges that start and end inside an atom;
and the comparison catches a loop compiled for another structure."""

import numpy as np
import pytest
import torch

from dlakit.sim.sdp_fused import SdpParams, XParams, YParams, chain_torch, numba_kernels

pytestmark = pytest.mark.skipif(numba_kernels() is None, reason="needs numba")

ATOM = 8
BATCH, OUT_H, OUT_W = 2, 3, 5
CHANNELS = 32  # of the cube; the sums cover channels C0 .. C0 + K - 1
C0, K = 4, 20


def _shift(rng, plain: bool, low: int, high: int) -> int:
    return 0 if plain else int(rng.integers(low, high))


def _x(rng, plain: bool) -> XParams:
    return XParams(
        alu=int(rng.integers(0, 4)),
        alu_op=rng.integers(-(2**16), 2**16, CHANNELS),
        mul=bool(rng.random() < 0.8),
        mul_op=rng.integers(-4, 5, CHANNELS) if plain else rng.integers(-(2**8), 2**8, CHANNELS),
        shift=_shift(rng, plain, 4, 12),
        prelu=bool(rng.random() < 0.3),
        relu=bool(rng.random() < 0.3),
    )


def _chain(rng, plain: bool) -> SdpParams:
    """A random chain; ``plain``: every shift 0 and C the identity (the loops' short cuts)."""
    per_element = bool(rng.random() < 0.5)
    y = YParams(
        mul=bool(rng.random() < 0.5),
        mul_op=rng.integers(-(2**8), 2**8, CHANNELS),
        mul_shift=int(rng.integers(4, 10)),
        mul_prelu=bool(rng.random() < 0.5),
        alu=int(rng.integers(1, 4)) if per_element else int(rng.integers(0, 4)),
        alu_op=rng.integers(-(2**12), 2**12, CHANNELS),
        per_element=per_element,
        cvt=bool(rng.random() < 0.7),
        cvt_offset=int(rng.integers(-(2**7), 2**7)),
        cvt_scale=int(rng.integers(-(2**10), 2**10)),
        cvt_shift=_shift(rng, plain, 0, 4),
    )
    return SdpParams(
        channels=CHANNELS,
        cacc_shift=_shift(rng, plain, 2, 20),
        x1=_x(rng, plain) if rng.random() < 0.8 else None,
        x2=_x(rng, plain) if rng.random() < 0.8 else None,
        y=y if per_element or rng.random() < 0.5 else None,
        cvt_offset=0 if plain else int(rng.integers(-(2**6), 2**6)),
        cvt_scale=1 if plain else int(rng.integers(1, 2**6)),
        cvt_shift=_shift(rng, plain, 4, 16),
    )


def _memory(rng) -> np.ndarray:
    """Random bytes holding a cube with gaps after each line and after the surfaces."""
    shape = (BATCH, CHANNELS // ATOM + 1, OUT_H, OUT_W + 2, ATOM)
    return rng.integers(-128, 128, shape).astype(np.int8)


def _cube(memory: np.ndarray) -> np.ndarray:
    """The cube view [B, C/a, H, W, a] in ``memory``."""
    return memory[:, : CHANNELS // ATOM, :, :OUT_W]


def _run(kernel, sums: np.ndarray, params: SdpParams, out: np.ndarray, ew: np.ndarray) -> None:
    from dlakit.sim import numba_kernels as nk

    cfg, chan = params.packed()
    of, ov = nk._flat(out)
    ef, ev = nk._flat(ew)
    kernel(sums, 0, OUT_W, OUT_H, C0, cfg, chan, of, ov, ef, ev)


def _planar(cube: np.ndarray) -> np.ndarray:
    return cube.transpose(0, 2, 3, 1, 4).reshape(BATCH, OUT_H, OUT_W, CHANNELS)


def _definition(sums: np.ndarray, params: SdpParams, ew: np.ndarray) -> np.ndarray:
    """chain_torch on the whole cube, the sums in channels C0 .. C0 + K - 1: [B, H, W, C]."""
    acc = np.zeros((BATCH, OUT_H, OUT_W, CHANNELS), dtype=np.int64)
    acc[..., C0 : C0 + K] = sums.reshape(BATCH, OUT_H, OUT_W, K)
    acc5 = torch.from_numpy(acc).unflatten(3, (CHANNELS // ATOM, ATOM)).permute(0, 3, 1, 2, 4)
    return _planar(chain_torch(acc5, params, torch.from_numpy(ew)).numpy())


@pytest.mark.parametrize("narrow", [False, True])  # True: 32-bit MULs where narrow_muls allows
@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_chain_rows_equals_the_definition(seed, plain, narrow, sim_engine):
    from dlakit.sim import numba_kernels as nk

    if sim_engine != "replay":
        pytest.skip("independent of the engine")
    rng = np.random.default_rng(seed + 10 * plain)
    ew = _cube(_memory(rng))
    top = 2**6 if plain else 2**22
    # a chain that keeps information (most random ones saturate or clamp it away)
    for _ in range(100):
        params = _chain(rng, plain)
        sums = rng.integers(-top, top, (BATCH * OUT_H * OUT_W, K)).astype(np.int32)
        wanted = _definition(sums, params, ew)
        if len(np.unique(wanted[..., C0 : C0 + K])) > 8:
            break
    assert len(np.unique(wanted[..., C0 : C0 + K])) > 8
    memory = _memory(rng)
    expected = memory.copy()  # the other channels and the gaps as they were
    view = _planar(_cube(expected)).copy()
    view[..., C0 : C0 + K] = wanted[..., C0 : C0 + K]
    _cube(expected)[...] = view.reshape(BATCH, OUT_H, OUT_W, CHANNELS // ATOM, ATOM).transpose(
        0, 3, 1, 2, 4
    )
    cfg, chan = params.packed()
    muls = nk.narrow_muls(nk.chain_structure(cfg), cfg, chan, -top, top) if narrow else nk._WIDE
    _run(nk._chain_rows_kernel(cfg, muls), sums, params, _cube(memory), ew)
    assert np.array_equal(memory, expected)
    assert plain or nk.chain_structure(params.packed()[0])[-1] is False  # C rounds


def test_a_loop_for_another_structure_is_caught(sim_engine):
    """The comparison above can fail: a loop compiled without the chain's X2 stage (its
    structure says X2 is bypassed) gives other bytes."""
    import numba

    from dlakit.sim import numba_kernels as nk

    if sim_engine != "replay":
        pytest.skip("independent of the engine")
    rng = np.random.default_rng(7)
    params = _chain(rng, plain=False)
    x2 = XParams(1, rng.integers(-(2**12), 2**12, CHANNELS), True,
                 rng.integers(1, 2**8, CHANNELS), 6, False, False)  # fmt: skip
    params = SdpParams(**{**vars(params), "x2": x2, "_packed": {}})
    sums = rng.integers(-(2**20), 2**20, (BATCH * OUT_H * OUT_W, K)).astype(np.int32)
    ew = _cube(_memory(rng))
    right = _cube(_memory(rng))
    wrong = right.copy()
    _run(nk.chain_rows, sums, params, right, ew)
    flags = list(nk.chain_structure(params.packed()[0]))
    flags[8] = False  # X2 off
    skipping = numba.njit(nk._CHAIN_ROWS_SIGNATURE, cache=True)(
        nk._chain_rows_for(tuple(flags), nk._WIDE)
    )
    _run(skipping, sums, params, wrong, ew)
    assert not np.array_equal(right, wrong)


def test_a_narrow_multiplication_beyond_int32_is_caught(sim_engine):
    """32-bit MULs are not a no-op: on values past int32 (which ``narrow_muls`` rules out)
    they give other bytes, so the comparison above would see a bound too loose."""
    from dlakit.sim import numba_kernels as nk

    if sim_engine != "replay":
        pytest.skip("independent of the engine")
    rng = np.random.default_rng(8)
    x1 = XParams(1, np.full(CHANNELS, 2**31 - 2**10), True, rng.integers(1, 2**8, CHANNELS), 0,
                 False, False)  # fmt: skip
    params = SdpParams(channels=CHANNELS, cacc_shift=0, x1=x1, x2=None, y=None, cvt_offset=0,
                       cvt_scale=1, cvt_shift=0)  # fmt: skip
    cfg, chan = params.packed()
    top = 2**20
    assert nk.narrow_muls(nk.chain_structure(cfg), cfg, chan, -top, top) == nk._WIDE
    sums = rng.integers(-top, top, (BATCH * OUT_H * OUT_W, K)).astype(np.int32)
    ew = _cube(_memory(rng))
    right = _cube(_memory(rng))
    wrong = right.copy()
    _run(nk._chain_rows_kernel(cfg), sums, params, right, ew)
    _run(nk._chain_rows_kernel(cfg, (True, False, False)), sums, params, wrong, ew)
    assert not np.array_equal(right, wrong)


@pytest.mark.parametrize("channels", [3, 8, 13])
def test_to_surface_fills_the_lanes_and_leaves_the_gaps(channels, sim_engine):
    """A planar INT8 cube into a surface with gaps (how the runner writes a host tensor): each
    channel in its lane, the lanes past the last channel zero, every other byte as it was."""
    from dlakit.sim import numba_kernels as nk

    if sim_engine != "replay":
        pytest.skip("independent of the engine")
    rng = np.random.default_rng(channels)
    blocks, h, w = -(-channels // ATOM), 3, 5
    memory = rng.integers(-128, 128, (BATCH, blocks + 1, h, w + 2, ATOM)).astype(np.int8)
    planar = rng.integers(-128, 128, (BATCH, channels, h, w)).astype(np.int8)
    expected = memory.copy()
    lanes = np.zeros((BATCH, blocks * ATOM, h, w), dtype=np.int8)
    lanes[:, :channels] = planar
    expected[:, :blocks, :, :w] = lanes.reshape(BATCH, blocks, ATOM, h, w).transpose(0, 1, 3, 4, 2)
    nk.to_surface(planar, memory[:, :blocks, :, :w])
    assert np.array_equal(memory, expected)
