"""SDP from memory, programmed by register writes, vs the numpy int64 reference."""

import numpy as np
import pytest
import sim_reference as ref
import torch

from dlakit.sim.layout import packed_strides, read_feature, write_feature
from dlakit.sim.nvdla import Nvdla

SRC, DST, OPS = 0x1000_0000, 0x2000_0000, 0x3000_0000


def _program(nv, shape, bs=None, bn=None, brdma=None, cvt=(0, 1, 0)):
    c, h, w = shape
    line, surf = packed_strides(h, w)
    wr = nv.write_reg
    wr("SDP_RDMA", "D_DATA_CUBE_WIDTH", WIDTH=w - 1)
    wr("SDP_RDMA", "D_DATA_CUBE_HEIGHT", HEIGHT=h - 1)
    wr("SDP_RDMA", "D_DATA_CUBE_CHANNEL", CHANNEL=c - 1)
    wr("SDP_RDMA", "D_SRC_BASE_ADDR_LOW", SRC)
    wr("SDP_RDMA", "D_SRC_LINE_STRIDE", line)
    wr("SDP_RDMA", "D_SRC_SURFACE_STRIDE", surf)
    wr(
        "SDP_RDMA",
        "D_FEATURE_MODE_CFG",
        FLYING_MODE="OFF",
        IN_PRECISION="INT8",
        PROC_PRECISION="INT8",
        OUT_PRECISION="INT8",
    )
    for dma in ("BRDMA", "NRDMA", "ERDMA"):
        wr("SDP_RDMA", f"D_{dma}_CFG", **{f"{dma}_DISABLE": "YES"})
    if brdma:
        wr("SDP_RDMA", "D_BRDMA_CFG", **brdma)
        wr("SDP_RDMA", "D_BS_BASE_ADDR_LOW", OPS)
    wr("SDP", "D_DATA_CUBE_WIDTH", WIDTH=w - 1)
    wr("SDP", "D_DATA_CUBE_HEIGHT", HEIGHT=h - 1)
    wr("SDP", "D_DATA_CUBE_CHANNEL", CHANNEL=c - 1)
    wr("SDP", "D_DST_BASE_ADDR_LOW", DST)
    wr("SDP", "D_DST_LINE_STRIDE", line)
    wr("SDP", "D_DST_SURFACE_STRIDE", surf)
    wr("SDP", "D_FEATURE_MODE_CFG", FLYING_MODE="OFF", OUTPUT_DST="MEM")
    wr("SDP", "D_DATA_FORMAT", PROC_PRECISION="INT8", OUT_PRECISION="INT8")
    wr("SDP", "D_CVT_OFFSET", cvt[0] & 0xFFFFFFFF)
    wr("SDP", "D_CVT_SCALE", cvt[1] & 0xFFFF)
    wr("SDP", "D_CVT_SHIFT", cvt[2])
    for stem, cfg in (("BS", bs), ("BN", bn), ("EW", None)):
        if cfg is None:
            wr("SDP", f"D_DP_{stem}_CFG", **{f"{stem}_BYPASS": "YES"})
            continue
        for reg, fields in cfg.items():
            wr("SDP", reg, **fields)
    nv.memory.alloc(DST, surf * -(-c // 8))
    wr("SDP", "D_OP_ENABLE", OP_EN="ENABLE")
    wr("SDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE")
    assert nv.take_interrupt("SDP")


def _x_cfg(stem, alu_algo, alu_shift, alu, mul, shift, prelu, relu, src="REG"):
    cfg = {
        f"D_DP_{stem}_CFG": {
            f"{stem}_BYPASS": "NO",
            f"{stem}_ALU_BYPASS": "YES" if alu is None else "NO",
            f"{stem}_ALU_ALGO": alu_algo,
            f"{stem}_MUL_BYPASS": "YES" if mul is None else "NO",
            f"{stem}_MUL_PRELU": int(prelu),
            f"{stem}_RELU_BYPASS": "NO" if relu else "YES",
        },
        f"D_DP_{stem}_ALU_CFG": {f"{stem}_ALU_SRC": src, f"{stem}_ALU_SHIFT_VALUE": alu_shift},
        f"D_DP_{stem}_MUL_CFG": {f"{stem}_MUL_SRC": src, f"{stem}_MUL_SHIFT_VALUE": shift},
    }
    if src == "REG":
        cfg[f"D_DP_{stem}_ALU_SRC_VALUE"] = {f"{stem}_ALU_OPERAND": (alu or 0) & 0xFFFF}
        cfg[f"D_DP_{stem}_MUL_SRC_VALUE"] = {f"{stem}_MUL_OPERAND": (mul or 0) & 0xFFFF}
    return cfg


@pytest.mark.parametrize("seed", range(8))
def test_register_operands_x1_x2_and_converter(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 30)), int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    x = rng.integers(-128, 128, shape)
    units = []
    for _ in range(2):
        units.append(
            dict(
                alu_algo=str(rng.choice(["SUM", "MAX", "MIN"])),
                alu_shift=int(rng.integers(0, 20)),
                alu=int(rng.integers(-(2**15), 2**15)) if rng.random() < 0.8 else None,
                mul=int(rng.integers(-(2**15), 2**15)) if rng.random() < 0.8 else None,
                shift=int(rng.integers(0, 20)),
                prelu=bool(rng.random() < 0.3),
                relu=bool(rng.random() < 0.3),
            )
        )
    cvt = (
        int(rng.integers(-1000, 1000)),
        int(rng.integers(-(2**15), 2**15)),
        int(rng.integers(0, 30)),
    )
    nv = Nvdla("nv_small")
    write_feature(nv.memory, SRC, torch.from_numpy(x))
    _program(nv, shape, bs=_x_cfg("BS", **units[0]), bn=_x_cfg("BN", **units[1]), cvt=cvt)
    y = x
    for u in units:
        y = ref.x_unit(y, **u)
    got = read_feature(nv.memory, DST, shape).cpu().numpy()
    np.testing.assert_array_equal(got, ref.cvt_out(y, *cvt))


@pytest.mark.parametrize(("use", "size"), [("ALU", 1), ("MUL", 2), ("BOTH", 2), ("BOTH", 1)])
def test_per_channel_operands_from_memory(use, size):
    rng = np.random.default_rng(7)
    shape = (19, 3, 4)
    x = rng.integers(-128, 128, shape)
    lim = 1 << (8 * size - 1)
    alu = rng.integers(-lim, lim, shape[0])
    mul = rng.integers(-lim, lim, shape[0])
    pairs = {"ALU": [alu], "MUL": [mul], "BOTH": [alu, mul]}[use]
    # Interleaved ALU, MUL per channel; the RDMA reads the padded channel count (24 here).
    data = np.stack(pairs, axis=1).reshape(-1)
    data = np.concatenate([data, np.zeros(len(pairs) * 5, dtype=data.dtype)])
    nv = Nvdla("nv_small")
    write_feature(nv.memory, SRC, torch.from_numpy(x))
    nv.memory.write(OPS, data.astype(f"<i{size}").tobytes())
    cfg = _x_cfg("BS", "SUM", 3, 0, 0, 5, False, False, src="MEM")
    if use == "ALU":
        cfg["D_DP_BS_CFG"]["BS_MUL_BYPASS"] = "YES"
    if use == "MUL":
        cfg["D_DP_BS_CFG"]["BS_ALU_BYPASS"] = "YES"
    brdma = {
        "BRDMA_DISABLE": "NO",
        "BRDMA_DATA_USE": use,
        "BRDMA_DATA_MODE": "PER_KERNEL",
        "BRDMA_DATA_SIZE": "ONE_BYTE" if size == 1 else "TWO_BYTE",
    }
    _program(nv, shape, bs=cfg, brdma=brdma, cvt=(0, 1, 0))
    a = alu[:, None, None] if use != "MUL" else None
    m = mul[:, None, None] if use != "ALU" else None
    expected = ref.cvt_out(ref.x_unit(x, alu=a, alu_shift=3, mul=m, shift=5), 0, 1, 0)
    np.testing.assert_array_equal(read_feature(nv.memory, DST, shape).cpu().numpy(), expected)


def test_output_saturates_to_int8_and_int17():
    x = np.array([[[127, -128, 100, -100]]])
    nv = Nvdla("nv_small")
    write_feature(nv.memory, SRC, torch.from_numpy(x))
    _program(nv, x.shape, cvt=(-5, 32767, 0))
    got = read_feature(nv.memory, DST, x.shape).cpu().numpy()
    np.testing.assert_array_equal(got, [[[127, -128, 127, -128]]])
    np.testing.assert_array_equal(got, ref.cvt_out(x, -5, 32767, 0))


@pytest.mark.parametrize(("use", "size"), [("BOTH", 2), ("MUL", 2), ("ALU", 1)])
def test_per_element_operands_from_memory(use, size):
    rng = np.random.default_rng(11)
    c, h, w = 11, 3, 2
    x = rng.integers(-128, 128, (c, h, w))
    lim = 1 << (8 * size - 1)
    alu = rng.integers(-lim, lim, (c, h, w))
    mul = rng.integers(-lim, lim, (c, h, w))
    comps = {"ALU": [alu], "MUL": [mul], "BOTH": [alu, mul]}[use]
    n = len(comps)
    # Operand cube as the C model reads it: surfaces of 8 channels, each (h, w) position holds
    # 8 elements of n components of `size` bytes, ALU component first.
    cp = 16
    line, surf = w * 8 * n * size, h * w * 8 * n * size
    buf = np.zeros(surf * cp // 8, dtype=np.uint8)
    for ch in range(c):
        for y in range(h):
            for xx in range(w):
                for i, comp in enumerate(comps):
                    off = (
                        (ch // 8) * surf + y * line + xx * 8 * n * size + ((ch % 8) * n + i) * size
                    )
                    buf[off : off + size] = np.frombuffer(
                        int(comp[ch, y, xx]).to_bytes(size, "little", signed=True), np.uint8
                    )
    nv = Nvdla("nv_small")
    write_feature(nv.memory, SRC, torch.from_numpy(x))
    nv.memory.write(OPS, buf.tobytes())
    nv.write_reg("SDP_RDMA", "D_BS_LINE_STRIDE", line)
    nv.write_reg("SDP_RDMA", "D_BS_SURFACE_STRIDE", surf)
    cfg = _x_cfg("BS", "MIN", 2, 0, 0, 7, False, False, src="MEM")
    if use == "ALU":
        cfg["D_DP_BS_CFG"]["BS_MUL_BYPASS"] = "YES"
    if use == "MUL":
        cfg["D_DP_BS_CFG"]["BS_ALU_BYPASS"] = "YES"
    brdma = {
        "BRDMA_DISABLE": "NO",
        "BRDMA_DATA_USE": use,
        "BRDMA_DATA_MODE": "PER_ELEMENT",
        "BRDMA_DATA_SIZE": "ONE_BYTE" if size == 1 else "TWO_BYTE",
    }
    _program(nv, (c, h, w), bs=cfg, brdma=brdma)
    expected = ref.cvt_out(
        ref.x_unit(
            x,
            alu=alu if use != "MUL" else None,
            alu_algo="MIN",
            alu_shift=2,
            mul=mul if use != "ALU" else None,
            shift=7,
        ),
        0,
        1,
        0,
    )
    np.testing.assert_array_equal(read_feature(nv.memory, DST, (c, h, w)).cpu().numpy(), expected)
