"""CDP (LRN with the LE/LO lookup tables) vs a per-element Python-int reference."""

import numpy as np
import pytest
import sim_reference as ref
import torch

from dlakit.sim.layout import packed_strides, read_feature, write_feature
from dlakit.sim.nvdla import Nvdla

SRC, DST = 0x6000_0000, 0x7000_0000


@pytest.mark.parametrize("seed", range(3))
def test_lrn_with_linear_tables(seed):
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 20)), 2, 3
    size = [3, 5, 7, 9][seed % 4]
    x = rng.integers(-128, 128, (c, h, w))
    le = [int(v) for v in rng.integers(0, 65536, 65)]
    lo = [int(v) for v in rng.integers(0, 65536, 257)]
    p = dict(
        le_start=int(rng.integers(-100, 100)),
        le_sel=int(rng.integers(8, 12)),
        lo_start=int(rng.integers(-100, 100)),
        lo_sel=int(rng.integers(6, 10)),
        le_u=(int(rng.integers(-2000, 2000)), int(rng.integers(-5, 10))),
        le_o=(int(rng.integers(-2000, 2000)), int(rng.integers(-5, 10))),
        lo_u=(int(rng.integers(-2000, 2000)), int(rng.integers(-5, 10))),
        lo_o=(int(rng.integers(-2000, 2000)), int(rng.integers(-5, 10))),
        uflow_lo=bool(rng.integers(2)),
        oflow_lo=bool(rng.integers(2)),
        hybrid_lo=bool(rng.integers(2)),
    )
    p["le_end"] = p["le_start"] + (64 << p["le_sel"])
    p["lo_end"] = p["lo_start"] + (256 << p["lo_sel"])
    offset, scale, shifter = (
        int(rng.integers(-10, 10)),
        int(rng.integers(1, 400)),
        int(rng.integers(0, 6)),
    )
    out = (int(rng.integers(-1000, 1000)), int(rng.integers(1, 300)), int(rng.integers(8, 20)))

    nv = Nvdla("nv_small")
    write_feature(nv.memory, SRC, torch.from_numpy(x))
    line, surf = packed_strides(h, w)
    nv.memory.alloc(DST, surf * -(-c // 8))
    wr = nv.write_reg
    wr("CDP_RDMA", "D_DATA_CUBE_WIDTH", WIDTH=w - 1)
    wr("CDP_RDMA", "D_DATA_CUBE_HEIGHT", HEIGHT=h - 1)
    wr("CDP_RDMA", "D_DATA_CUBE_CHANNEL", CHANNEL=c - 1)
    wr("CDP_RDMA", "D_SRC_BASE_ADDR_LOW", SRC)
    wr("CDP_RDMA", "D_SRC_LINE_STRIDE", line)
    wr("CDP_RDMA", "D_SRC_SURFACE_STRIDE", surf)
    wr("CDP_RDMA", "D_DATA_FORMAT", INPUT_DATA="INT8")
    wr("CDP", "D_DATA_FORMAT", INPUT_DATA_TYPE="INT8")
    wr("CDP", "D_DST_BASE_ADDR_LOW", DST)
    wr("CDP", "D_DST_LINE_STRIDE", line)
    wr("CDP", "D_DST_SURFACE_STRIDE", surf)
    wr("CDP", "D_LRN_CFG", NORMALZ_LEN=f"LEN{size}")
    wr("CDP", "D_FUNC_BYPASS", SQSUM_BYPASS="DISABLE", MUL_BYPASS="DISABLE")
    wr("CDP", "D_DATIN_OFFSET", offset & 0xFFFF)
    wr("CDP", "D_DATIN_SCALE", scale)
    wr("CDP", "D_DATIN_SHIFTER", shifter)
    wr("CDP", "D_DATOUT_OFFSET", out[0] & 0xFFFFFFFF)
    wr("CDP", "D_DATOUT_SCALE", out[1])
    wr("CDP", "D_DATOUT_SHIFTER", out[2])
    for table_id, table in ((0, le), (1, lo)):
        wr("CDP", "S_LUT_ACCESS_CFG", LUT_TABLE_ID=table_id, LUT_ACCESS_TYPE="WRITE", LUT_ADDR=0)
        for value in table:
            wr("CDP", "S_LUT_ACCESS_DATA", value)
    wr(
        "CDP",
        "S_LUT_CFG",
        LUT_LE_FUNCTION="LINEAR",
        LUT_UFLOW_PRIORITY=int(p["uflow_lo"]),
        LUT_OFLOW_PRIORITY=int(p["oflow_lo"]),
        LUT_HYBRID_PRIORITY=int(p["hybrid_lo"]),
    )
    wr("CDP", "S_LUT_INFO", LUT_LE_INDEX_SELECT=p["le_sel"], LUT_LO_INDEX_SELECT=p["lo_sel"])
    for name in ("LE_START", "LE_END", "LO_START", "LO_END"):
        value = p[name.lower()]
        wr("CDP", f"S_LUT_{name}_LOW", value & 0xFFFFFFFF)
        wr("CDP", f"S_LUT_{name}_HIGH", (value >> 32) & 0x3F)
    for table in ("LE", "LO"):
        u, o = p[f"{table.lower()}_u"], p[f"{table.lower()}_o"]
        wr(
            "CDP",
            f"S_LUT_{table}_SLOPE_SCALE",
            **{f"LUT_{table}_SLOPE_UFLOW_SCALE": u[0], f"LUT_{table}_SLOPE_OFLOW_SCALE": o[0]},
        )
        wr(
            "CDP",
            f"S_LUT_{table}_SLOPE_SHIFT",
            **{f"LUT_{table}_SLOPE_UFLOW_SHIFT": u[1], f"LUT_{table}_SLOPE_OFLOW_SHIFT": o[1]},
        )
    wr("CDP", "D_OP_ENABLE", OP_EN="ENABLE")
    wr("CDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE")
    assert nv.take_interrupt("CDP")
    got = read_feature(nv.memory, DST, (c, h, w)).cpu().numpy()
    expected = ref.cdp(x, offset, scale, shifter, size, le, lo, p, *out)
    np.testing.assert_array_equal(got, expected)
