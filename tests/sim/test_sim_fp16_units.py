"""nv_full's FP16 SDP and PDP from memory, programmed by register writes, vs element loops over
the scalar C-model references of ``fp16_reference`` (exact rationals, no code shared with
``dlakit.sim.fp16``)."""

import fp16_reference as fr
import numpy as np
import pytest
import torch

from dlakit.sim.nvdla import Nvdla
from dlakit.sim.precision import read_elements, write_elements

SRC, DST = 0x8000_0000, 0x8100_0000
ATOM = 32  # 16 FP16 channels per atom


def _fp16_data(rng, shape, zeros=True) -> np.ndarray:
    """FP16 bit patterns: normals of several magnitudes, subnormals, near-maximum values."""
    x = np.clip(rng.normal(0, 1, shape) * 2.0 ** rng.integers(-16, 16, shape), -65000, 65000)
    x = x.astype(np.float16)
    x[rng.random(shape) < 0.05] = np.float16(60000) * rng.choice([-1, 1])
    if zeros:
        x[rng.random(shape) < 0.05] = 0
    else:
        x[x == 0] = np.float16(1e-3)
    return x.view(np.uint16).astype(np.int64)


def _write(nv, x):
    c, h, w = x.shape
    cp = -(-c // 16) * 16
    full = np.zeros((cp, h, w), dtype=np.int64)
    full[:c] = x
    nv.memory.alloc(SRC, cp // 16 * h * w * ATOM)
    write_elements(nv.memory, SRC, torch.from_numpy(full), w * ATOM, h * w * ATOM, ATOM, "FP16")


def _read(nv, c, h, w):
    cp = -(-c // 16) * 16
    out = read_elements(nv.memory, DST, cp, h, w, w * ATOM, h * w * ATOM, ATOM, "FP16")
    return out[:c].numpy()


def _x_regs(stem, unit):
    alu, alu_algo, mul, prelu, relu = unit
    return {
        f"D_DP_{stem}_CFG": {
            f"{stem}_BYPASS": "NO",
            f"{stem}_ALU_BYPASS": "YES" if alu is None else "NO",
            f"{stem}_ALU_ALGO": alu_algo,
            f"{stem}_MUL_BYPASS": "YES" if mul is None else "NO",
            f"{stem}_MUL_PRELU": int(prelu),
            f"{stem}_RELU_BYPASS": "NO" if relu else "YES",
        },
        f"D_DP_{stem}_ALU_CFG": {f"{stem}_ALU_SRC": "REG"},
        f"D_DP_{stem}_MUL_CFG": {f"{stem}_MUL_SRC": "REG"},
        f"D_DP_{stem}_ALU_SRC_VALUE": {f"{stem}_ALU_OPERAND": alu or 0},
        f"D_DP_{stem}_MUL_SRC_VALUE": {f"{stem}_MUL_OPERAND": mul or 0},
    }


def _sdp(x, units):
    c, h, w = x.shape
    nv = Nvdla("nv_full")
    _write(nv, x)
    nv.memory.alloc(DST, -(-c // 16) * h * w * ATOM)
    wr = nv.write_reg
    for unit in ("SDP_RDMA", "SDP"):
        wr(unit, "D_DATA_CUBE_WIDTH", WIDTH=w - 1)
        wr(unit, "D_DATA_CUBE_HEIGHT", HEIGHT=h - 1)
        wr(unit, "D_DATA_CUBE_CHANNEL", CHANNEL=c - 1)
    wr("SDP_RDMA", "D_SRC_BASE_ADDR_LOW", SRC)
    wr("SDP_RDMA", "D_SRC_LINE_STRIDE", w * ATOM)
    wr("SDP_RDMA", "D_SRC_SURFACE_STRIDE", h * w * ATOM)
    wr("SDP_RDMA", "D_SRC_DMA_CFG", SRC_RAM_TYPE="MC")
    wr(
        "SDP_RDMA",
        "D_FEATURE_MODE_CFG",
        FLYING_MODE="OFF",
        IN_PRECISION="FP16",
        PROC_PRECISION="FP16",
        OUT_PRECISION="FP16",
    )
    for dma in ("BRDMA", "NRDMA", "ERDMA"):
        wr("SDP_RDMA", f"D_{dma}_CFG", **{f"{dma}_DISABLE": "YES"})
    wr("SDP", "D_DST_BASE_ADDR_LOW", DST)
    wr("SDP", "D_DST_LINE_STRIDE", w * ATOM)
    wr("SDP", "D_DST_SURFACE_STRIDE", h * w * ATOM)
    wr("SDP", "D_DST_DMA_CFG", DST_RAM_TYPE="MC")
    wr("SDP", "D_FEATURE_MODE_CFG", FLYING_MODE="OFF", OUTPUT_DST="MEM")
    wr("SDP", "D_DATA_FORMAT", PROC_PRECISION="FP16", OUT_PRECISION="FP16")
    for stem, unit in (("BS", units[0]), ("BN", units[1])):
        for reg, fields in _x_regs(stem, unit).items():
            wr("SDP", reg, **fields)
    wr("SDP", "D_DP_EW_CFG", EW_BYPASS="YES")
    wr("SDP", "D_OP_ENABLE", OP_EN="ENABLE")
    wr("SDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE")
    assert nv.take_interrupt("SDP")
    return _read(nv, c, h, w)


def _key(bits32: int) -> tuple:
    """FpMax/FpMin order of FP32 patterns: by value, -0 below +0."""
    return (fr.value(bits32), 0 if bits32 >> 31 else 1)


def _x_ref(v: int, unit) -> int:
    alu, alu_algo, mul, prelu, relu = unit
    if alu is not None:
        op = fr.fp16_to_fp32(alu)
        if alu_algo == "SUM":
            v = fr.fp32_add(v, op)
        else:
            pick = max if alu_algo == "MAX" else min
            v = pick(v, op, key=_key)
    if mul is not None:
        m = fr.fp32_mul(v, fr.fp16_to_fp32(mul))
        v = v if prelu and not v >> 31 else m
    if relu and v >> 31:
        v = 0
    return v


def _random_unit(rng):
    operand = lambda: int(  # noqa: E731
        (np.float16(rng.normal(0, 4)) or np.float16(0.5)).view(np.uint16)
    )
    return (
        operand() if rng.random() < 0.85 else None,
        str(rng.choice(["SUM", "SUM", "MAX", "MIN"])),
        operand() if rng.random() < 0.85 else None,
        bool(rng.random() < 0.3),
        bool(rng.random() < 0.4),
    )


@pytest.mark.parametrize("seed", range(4))
def test_fp16_sdp_x1_x2_register_operands(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 4)), int(rng.integers(1, 5)))
    x = _fp16_data(rng, shape)
    units = [_random_unit(rng), _random_unit(rng)]
    got = _sdp(x, units)
    expected = np.zeros_like(x)
    for idx, bits in np.ndenumerate(x):
        v = fr.fp16_to_fp32(int(bits))
        for unit in units:
            v = _x_ref(v, unit)
        expected[idx] = fr.fp32_to_fp16(v)
    np.testing.assert_array_equal(got, expected)


def test_fp16_sdp_saturates_instead_of_overflowing():
    big = int(np.float16(60000).view(np.uint16))
    x = np.full((3, 1, 2), big, dtype=np.int64)
    x[1] ^= 0x8000  # -60000
    two = int(np.float16(2).view(np.uint16))
    got = _sdp(x, [(big, "SUM", two, False, False), (None, "SUM", None, False, False)])
    max16 = int(np.float16(65504).view(np.uint16))
    assert (got[0] == max16).all() and (got[2] == max16).all()
    # -60000 + 60000: an exact zero takes the sign of the larger operand, the first when equal
    # (FpAdd; IEEE would give +0), and -0 times 2 stays -0
    assert (got[1] == 0x8000).all()


# 1/k as FP17 numbers (the firmware's recip_kernel_size for FP16, pdp.c)
RECIP17 = {1: 0x7C00, 2: 0x7800, 3: 0x7555, 4: 0x7400, 5: 0x7266, 6: 0x7155, 7: 0x7092, 8: 0x7000}
F17 = (6, 10)


def _pdp(x, method, kernel, stride, pads):
    c, h, w = x.shape
    left, right, top, bottom = pads
    oh = (h + top + bottom - kernel[0]) // stride[0] + 1
    ow = (w + left + right - kernel[1]) // stride[1] + 1
    nv = Nvdla("nv_full")
    _write(nv, x)
    nv.memory.alloc(DST, -(-c // 16) * oh * ow * ATOM)
    wr = nv.write_reg
    for unit in ("PDP_RDMA", "PDP"):
        wr(unit, "D_DATA_CUBE_IN_WIDTH", CUBE_IN_WIDTH=w - 1)
        wr(unit, "D_DATA_CUBE_IN_HEIGHT", CUBE_IN_HEIGHT=h - 1)
        wr(unit, "D_DATA_CUBE_IN_CHANNEL", CUBE_IN_CHANNEL=c - 1)
        wr(unit, "D_DATA_FORMAT", INPUT_DATA="FP16")
    wr("PDP_RDMA", "D_SRC_BASE_ADDR_LOW", SRC)
    wr("PDP_RDMA", "D_SRC_LINE_STRIDE", w * ATOM)
    wr("PDP_RDMA", "D_SRC_SURFACE_STRIDE", h * w * ATOM)
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
    wr("PDP", "D_RECIP_KERNEL_WIDTH", RECIP17[kernel[1]])
    wr("PDP", "D_RECIP_KERNEL_HEIGHT", RECIP17[kernel[0]])
    wr("PDP", "D_DST_BASE_ADDR_LOW", DST)
    wr("PDP", "D_DST_LINE_STRIDE", ow * ATOM)
    wr("PDP", "D_DST_SURFACE_STRIDE", oh * ow * ATOM)
    wr("PDP", "D_OP_ENABLE", OP_EN="ENABLE")
    wr("PDP_RDMA", "D_OP_ENABLE", OP_EN="ENABLE")
    assert nv.take_interrupt("PDP")
    return _read(nv, c, oh, ow)


def _key16(bits: int) -> tuple:
    return (fr.value(int(bits), fr.F16), 0 if bits >> 15 else 1)


@pytest.mark.parametrize(
    ("method", "kernel", "stride", "pads"),
    [("MAX", (3, 2), (2, 1), (1, 0, 1, 1)), ("MIN", (2, 3), (1, 2), (0, 1, 0, 0))],
)
def test_fp16_pdp_max_min_over_real_elements(method, kernel, stride, pads):
    rng = np.random.default_rng(len(method) + kernel[0])
    x = _fp16_data(rng, (21, 5, 6))
    x[0, 0, :2] = [0x0000, 0x8000]  # +0 and -0 in one window: FpMax/FpMin tell them apart
    got = _pdp(x, method, kernel, stride, pads)
    left, _, top, _ = pads
    pick = max if method == "MAX" else min
    c, oh, ow = got.shape
    expected = np.zeros_like(got)
    for ch in range(c):
        for i in range(oh):
            for j in range(ow):
                rows = range(max(i * stride[0] - top, 0), min(i * stride[0] - top + kernel[0], 5))
                cols = range(max(j * stride[1] - left, 0), min(j * stride[1] - left + kernel[1], 6))
                window = [int(x[ch, r, s]) for r in rows for s in cols]
                expected[ch, i, j] = pick(window, key=_key16)
    np.testing.assert_array_equal(got, expected)


def _fp17(bits16: int) -> int:
    return fr.encode(fr.value(bits16, fr.F16), F17, bits16 >> 15)


def _to_fp16(bits17: int) -> int:
    return fr.encode(fr.value(bits17, F17), fr.F16, bits17 >> 16)


def test_fp17_primitives_match_the_reference():
    from dlakit.sim.fp16 import FP17, fp16_to_fp17, fp17_to_fp16, fp_add, fp_mul

    rng = np.random.default_rng(17)
    x16 = _fp16_data(rng, (400,))
    x16[:4] = [0x0001, 0x83FF, 0x0000, 0x8000]  # subnormals and zeros
    got = fp16_to_fp17(torch.from_numpy(x16)).numpy()
    np.testing.assert_array_equal(got, [_fp17(int(v)) for v in x16])
    a, b = got, np.roll(got, 1)
    a[:8:2] = b[:8:2] ^ 0x10000  # exact cancellations: the sign of the zero
    for op, ref in ((fp_add, fr.fp32_add), (fp_mul, fr.fp32_mul)):
        out = op(torch.from_numpy(a), torch.from_numpy(b), FP17).numpy()
        np.testing.assert_array_equal(
            out, [ref(int(p), int(q), F17) for p, q in zip(a, b, strict=True)]
        )
    # FP17 results of every magnitude back to FP16: rounding, subnormals, saturation
    wide = rng.integers(0, 1 << 17, 2000)
    wide = wide[((wide >> 10) & 0x3F) != 0x3F]  # finite
    wide = wide[((wide >> 10) & 0x3F) != 0]  # normal (FpAdd/FpMul never return subnormals)
    out = fp17_to_fp16(torch.from_numpy(wide)).numpy()
    np.testing.assert_array_equal(out, [_to_fp16(int(v)) for v in wide])


@pytest.mark.parametrize(
    ("kernel", "stride", "pads"),
    [
        ((3, 3), (2, 2), (1, 1, 1, 1)),
        ((2, 5), (1, 3), (0, 2, 1, 0)),
        ((1, 1), (1, 1), (0, 0, 0, 0)),
    ],
)
def test_fp16_average_pooling(kernel, stride, pads):
    rng = np.random.default_rng(kernel[0] * 10 + kernel[1])
    x = _fp16_data(rng, (18, 6, 7))
    x[1, :2, :3] = 0x8000  # a window of -0 sums to -0
    got = _pdp(x, "AVERAGE", kernel, stride, pads)
    left, _, top, _ = pads
    c, oh, ow = got.shape
    rw, rh = RECIP17[kernel[1]], RECIP17[kernel[0]]
    expected = np.zeros_like(got)
    for ch in range(c):
        for i in range(oh):
            for j in range(ow):
                total = None
                for r in range(i * stride[0] - top, i * stride[0] - top + kernel[0]):
                    if not 0 <= r < 6:
                        continue
                    row = None
                    for s in range(j * stride[1] - left, j * stride[1] - left + kernel[1]):
                        if 0 <= s < 7:
                            e = _fp17(int(x[ch, r, s]))
                            row = e if row is None else fr.fp32_add(row, e, F17)
                    if row is not None:
                        total = row if total is None else fr.fp32_add(row, total, F17)
                avg = fr.fp32_mul(fr.fp32_mul(total, rw, F17), rh, F17)
                expected[ch, i, j] = _to_fp16(avg)
    np.testing.assert_array_equal(got, expected)
    if kernel == (1, 1):
        np.testing.assert_array_equal(got, x)
