"""The compiled convolution + SDP passes (INT8 GEMM, direct dense, depthwise) equal the torch
path of the replay layer (staged conv2d/GEMM sums, then the chain that
test_sim_replay.py checks against the whole-tensor definition) byte for byte, on random
chains, weights, strides, padding and surfaces with gaps."""

import dataclasses

import numpy as np
import pytest
import torch

from dlakit import system
from dlakit.sim import numba_kernels as nk
from dlakit.sim import replay
from dlakit.sim.batch import BatchedMemory
from dlakit.sim.decode import ConvOp, Cube, pack_weights_for_lanes
from dlakit.sim.sdp_fused import SdpParams, XParams, YParams, numba_kernels

pytestmark = pytest.mark.skipif(numba_kernels() is None, reason="needs numba")

ATOM = 8
BATCH = 2


def _shift(rng, moderate: tuple[int, int], wild: bool, top: int = 66) -> int:
    return int(rng.integers(0, top) if wild else rng.integers(*moderate))


def _x(rng, k: int, wild: bool) -> XParams | None:
    if rng.random() < 0.2:
        return None
    return XParams(
        alu=int(rng.integers(0, 4)),
        alu_op=rng.integers(-(2**31 if wild else 2**14), 2**31 if wild else 2**14, k),
        mul=bool(rng.random() < 0.8),
        mul_op=rng.integers(-(2**15 if wild else 2**8), 2**15 if wild else 2**8, k),
        shift=_shift(rng, (7, 10), wild, 52),
        prelu=bool(rng.random() < 0.3),
        relu=bool(rng.random() < 0.3),
    )


def _chain(rng, k: int, per_element: bool, wild: bool) -> SdpParams:
    """A random chain; ``wild``: any operands and shifts (most results saturate), else ones
    that keep the values in range."""
    y = YParams(
        mul=bool(rng.random() < 0.5),
        mul_op=rng.integers(-(2**15 if wild else 2**8), 2**15 if wild else 2**8, k),
        mul_shift=_shift(rng, (6, 10), wild),
        mul_prelu=bool(rng.random() < 0.5),
        alu=int(rng.integers(1, 4)) if per_element else int(rng.integers(0, 4)),
        alu_op=rng.integers(-(2**31 if wild else 2**12), 2**31 if wild else 2**12, k),
        per_element=per_element,
        cvt=bool(rng.random() < 0.6),
        cvt_offset=int(rng.integers(-(2**7), 2**7)),
        cvt_scale=int(rng.integers(-(2**15 if wild else 2**6), 2**15 if wild else 2**6)),
        cvt_shift=_shift(rng, (0, 4), wild, 52),
    )
    return SdpParams(
        channels=k,
        cacc_shift=_shift(rng, (2, 6), wild, 34),
        x1=_x(rng, k, wild),
        x2=_x(rng, k, wild),
        y=y if per_element or rng.random() < 0.5 else None,
        cvt_offset=int(rng.integers(-(2**10), 2**10)),
        cvt_scale=int(rng.integers(-(2**12 if wild else 2**4), 2**12 if wild else 2**4)),
        cvt_shift=_shift(rng, (5, 10), wild, 52),
    )


def _cube(memory: BatchedMemory, base: int, c: int, h: int, w: int, gap: int) -> Cube:
    line = w * ATOM + gap
    surf = h * line + gap
    memory.alloc(base, (c // ATOM) * surf)
    return Cube(base, c, h, w, line, surf)


# (groups, in channels, kernels, kernel size, stride, dilation, pads l r t b, weight range,
# the input's gap after each line)
CASES = [
    (1, 16, 24, 1, 1, 1, (0, 0, 0, 0), 128, 16),  # 1x1: one GEMM of the pixels
    (1, 16, 16, 3, 2, 1, (1, 1, 1, 1), 128, 16),  # 3x3 stride 2 with padding
    (2, 16, 32, 3, 1, 2, (2, 2, 0, 2), 128, 16),  # grouped, dilated
    (1, 8, 16, 3, 1, 1, (1, 1, 1, 1), 2000, 16),  # weights beyond INT8: the direct loop
    (16, 16, 16, 3, 1, 1, (1, 1, 1, 1), 128, 16),  # depthwise
    (16, 16, 16, 3, 2, 1, (0, 1, 1, 0), 128, 16),  # depthwise, stride 2
    # 1x1 on packed lines of one atom: the surface's rows are the GEMM's operand, the lanes
    # past the input channels (random bytes here) multiplied by zero weights
    (1, 8, 24, 1, 1, 1, (0, 0, 0, 0), 128, 0),
    (1, 6, 16, 1, 1, 1, (0, 0, 0, 0), 128, 0),
]


@pytest.mark.parametrize("int8_matmul", [True, False])  # False: as where the probe fails
@pytest.mark.parametrize("seed", range(3))  # 2: a wild chain
@pytest.mark.parametrize("case", range(len(CASES)))
def test_compiled_convolution_equals_the_torch_path(case, seed, int8_matmul, sim_engine,
                                                    monkeypatch):  # fmt: skip
    if sim_engine != "replay":
        pytest.skip("independent of the engine")
    _check_convolution(case, seed, int8_matmul, monkeypatch)


@pytest.mark.parametrize("case", [0, 1, 2, 6])
def test_gemm_chunks_in_two_threads_equal_the_torch_path(case, sim_engine, monkeypatch):
    """A chunk per output row (or less), handed out to two threads in turn: a chunk skipped,
    done twice or written to another's rows would show."""
    if sim_engine != "replay":
        pytest.skip("independent of the engine")
    monkeypatch.setattr(nk, "CHUNK_BYTES", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_convolution(case, 1, True, monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _check_convolution(case: int, seed: int, int8_matmul: bool, monkeypatch) -> None:
    groups, c, k, size, stride, dilation, pads, wmax, src_gap = CASES[case]
    if not int8_matmul:
        if groups == c:
            pytest.skip("depthwise layers take no matrix product")
        # Dense layers then take the direct compiled loop (CPUs without VNNI).
        monkeypatch.setattr(system, "_INT8_MATMUL_EXACT", [False])
    rng = np.random.default_rng(100 * case + seed)
    h, w = 7, 9
    left, right, top, bottom = pads
    oh = (h + top + bottom - (size - 1) * dilation - 1) // stride + 1
    ow = (w + left + right - (size - 1) * dilation - 1) // stride + 1
    memory = BatchedMemory(BATCH)
    # whole atoms in memory; the convolution reads the first c channels
    src = _cube(memory, 0x10000, -(-c // ATOM) * ATOM, h, w, gap=src_gap)
    dst = _cube(memory, 0x40000, k, oh, ow, gap=8)
    per_element = seed != 0
    ew = _cube(memory, 0x80000, k, oh, ow, gap=24) if per_element else None
    for cube in (src, ew):
        if cube is not None:
            view = replay._view(memory, cube, ATOM, writable=True)
            view.copy_(torch.from_numpy(rng.integers(-128, 128, tuple(view.shape))))
    weights = torch.from_numpy(rng.integers(-wmax, wmax, (k, c // groups, size, size)))
    weights = weights.to(torch.float32)
    lanes, packed = pack_weights_for_lanes(weights, groups, c, ATOM)
    assert lanes == ("depthwise" if groups == c else "dense")
    op = ConvOp(
        src=src,
        in_channels=c,
        weights=weights.contiguous(memory_format=torch.channels_last),
        groups=groups,
        stride=(stride, stride),
        dilation=(dilation, dilation),
        pads=pads,
        pad_value=int(rng.integers(-128, 128)),
        out_hw=(oh, ow),
        sdp_hw=(oh, ow),
        chain=_chain(rng, k, per_element, wild=seed == 2),
        ew=ew,
        dst=dst,
        pool=None,
        lanes=lanes,
        packed=packed,
    )

    def run(variant: ConvOp) -> torch.Tensor:
        replay._view(memory, dst, ATOM, writable=True).fill_(0)
        replay.execute(variant, memory, ATOM)
        return replay._view(memory, dst, ATOM).clone()

    # A moderate chain that keeps information (most random ones saturate or clamp it away);
    # a wild one as it comes.
    for _ in range(50):
        reference = run(dataclasses.replace(op, packed=None))
        if seed == 2 or len(torch.unique(reference)) > 8:
            break
        op = dataclasses.replace(op, chain=_chain(rng, k, per_element, wild=False))
    assert seed == 2 or len(torch.unique(reference)) > 8
    assert torch.equal(run(op), reference)


@pytest.mark.parametrize("seed", range(40))
def test_narrow_multiplications_see_only_int32(seed):
    """Where ``narrow_muls`` lets a MUL take 32-bit operands, every sum within the bound
    (its ends included) brings it values and operands within int32: the chain followed value
    by value, as ``x_unit`` computes it."""
    rng = np.random.default_rng(seed)
    k = 16
    params = _chain(rng, k, per_element=False, wild=seed % 4 == 3)
    cfg, chan = params.packed()
    bound = int(rng.choice([2**10, 2**18, 2**24, 2**31, 2**33]))
    narrow = nk.narrow_muls(nk.chain_structure(cfg), cfg, chan, -bound, bound)

    def fits(v: int) -> bool:
        return -(2**31) <= v < 2**31

    for acc in [-bound, bound, 0, *rng.integers(-bound, bound + 1, 200).tolist()]:
        for j in range(k):
            x = int(nk.cacc(np.int64(acc), int(cfg[0]))) if cfg[0] >= 0 else acc
            for unit, at in ((params.x1, 0), (params.x2, 1)):
                if unit is None:
                    continue
                op = int(unit.alu_op[j])
                v = (x, x + op, max(x, op), min(x, op))[unit.alu]
                if unit.mul and narrow[at]:
                    assert fits(v) and fits(int(unit.mul_op[j])), (acc, j, at)
                x = int(nk.x_unit(np.int64(x), unit.alu, np.int64(op), unit.mul,
                                  np.int64(unit.mul_op[j]), unit.shift, unit.prelu,
                                  unit.relu))  # fmt: skip
            if params.y is not None and params.y.mul and narrow[2]:
                assert fits(x) and fits(int(params.y.mul_op[j])), (acc, j)


def test_moderate_chains_multiply_narrow():
    """A depthwise layer's chain as MobileNetV2's (bias, scale, ReLU6 clip, rescale) on sums
    of INT8 x INT8 taps takes 32-bit multiplications in both X units."""
    k = 8
    clip = XParams(alu=3, alu_op=np.full(k, 467728), mul=True, mul_op=np.full(k, 18222),
                   shift=26, prelu=False, relu=True)  # fmt: skip
    bias = XParams(alu=1, alu_op=np.arange(k) - 4, mul=True, mul_op=np.full(k, 16), shift=0,
                   prelu=False, relu=False)  # fmt: skip
    params = SdpParams(channels=k, cacc_shift=0, x1=bias, x2=clip, y=None, cvt_offset=0,
                       cvt_scale=1, cvt_shift=0)  # fmt: skip
    cfg, chan = params.packed()
    bound = 128 * 9 * 127
    assert nk.narrow_muls(nk.chain_structure(cfg), cfg, chan, -bound, bound) == (True, True, False)
