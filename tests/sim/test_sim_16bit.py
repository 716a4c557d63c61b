"""nv_full's 16-bit datapaths through the register interface: INT16 convolution vs the numpy
int64 reference, FP16 convolution vs the exact sum of products, RUBIK and BDMA vs element loops."""

import numpy as np
import pytest
import sim_reference as ref
import torch

from dlakit.errors import DlakitError
from dlakit.sim.layout import weight_offsets
from dlakit.sim.nvdla import Nvdla
from dlakit.sim.precision import read_elements, write_elements
from dlakit.sim.program import ConvSpec, program_conv

IN, WT, OUT = 0x8000_0000, 0x8100_0000, 0x8200_0000
ATOM = 32  # nv_full: 16 INT16/FP16 channels per feature atom


def _pack16(w: np.ndarray) -> bytes:
    """16-bit DC weights: kernel groups of 16 (INT16 atomic K), channel blocks of 64."""
    k, c, r, s = w.shape
    offsets = weight_offsets(k, c, r, s, 16, 64).reshape(-1).numpy() * 2
    buf = np.zeros(-(-(k * c * r * s * 2) // 128) * 128, dtype=np.uint8)
    v = w.reshape(-1).astype(np.int64) & 0xFFFF
    buf[offsets], buf[offsets + 1] = v & 0xFF, v >> 8
    return buf.tobytes()


def _conv(spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    nv = Nvdla("nv_full")
    c, h, wd = x.shape
    cp = -(-c // 16) * 16
    full = np.zeros((cp, h, wd), dtype=np.int64)
    full[:c] = x
    nv.memory.alloc(IN, cp // 16 * h * wd * ATOM)
    write_elements(
        nv.memory, IN, torch.from_numpy(full), wd * ATOM, h * wd * ATOM, ATOM, spec.precision
    )
    nv.memory.write(WT, _pack16(w))
    program_conv(nv, spec)
    assert nv.take_interrupt("SDP")
    k = w.shape[0]
    oh, ow = spec.out_hw
    out = read_elements(
        nv.memory, OUT, -(-k // 16) * 16, oh, ow, ow * ATOM, oh * ow * ATOM, ATOM, spec.precision
    )
    return out[:k].numpy()


@pytest.mark.parametrize("seed", range(3))
def test_int16_convolution(seed):
    rng = np.random.default_rng(seed)
    c, h, w, k, r, s = 70, 6, 7, 20, 3, 2  # two channel blocks, two kernel groups
    x = rng.integers(-(1 << 15), 1 << 15, (c, h, w))
    wt = rng.integers(-(1 << 15), 1 << 15, (k, c, r, s))
    spec = ConvSpec(
        IN,
        WT,
        OUT,
        (c, h, w),
        (k, r, s),
        (1, 2),
        (1, 1),
        (1, 0, 1, 1),
        pad_value=-300,
        clip_truncate=int(rng.integers(8, 20)),
        cvt=(int(rng.integers(-99, 99)), 3, 4),
        precision="INT16",
    )
    acc = ref.conv(x, wt, spec.stride, spec.dilation, spec.pads, spec.pad_value)
    expected = ref.sat(
        ref.sat(ref.rnd((ref.cacc(acc, spec.clip_truncate) - spec.cvt[0]) * 3, 4), 17), 16
    )
    np.testing.assert_array_equal(_conv(spec, x, wt), expected)


def test_fp16_convolution_is_the_rounded_sum_of_products():
    rng = np.random.default_rng(7)
    c, h, w, k, r, s = 80, 5, 5, 18, 3, 3
    x = rng.normal(0, 1, (c, h, w)).astype(np.float16)
    x[rng.random(x.shape) < 0.2] = 0  # zero (masked) channels
    wt = rng.normal(0, 0.1, (k, c, r, s)).astype(np.float16)
    spec = ConvSpec(IN, WT, OUT, (c, h, w), (k, r, s), pads=(1, 1, 1, 1), precision="FP16")
    got = _conv(spec, x.view(np.uint16).astype(np.int64), wt.view(np.uint16).astype(np.int64))
    got = got.astype(np.uint16).view(np.float16).astype(np.float64)
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    exact = np.zeros((k, h, w))
    for i in range(r):
        for j in range(s):
            exact += np.einsum(
                "kc,chw->khw", wt[:, :, i, j].astype(np.float64), xp[:, i : i + h, j : j + w]
            )
    rounded = exact.astype(np.float16).astype(np.float64)
    ulp = np.spacing(np.abs(rounded).astype(np.float16)).astype(np.float64)
    assert np.abs(got - exact).max() <= (2 * ulp).max()
    assert np.mean(got == rounded) > 0.9


def test_fp16_needs_a_target_with_16bit_macs():
    spec = ConvSpec(IN, WT, OUT, (8, 2, 2), (8, 1, 1), precision="FP16")
    nv = Nvdla("nv_small")
    nv.memory.alloc(IN, 4096)
    with pytest.raises(DlakitError, match=r"FP16 is not modelled.*INT8-only"):
        program_conv(nv, spec)


def _rubik(nv: Nvdla, mode: str, prec: str, regs: dict) -> None:
    w = nv.write_reg
    w("RBK", "D_MISC_CFG", RUBIK_MODE=mode, IN_PRECISION=prec)
    for reg, value in regs.items():
        if isinstance(value, int):
            w("RBK", reg, value)
        else:
            w("RBK", reg, **value)
    w("RBK", "D_OP_ENABLE", OP_EN="ENABLE")
    assert nv.take_interrupt("RBK")


def test_rubik_contract_split_merge():
    rng = np.random.default_rng(3)
    nv = Nvdla("nv_full")
    # CONTRACT, INT8: 2x3 input of (SX*SY*S) surfaces -> S surfaces of (2*SY)x(3*SX)
    sx, sy, s_out, h, w = 2, 3, 2, 2, 3
    cube = rng.integers(0, 256, (sx * sy * s_out, h, w, 32)).astype(np.uint8)
    nv.memory.write(IN, cube.tobytes())
    oline, osurf = w * sx * 32, h * sy * w * sx * 32
    nv.memory.alloc(OUT, s_out * osurf)
    _rubik(
        nv,
        "CONTRACT",
        "INT8",
        {
            "D_DATAIN_SIZE_0": {"DATAIN_WIDTH": w - 1, "DATAIN_HEIGHT": h - 1},
            "D_DATAIN_SIZE_1": {"DATAIN_CHANNEL": cube.shape[0] * 32 - 1},
            "D_DATAOUT_SIZE_1": {"DATAOUT_CHANNEL": s_out * 32 - 1},
            "D_DAIN_ADDR_LOW": IN,
            "D_DAOUT_ADDR_LOW": OUT,
            "D_DAIN_LINE_STRIDE": w * 32,
            "D_DAIN_SURF_STRIDE": h * w * 32,
            "D_DAOUT_LINE_STRIDE": oline,
            "D_DAOUT_SURF_STRIDE": osurf,
            "D_CONTRACT_STRIDE_1": sy * oline,
            "D_DECONV_STRIDE": {"DECONV_X_STRIDE": sx - 1, "DECONV_Y_STRIDE": sy - 1},
        },
    )
    got = np.frombuffer(nv.memory.read(OUT, s_out * osurf), np.uint8).reshape(
        s_out, h * sy, w * sx, 32
    )
    for s in range(s_out):
        for y in range(h):
            for j in range(sy):
                for x in range(w):
                    for i in range(sx):
                        assert (
                            got[s, y * sy + j, x * sx + i] == cube[(j * sx + i) * s_out + s, y, x]
                        ).all()
    # SPLIT then MERGE, INT16: a 20-channel cube to 20 planes and back
    c, h, w = 20, 3, 5
    values = rng.integers(-(1 << 15), 1 << 15, (32, h, w))
    nv.memory.alloc(IN, 2 * h * w * 32)
    write_elements(nv.memory, IN, torch.from_numpy(values), w * 32, h * w * 32, 32, "INT16")
    plane = 1024
    nv.memory.alloc(WT, c * plane)
    common = {
        "D_DATAIN_SIZE_0": {"DATAIN_WIDTH": w - 1, "DATAIN_HEIGHT": h - 1},
        "D_DATAIN_SIZE_1": {"DATAIN_CHANNEL": c - 1},
        "D_DATAOUT_SIZE_1": {"DATAOUT_CHANNEL": c - 1},
    }
    _rubik(
        nv,
        "SPLIT",
        "INT16",
        {
            **common,
            "D_DAIN_ADDR_LOW": IN,
            "D_DAOUT_ADDR_LOW": WT,
            "D_DAIN_LINE_STRIDE": w * 32,
            "D_DAIN_SURF_STRIDE": h * w * 32,
            "D_DAOUT_LINE_STRIDE": 64,
            "D_DAOUT_PLANAR_STRIDE": plane,
        },
    )
    planes = np.frombuffer(nv.memory.read(WT, c * plane), np.int16).reshape(c, plane // 2)
    for ch in range(c):
        for y in range(h):
            np.testing.assert_array_equal(planes[ch, y * 32 : y * 32 + w], values[ch, y])
            assert not planes[ch, y * 32 + w : y * 32 + 16].any()  # the line's atom is zero-filled
    nv.memory.alloc(OUT, 2 * h * w * 32)
    _rubik(
        nv,
        "MERGE",
        "INT16",
        {
            **common,
            "D_DAIN_ADDR_LOW": WT,
            "D_DAOUT_ADDR_LOW": OUT,
            "D_DAIN_LINE_STRIDE": 64,
            "D_DAIN_PLANAR_STRIDE": plane,
            "D_DAOUT_LINE_STRIDE": w * 32,
            "D_DAOUT_SURF_STRIDE": h * w * 32,
        },
    )
    back = read_elements(nv.memory, OUT, 32, h, w, w * 32, h * w * 32, 32, "INT16")
    np.testing.assert_array_equal(back[:c].numpy(), values[:c])


def test_bdma_strided_copy_and_launch_groups():
    rng = np.random.default_rng(5)
    nv = Nvdla("nv_full")
    src = rng.integers(0, 256, 8192).astype(np.uint8)
    nv.memory.write(IN, src.tobytes())
    nv.memory.alloc(OUT, 8192)
    w = nv.write_reg
    for t, (line, lines, surfs, s_line, d_line, s_surf, d_surf) in enumerate(
        [(64, 3, 2, 96, 64, 512, 256), (32, 1, 4, 32, 32, 64, 128)]
    ):
        w("BDMA", "CFG_SRC_ADDR_LOW", IN + 1024 * t)
        w("BDMA", "CFG_DST_ADDR_LOW", OUT + 4096 * t)
        w("BDMA", "CFG_LINE", line // 32 - 1)
        w("BDMA", "CFG_CMD", SRC_RAM_TYPE="MC", DST_RAM_TYPE="MC")
        w("BDMA", "CFG_LINE_REPEAT", lines - 1)
        w("BDMA", "CFG_SURF_REPEAT", surfs - 1)
        for reg, v in (
            ("CFG_SRC_LINE", s_line),
            ("CFG_DST_LINE", d_line),
            ("CFG_SRC_SURF", s_surf),
            ("CFG_DST_SURF", d_surf),
        ):
            w("BDMA", reg, v)
        w("BDMA", "CFG_OP", EN="ENABLE")
    w("BDMA", "CFG_LAUNCH1", GRP1_LAUNCH="YES")
    assert nv.take_interrupt("BDMA")
    dst = np.frombuffer(nv.memory.read(OUT, 8192), np.uint8)
    expected = np.zeros(8192, np.uint8)
    for t, (line, lines, surfs, s_line, d_line, s_surf, d_surf) in enumerate(
        [(64, 3, 2, 96, 64, 512, 256), (32, 1, 4, 32, 32, 64, 128)]
    ):
        for sf in range(surfs):
            for ln in range(lines):
                s0 = 1024 * t + sf * s_surf + ln * s_line
                d0 = 4096 * t + sf * d_surf + ln * d_line
                expected[d0 : d0 + line] = src[s0 : s0 + line]
    np.testing.assert_array_equal(dst, expected)
