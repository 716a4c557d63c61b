"""Register front end: ping-pong groups, launch on the last OP_ENABLE, GLB interrupt bits."""

import numpy as np
import sim_reference as ref
import torch

from dlakit.sim.layout import pack_weights, read_feature, write_feature
from dlakit.sim.nvdla import Nvdla
from dlakit.sim.program import ConvSpec, program_conv


def _setup(nv: Nvdla) -> ConvSpec:
    write_feature(nv.memory, 0x1000, torch.ones((8, 2, 2), dtype=torch.int64))
    nv.memory.write(0x8000, pack_weights(torch.ones((8, 8, 1, 1), dtype=torch.int64)))
    return ConvSpec(0x1000, 0x8000, 0x9000, (8, 2, 2), (8, 1, 1))


def _status(nv: Nvdla) -> dict[str, int]:
    return nv.regmap.decode("GLB", "S_INTR_STATUS", nv.read_reg("GLB", "S_INTR_STATUS"))


def test_group_one_runs_and_raises_group_one_interrupts():
    nv = Nvdla("nv_small")
    program_conv(nv, _setup(nv), group=1)
    status = _status(nv)
    for stem in ("SDP_DONE_STATUS", "CACC_DONE_STATUS", "CDMA_DAT_DONE_STATUS"):
        assert (status[f"{stem}0"], status[f"{stem}1"]) == (0, 1)
    assert nv.view("CDMA", 1)["D_OP_ENABLE"] == 0
    assert read_feature(nv.memory, 0x9000, (8, 2, 2)).eq(8).all()  # 8 channels of 1 x 1


def test_operation_waits_for_the_whole_pipe_and_status_clears_on_write_one():
    nv = Nvdla("nv_small")
    spec = _setup(nv)
    program_conv(nv, spec)
    assert nv.operations == 1
    nv.write_reg("GLB", "S_INTR_STATUS", SDP_DONE_STATUS0=1)
    assert _status(nv)["SDP_DONE_STATUS0"] == 0 and _status(nv)["CACC_DONE_STATUS0"] == 1
    for unit in ("SDP", "CACC", "CMAC_A", "CMAC_B", "CSC"):
        nv.write_reg(unit, "D_OP_ENABLE", OP_EN="ENABLE")
    assert nv.operations == 1  # CDMA not enabled yet: nothing runs
    nv.write_reg("CDMA", "D_OP_ENABLE", OP_EN="ENABLE")
    assert nv.operations == 2 and nv.take_interrupt("SDP")


def test_group_registers_are_separate():
    nv = Nvdla("nv_small")
    nv.write_reg("SDP", "S_POINTER", PRODUCER=1)
    nv.write_reg("SDP", "D_CVT_SCALE", 7)
    nv.write_reg("SDP", "S_POINTER", PRODUCER=0)
    nv.write_reg("SDP", "D_CVT_SCALE", 3)
    assert (nv.view("SDP", 0)["D_CVT_SCALE"], nv.view("SDP", 1)["D_CVT_SCALE"]) == (3, 7)


def test_conv_into_pdp_on_the_fly_matches_reference():
    rng = np.random.default_rng(3)
    c, h, w, k = 12, 6, 8, 10
    x = rng.integers(-128, 128, (c, h, w))
    wt = rng.integers(-128, 128, (k, c, 3, 3))
    nv = Nvdla("nv_small")
    write_feature(nv.memory, 0x1000, torch.from_numpy(x))
    nv.memory.write(0x10000, pack_weights(torch.from_numpy(wt)))
    nv.memory.alloc(0x40000, 16 * 3 * 4)
    wr = nv.write_reg
    wr("PDP", "D_DATA_CUBE_IN_WIDTH", CUBE_IN_WIDTH=w - 1)
    wr("PDP", "D_DATA_CUBE_IN_HEIGHT", CUBE_IN_HEIGHT=h - 1)
    wr("PDP", "D_DATA_CUBE_IN_CHANNEL", CUBE_IN_CHANNEL=k - 1)
    wr("PDP", "D_DATA_CUBE_OUT_WIDTH", CUBE_OUT_WIDTH=w // 2 - 1)
    wr("PDP", "D_DATA_CUBE_OUT_HEIGHT", CUBE_OUT_HEIGHT=h // 2 - 1)
    wr("PDP", "D_DATA_CUBE_OUT_CHANNEL", CUBE_OUT_CHANNEL=k - 1)
    wr("PDP", "D_DATA_FORMAT", INPUT_DATA="INT8")
    wr("PDP", "D_OPERATION_MODE_CFG", POOLING_METHOD="POOLING_METHOD_MAX", FLYING_MODE="ON_FLYING")
    wr(
        "PDP",
        "D_POOLING_KERNEL_CFG",
        KERNEL_WIDTH=1,
        KERNEL_HEIGHT=1,
        KERNEL_STRIDE_WIDTH=1,
        KERNEL_STRIDE_HEIGHT=1,
    )
    wr("PDP", "D_DST_BASE_ADDR_LOW", 0x40000)
    wr("PDP", "D_DST_LINE_STRIDE", (w // 2) * 8)
    wr("PDP", "D_DST_SURFACE_STRIDE", (w // 2) * (h // 2) * 8)
    wr("PDP", "D_OP_ENABLE", OP_EN="ENABLE")
    spec = ConvSpec(
        0x1000,
        0x10000,
        0x30000,
        (c, h, w),
        (k, 3, 3),
        pads=(1, 1, 1, 1),
        clip_truncate=6,
        sdp_regs={"D_FEATURE_MODE_CFG": {"FLYING_MODE": "ON", "OUTPUT_DST": "PDP"}},
    )
    program_conv(nv, spec)
    assert nv.take_interrupt("PDP") and nv.take_interrupt("SDP")
    conv = ref.cvt_out(ref.cacc(ref.conv(x, wt, (1, 1), (1, 1), (1, 1, 1, 1), 0), 6), 0, 1, 0)
    expected = ref.pool(conv, "MAX", (2, 2), (2, 2), (0, 0, 0, 0), (h // 2, w // 2))
    got = read_feature(nv.memory, 0x40000, (k, h // 2, w // 2)).cpu().numpy()
    np.testing.assert_array_equal(got, expected)
