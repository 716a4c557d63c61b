"""The replay layer: decode once, run on a batch; every result equals the unit models' (the
definition) byte for byte. (conftest.py also runs every other simulator test through it.)"""

from pathlib import Path

import numpy as np
import pytest
import torch

from dlakit.errors import DlakitError
from dlakit.sim import replay
from dlakit.sim.batch import BatchedMemory
from dlakit.sim.decode import _block_groups
from dlakit.sim.layout import pack_weights, read_feature, write_feature
from dlakit.sim.memory import Memory
from dlakit.sim.nvdla import Nvdla
from dlakit.sim.program import ConvSpec, program_conv
from dlakit.sim.sdp_fused import SdpParams, XParams, YParams, chain_torch, run_chain
from dlakit.sim.trace import find_traces, run_trace

TRACES = Path("nvdla-traces") / "nv_small"


def _counting(monkeypatch) -> dict[str, int]:
    counts = {"fast": 0, "definition": 0}
    execute, definition = replay.execute, Nvdla.execute

    def fast(op, memory, atom):
        counts["fast"] += 1
        execute(op, memory, atom)

    def slow(self, launch):
        counts["definition"] += 1
        definition(self, launch)

    monkeypatch.setattr(replay, "execute", fast)
    monkeypatch.setattr(Nvdla, "execute", slow)
    return counts


def test_official_traces_take_the_fast_path(shared, sim_engine, monkeypatch):
    if sim_engine != "replay":
        pytest.skip("one run is enough")
    counts = _counting(monkeypatch)
    by_family: dict[str, int] = {}
    for cfg in find_traces(shared / TRACES):
        before = counts["fast"]
        assert run_trace(cfg).passed, cfg.stem
        family = cfg.stem.split("_")[0]
        by_family[family] = by_family.get(family, 0) + (counts["fast"] > before)
    # Not decoded: CDP (LUT), per-element X operands, the Y LUT, one 8192-channel convolution
    # whose 34-bit accumulator could saturate; all of them ran on the unit models and passed.
    assert by_family["dc"] >= 7 and by_family["pdp"] == 10 and by_family["sdp"] >= 11
    assert counts["fast"] >= 28


def _random_x(rng, channels: int) -> XParams:
    return XParams(
        alu=int(rng.integers(0, 4)),
        alu_op=rng.integers(-(2**31), 2**31, channels),
        mul=bool(rng.random() < 0.8),
        mul_op=rng.integers(-(2**15), 2**15, channels),
        shift=int(rng.integers(0, 64)),
        prelu=bool(rng.random() < 0.3),
        relu=bool(rng.random() < 0.3),
    )


def _random_chain(seed: int):
    rng = np.random.default_rng(seed)
    atom, channels = 8, 24
    shape = (3, channels // atom, 5, 7, atom)
    acc = torch.from_numpy(rng.integers(-(2**33), 2**33, shape).astype(np.float64))
    ew = torch.from_numpy(rng.integers(-128, 128, shape).astype(np.int8))
    y = YParams(
        mul=bool(rng.random() < 0.5),
        mul_op=rng.integers(-(2**31), 2**31, channels),
        mul_shift=int(rng.integers(0, 64)),
        mul_prelu=bool(rng.random() < 0.5),
        alu=int(rng.integers(0, 4)),
        alu_op=rng.integers(-(2**31), 2**31, channels),
        per_element=bool(rng.random() < 0.5),
        cvt=bool(rng.random() < 0.5),
        cvt_offset=int(rng.integers(-(2**15), 2**15)),
        cvt_scale=int(rng.integers(-(2**15), 2**15)),
        cvt_shift=int(rng.integers(0, 40)),
    )
    params = SdpParams(
        channels=channels,
        cacc_shift=int(rng.integers(-1, 32)),
        x1=_random_x(rng, channels),
        x2=_random_x(rng, channels) if seed % 2 else None,
        y=y if seed % 3 else None,
        cvt_offset=int(rng.integers(-(2**20), 2**20)),
        cvt_scale=int(rng.integers(-(2**15), 2**15)),
        cvt_shift=int(rng.integers(0, 40)),
    )
    return acc, params, ew


@pytest.mark.parametrize("seed", range(6))
def test_compiled_chain_equals_the_torch_chain(seed, sim_engine):
    if sim_engine != "replay":
        pytest.skip("independent of the engine")
    acc, params, ew = _random_chain(seed)
    out = torch.empty(acc.shape, dtype=torch.int8)
    run_chain(acc, out, params, ew)
    assert torch.equal(out, chain_torch(acc, params, ew))


@pytest.mark.gpu
def test_the_fused_cuda_chain_equals_the_compiled_cpu_chain(sim_engine):
    """On CUDA the chain is one torch.compile kernel per structure; every seed's bytes equal
    the CPU loop's."""
    if sim_engine != "replay":
        pytest.skip("independent of the engine")
    for seed in range(8):  # each new chain structure compiles (seconds): a few suffice
        acc, params, ew = _random_chain(seed)
        out = torch.empty(acc.shape, dtype=torch.int8)
        run_chain(acc, out, params, ew)
        on_gpu = chain_torch(acc.cuda(), params, ew.cuda()).cpu()
        assert torch.equal(out, on_gpu), f"seed {seed}"


def _grouped(groups: int, k: int, c: int) -> torch.Tensor:
    w = torch.zeros(k, c, 3, 3, dtype=torch.int64)
    kg, cg = k // groups, c // groups
    for g in range(groups):
        w[g * kg : (g + 1) * kg, g * cg : (g + 1) * cg] = torch.randint(-9, 9, (kg, cg, 3, 3))
    return w


def test_block_diagonal_weights_are_found():
    torch.manual_seed(0)
    assert _block_groups(_grouped(8, 8, 8)) == 8  # depthwise
    assert _block_groups(_grouped(4, 16, 8)) == 4
    dense = torch.randint(1, 9, (8, 8, 3, 3))
    assert _block_groups(dense) == 1


@pytest.mark.parametrize(("groups", "stride", "pads"), [(8, 1, 1), (4, 2, 1), (1, 1, 0)])
def test_grouped_convolution_matches_the_definition(groups, stride, pads):
    torch.manual_seed(groups)
    c, h, w = 16, 9, 11
    x = torch.randint(-128, 128, (c, h, w))
    weights = _grouped(groups, 16, c)
    results = []
    for engine in (None, replay.immediate):
        nv = Nvdla("nv_small", engine=engine)
        write_feature(nv.memory, 0x1000, x)
        nv.memory.write(0x10000, pack_weights(weights))
        spec = ConvSpec(0x1000, 0x10000, 0x20000, (c, h, w), (16, 3, 3), stride=(stride, stride),
                        pads=(pads,) * 4, pad_value=-3, cvt=(0, 1, 6))  # fmt: skip
        program_conv(nv, spec)
        results.append(read_feature(nv.memory, 0x20000, (16, *spec.out_hw)))
    assert torch.equal(results[0], results[1])


def _sdp_with_gaps(nv: Nvdla, line: int, surf: int) -> None:
    """SDP from memory over a 16 x 3 x 4 cube whose lines and surfaces are spaced out."""
    wr = nv.write_reg
    for unit in ("SDP_RDMA", "SDP"):
        wr(unit, "D_DATA_CUBE_WIDTH", WIDTH=3)
        wr(unit, "D_DATA_CUBE_HEIGHT", HEIGHT=2)
        wr(unit, "D_DATA_CUBE_CHANNEL", CHANNEL=15)
    wr("SDP_RDMA", "D_SRC_BASE_ADDR_LOW", 0x1000)
    wr("SDP_RDMA", "D_SRC_LINE_STRIDE", line)
    wr("SDP_RDMA", "D_SRC_SURFACE_STRIDE", surf)
    wr("SDP_RDMA", "D_FEATURE_MODE_CFG", FLYING_MODE="OFF", IN_PRECISION="INT8",
       PROC_PRECISION="INT8", OUT_PRECISION="INT8")  # fmt: skip
    for dma in ("BRDMA", "NRDMA", "ERDMA"):
        wr("SDP_RDMA", f"D_{dma}_CFG", **{f"{dma}_DISABLE": "YES"})
    wr("SDP", "D_DST_BASE_ADDR_LOW", 0x8000)
    wr("SDP", "D_DST_LINE_STRIDE", line)
    wr("SDP", "D_DST_SURFACE_STRIDE", surf)
    wr("SDP", "D_FEATURE_MODE_CFG", FLYING_MODE="OFF", OUTPUT_DST="MEM")
    wr("SDP", "D_DATA_FORMAT", PROC_PRECISION="INT8", OUT_PRECISION="INT8")
    wr("SDP", "D_CVT_SCALE", 3)
    wr("SDP", "D_CVT_SHIFT", 1)
    for stem in ("BS", "BN", "EW"):
        wr("SDP", f"D_DP_{stem}_CFG", **{f"{stem}_BYPASS": "YES"})
    wr("SDP", "D_OP_ENABLE", OP_EN="ENABLE")
    wr("SDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE")


def test_surfaces_with_uninitialised_gaps():
    """Only the bytes of each line are addressable; the gaps between lines and surfaces are
    not, and stay untouched: no 'outside every initialised region'."""
    line, surf, atom = 64, 256, 8
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (16, 3, 4))
    full = Nvdla("nv_small")
    write_feature(full.memory, 0x1000, torch.from_numpy(x), line, surf)
    full.memory.alloc(0x8000, 2 * surf)
    _sdp_with_gaps(full, line, surf)
    expected = read_feature(full.memory, 0x8000, (16, 3, 4), line, surf)
    gappy = Nvdla("nv_small")
    for base in (0x1000, 0x8000):
        for s in range(2):
            for h in range(3):
                gappy.memory.alloc(base + s * surf + h * line, 4 * atom, fill=0x5A)
    write_feature(gappy.memory, 0x1000, torch.from_numpy(x), line, surf)
    _sdp_with_gaps(gappy, line, surf)
    assert torch.equal(read_feature(gappy.memory, 0x8000, (16, 3, 4), line, surf), expected)
    assert len(gappy.memory.regions) == 12  # nothing was allocated in the gaps
    with pytest.raises(DlakitError, match="outside every initialised region"):
        gappy.memory.read(0x1000 + 4 * atom, 1)


def test_batched_memory_shares_constants_and_views_one_image():
    bm = BatchedMemory(3)
    bm.alloc(0x100, 64)
    bm.alloc(0x1000, 16, shared=True)
    bm.load(0x1000, bytes(range(16)))
    view = bm.view(0x100, (2, 4), (8, 1), writable=True)
    assert view is not None and view.shape == (3, 2, 4)
    view[1] = 7
    image = bm.image(1)
    assert image.read(0x100, 4) == bytes([7] * 4) and bm.image(0).read(0x100, 4) == bytes(4)
    assert image.read(0x1000, 3) == bytes([0, 1, 2])
    assert bm.view(0x1000, (16,), (1,), writable=True) is None  # constants are read-only
    with pytest.raises(DlakitError, match="regions are fixed"):
        image.alloc(0x5000, 4)
    wrapped = BatchedMemory.wrap(image)
    wrapped.view(0x100, (1,), (1,), writable=True)[0, 0] = 9
    assert bm.image(1).read(0x100, 1) == bytes([9])


def test_gather_and_scatter_across_regions():
    mem = Memory()
    mem.alloc(0x10, 4)
    mem.alloc(0x40, 4)
    addrs = torch.tensor([0x10, 0x41, 0x13, 0x40])
    mem.scatter(addrs, torch.tensor([1, 2, 3, 4]))
    assert mem.gather(addrs).tolist() == [1, 2, 3, 4]
    with pytest.raises(DlakitError, match="outside"):
        mem.gather(torch.tensor([0x10, 0x20]))
