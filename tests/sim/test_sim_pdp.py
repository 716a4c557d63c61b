"""PDP pooling from memory, programmed by register writes, vs explicit numpy window loops."""

import numpy as np
import pytest
import sim_reference as ref
import torch

from dlakit.sim.layout import packed_strides, read_feature, write_feature
from dlakit.sim.nvdla import Nvdla

SRC, DST = 0x4000_0000, 0x5000_0000
RECIP = {1: 0x10000, 2: 0x8000, 3: 0x5555, 4: 0x4000, 5: 0x3333, 6: 0x2AAA, 7: 0x2492, 8: 0x2000}


def _pool(x, method, kernel, stride, pads, pad_value=0, pad_table=None):
    c, h, w = x.shape
    left, right, top, bottom = pads
    oh = (h + top + bottom - kernel[0]) // stride[0] + 1
    ow = (w + left + right - kernel[1]) // stride[1] + 1
    nv = Nvdla("nv_small")
    write_feature(nv.memory, SRC, torch.from_numpy(x))
    line, surf = packed_strides(h, w)
    oline, osurf = packed_strides(oh, ow)
    nv.memory.alloc(DST, osurf * -(-c // 8))
    wr = nv.write_reg
    for unit in ("PDP_RDMA", "PDP"):
        wr(unit, "D_DATA_CUBE_IN_WIDTH", CUBE_IN_WIDTH=w - 1)
        wr(unit, "D_DATA_CUBE_IN_HEIGHT", CUBE_IN_HEIGHT=h - 1)
        wr(unit, "D_DATA_CUBE_IN_CHANNEL", CUBE_IN_CHANNEL=c - 1)
        wr(unit, "D_DATA_FORMAT", INPUT_DATA="INT8")
    wr("PDP_RDMA", "D_SRC_BASE_ADDR_LOW", SRC)
    wr("PDP_RDMA", "D_SRC_LINE_STRIDE", line)
    wr("PDP_RDMA", "D_SRC_SURFACE_STRIDE", surf)
    wr("PDP_RDMA", "D_FLYING_MODE", FLYING_MODE="OFF_FLYING")
    wr("PDP", "D_DATA_CUBE_OUT_WIDTH", CUBE_OUT_WIDTH=ow - 1)
    wr("PDP", "D_DATA_CUBE_OUT_HEIGHT", CUBE_OUT_HEIGHT=oh - 1)
    wr("PDP", "D_DATA_CUBE_OUT_CHANNEL", CUBE_OUT_CHANNEL=c - 1)
    wr(
        "PDP",
        "D_OPERATION_MODE_CFG",
        POOLING_METHOD=f"POOLING_METHOD_{method}",
        FLYING_MODE="OFF_FLYING",
    )
    wr(
        "PDP",
        "D_POOLING_KERNEL_CFG",
        KERNEL_WIDTH=kernel[1] - 1,
        KERNEL_HEIGHT=kernel[0] - 1,
        KERNEL_STRIDE_WIDTH=stride[1] - 1,
        KERNEL_STRIDE_HEIGHT=stride[0] - 1,
    )
    wr(
        "PDP",
        "D_POOLING_PADDING_CFG",
        PAD_LEFT=left,
        PAD_RIGHT=right,
        PAD_TOP=top,
        PAD_BOTTOM=bottom,
    )
    wr("PDP", "D_RECIP_KERNEL_WIDTH", RECIP_KERNEL_WIDTH=RECIP[kernel[1]])
    wr("PDP", "D_RECIP_KERNEL_HEIGHT", RECIP_KERNEL_HEIGHT=RECIP[kernel[0]])
    table = pad_table or [(n + 1) * pad_value for n in range(7)]
    widths = (19,) * 7
    for n, value in enumerate(table, start=1):
        wr("PDP", f"D_POOLING_PADDING_VALUE_{n}_CFG", value & ((1 << widths[n - 1]) - 1))
    wr("PDP", "D_DST_BASE_ADDR_LOW", DST)
    wr("PDP", "D_DST_LINE_STRIDE", oline)
    wr("PDP", "D_DST_SURFACE_STRIDE", osurf)
    wr("PDP", "D_OP_ENABLE", OP_EN="ENABLE")
    wr("PDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE")
    assert nv.take_interrupt("PDP")
    return read_feature(nv.memory, DST, (c, oh, ow)).cpu().numpy(), (oh, ow)


@pytest.mark.parametrize("seed", range(9))
def test_random_pooling(seed):
    rng = np.random.default_rng(seed)
    method = ["MAX", "MIN", "AVERAGE"][seed % 3]
    kernel = tuple(int(v) for v in rng.integers(1, 9, 2))
    stride = tuple(int(v) for v in rng.integers(1, 5, 2))
    pads = (
        int(rng.integers(0, kernel[1])),
        int(rng.integers(0, kernel[1])),
        int(rng.integers(0, kernel[0])),
        int(rng.integers(0, kernel[0])),
    )
    shape = (
        int(rng.integers(1, 20)),
        kernel[0] + int(rng.integers(0, 8)),
        kernel[1] + int(rng.integers(0, 8)),
    )
    x = rng.integers(-128, 128, shape)
    pad_value = int(rng.integers(-128, 128))
    got, out_hw = _pool(x, method, kernel, stride, pads, pad_value)
    recip = (RECIP[kernel[1]], RECIP[kernel[0]])
    table = tuple((n + 1) * pad_value for n in range(7))
    expected = ref.pool(x, method, kernel, stride, pads, out_hw, table, recip)
    np.testing.assert_array_equal(got, expected)


def test_average_of_extremes_stays_in_int8():
    x = np.full((8, 3, 3), 127)
    x[4:] = -128
    got, out_hw = _pool(x, "AVERAGE", (3, 3), (1, 1), (1, 1, 1, 1), pad_value=127)
    table = tuple((n + 1) * 127 for n in range(7))
    expected = ref.pool(x, "AVERAGE", (3, 3), (1, 1), (1, 1, 1, 1), out_hw, table, (0x5555, 0x5555))
    np.testing.assert_array_equal(got, expected)
    assert got.max() == 127 and got.min() == -128


@pytest.mark.parametrize("seed", range(3))
def test_any_padding_value_table(seed):
    # The table entries are independent registers (the C model keeps 8..11 bits of them).
    rng = np.random.default_rng(100 + seed)
    kernel = (int(rng.integers(2, 9)), int(rng.integers(2, 9)))
    pads = (
        int(rng.integers(0, kernel[1])),
        int(rng.integers(0, kernel[1])),
        int(rng.integers(0, kernel[0])),
        int(rng.integers(0, kernel[0])),
    )
    shape = (9, kernel[0] + int(rng.integers(0, 4)), kernel[1] + int(rng.integers(0, 4)))
    x = rng.integers(-128, 128, shape)
    table = [int(rng.integers(-(1 << (b - 1)), 1 << (b - 1))) for b in (8, 9, 10, 10, 11, 11, 11)]
    got, out_hw = _pool(x, "AVERAGE", kernel, (1, 2), pads, pad_table=table)
    recip = (RECIP[kernel[1]], RECIP[kernel[0]])
    expected = ref.pool(x, "AVERAGE", kernel, (1, 2), pads, out_hw, tuple(table), recip)
    np.testing.assert_array_equal(got, expected)
