"""Integer primitives of the reference vs plain Python ints written from nvdla.md §5.0-5.5."""

import numpy as np
import pytest
import torch

from dlakit.lower import hwparams, intref
from dlakit.lower.qgraph import EwUnit, OutCvt, QPool, SdpChain, XUnit


def py_sat(x: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, x))


def py_shift_right(x: int, s: int, in_bits: int, out_bits: int) -> int:
    """§5.0: q = (|x| + 2^(s-1)) >> s with the sign restored, then saturate; s >= width -> 0."""
    if s >= in_bits:
        return 0
    if s == 0:
        return py_sat(x, out_bits)
    q = (abs(x) + (1 << (s - 1))) >> s
    return py_sat(q if x >= 0 else -q, out_bits)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


EDGE = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 7, -7, 2**31 - 1, -(2**31), 2**33 + 7, -(2**33) - 7]


@pytest.mark.parametrize("shift", [0, 1, 2, 3, 15, 31, 32, 48, 49, 63])
def test_shift_right_round_matches_python(shift):
    rng = np.random.default_rng(shift)
    values = EDGE + [int(v) for v in rng.integers(-(2**48), 2**48, 500)]
    # half-way points, positive and negative: 2.5 -> 3, -2.5 -> -3
    if 0 < shift < 45:
        values += [k * (1 << shift) + (1 << (shift - 1)) for k in range(-4, 4)]
    got = intref.shift_right_round(t(values), shift, 49, 32).tolist()
    want = [py_shift_right(v, shift, 49, 32) for v in values]
    assert got == want


def test_negative_half_rounds_away_from_zero():
    assert intref.shift_right_round(t([-5, -3, -1, 5, 3, 1]), 1, 32, 32).tolist() == [
        -3, -2, -1, 3, 2, 1,
    ]  # fmt: skip


def test_shift_at_or_beyond_width_gives_zero():
    assert intref.shift_right_round(t([2**40, -(2**40), -1]), 49, 49, 32).tolist() == [0, 0, 0]


def test_shift_left_saturates():
    got = intref.shift_left_saturate(t([1, -1, 32767, -32768, 3]), 20, 32).tolist()
    want = [py_sat(v << 20, 32) for v in [1, -1, 32767, -32768, 3]]
    assert got == want
    assert intref.shift_left_saturate(t([1, -1, 0]), 63, 32).tolist() == [2**31 - 1, -(2**31), 0]


def test_cacc_saturates_34_then_32_bits():
    acc = t([2**40, -(2**40), 2**32, -(2**32) - 1, 12345])
    assert intref.cacc_output(acc, 0).tolist() == [2**31 - 1, -(2**31), 2**31 - 1, -(2**31), 12345]
    # 34-bit clamp happens before the truncate: 2^40 -> 2^33-1, >> 2 rounds to 2^31 -> sat32.
    assert intref.cacc_output(t([2**40]), 3).tolist() == [py_sat(((2**33 - 1) + 4) >> 3, 32)]


@pytest.mark.parametrize("truncate", [1, 4, 16])
def test_cacc_truncate_rounds_like_the_primitive(truncate):
    values = [int(v) for v in np.random.default_rng(truncate).integers(-(2**33), 2**33, 300)]
    got = intref.cacc_output(t(values), truncate).tolist()
    assert got == [py_shift_right(v, truncate, 34, 32) for v in values]


def test_cacc_keeps_only_16_fraction_bits():
    # -655359 / 2^18 = -2.4999962 rounds to -2 exactly, but the RTL lost the sticky bits: -3.
    assert py_shift_right(-655359, 18, 34, 32) == -2
    assert intref.cacc_output(t([-655359]), 18).tolist() == [-3]


def py_x_unit(x: int, c: int, u: XUnit) -> int:
    if u.alu:
        op = u.alu_operand[c if len(u.alu_operand) > 1 else 0]
        op = py_sat(int(op) << u.alu_shift, 32) if u.alu_shift < 32 else py_sat(op * 2**40, 32)
        x = {"sum": x + op, "max": max(x, op), "min": min(x, op)}[u.alu]
    if u.mul is not None:
        m = int(u.mul[c if len(u.mul) > 1 else 0])
        y = x if (u.prelu and x >= 0) else py_shift_right(x * m, u.truncate, 49, 32)
        y = py_sat(y, 32)
    else:
        y = py_shift_right(x, u.truncate, 49, 32)  # the ALU value sign-extended to 49 bits
    return max(y, 0) if u.relu else y


def py_sdp(x: int, c: int, chain: SdpChain, ew: int = 0) -> int:
    if chain.x1:
        x = py_x_unit(x, c, chain.x1)
    if chain.x2:
        x = py_x_unit(x, c, chain.x2)
    if chain.y:
        y = chain.y
        op = py_shift_right((ew - y.cvt_offset) * y.cvt_scale, y.cvt_truncate, 49, 32)
        x = py_sat(x + op, 32)
    cv = chain.c
    return py_sat(py_shift_right((x - cv.offset) * cv.scale, cv.shift, 49, 17), 8)


CHAINS = {
    "bias_requant_relu": SdpChain(
        x1=XUnit("sum", np.array([300, -7000, 32767]), 5, np.array([21000, -16000, 9]), False, 22,
                 True),
    ),
    "requant_clip6": SdpChain(
        x1=XUnit(mul=np.array([16500]), truncate=14),
        x2=XUnit(alu="min", alu_operand=np.array([100]), truncate=0),
    ),
    "mul_bypass_truncates": SdpChain(x1=XUnit(truncate=3)),
    "prelu": SdpChain(x1=XUnit(mul=np.array([-3000, 4000, 5]), prelu=True, truncate=12)),
    "ew_add": SdpChain(
        x1=XUnit(mul=np.array([20000]), truncate=16),
        y=EwUnit("b", cvt_offset=0, cvt_scale=23000, cvt_truncate=7),
        c=OutCvt(offset=0, scale=1, shift=8),
    ),
    "c_offset_scale": SdpChain(c=OutCvt(offset=-1000, scale=-12345, shift=20)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_sdp_chain_matches_python(name):
    chain = CHAINS[name]
    rng = np.random.default_rng(7)
    x = rng.integers(-(2**31), 2**31, (2, 3, 4, 5))
    x[0, :, 0, :] = rng.integers(-3000, 3000, (3, 5))
    x[0, 0, 0, :3] = [2**31 - 1, -(2**31), 0]
    ew = rng.integers(-128, 128, x.shape)
    got = intref.sdp(torch.as_tensor(x), chain, torch.as_tensor(ew)).numpy()
    want = np.vectorize(lambda v, c, e: py_sdp(int(v), int(c), chain, int(e)))(
        x, np.arange(3).reshape(1, 3, 1, 1), ew
    )
    assert np.array_equal(got, want)


def py_pool_avg(x: np.ndarray, layer: QPool) -> np.ndarray:
    """§5.5 with Python ints: window sum with pad values, two rounded reciprocal stages."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = layer.kernel, layer.stride, layer.pads
    n, c, h, w = x.shape
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    out = np.zeros((n, c, oh, ow), dtype=np.int64)
    for b, ch, i, j in np.ndindex(n, c, oh, ow):
        total = 0
        for di in range(kh):
            for dj in range(kw):
                r, q = i * sh + di - pt, j * sw + dj - pl
                inside = 0 <= r < h and 0 <= q < w
                total += int(x[b, ch, r, q]) if inside else layer.pad_value
        first = py_shift_right(total * layer.recip_w, 16, 64, 64)
        out[b, ch, i, j] = py_sat(py_shift_right(first * layer.recip_h, 16, 64, 64), 8)
    return out


@pytest.mark.parametrize(
    "kernel,stride,pads,pad_value",
    [
        ((3, 3), (1, 1), (1, 1, 1, 1), 0),
        ((3, 2), (2, 1), (1, 0, 2, 1), -5),
        ((7, 7), (1, 1), (0,) * 4, 0),
    ],
)
def test_pdp_average_follows_reciprocal_rule(kernel, stride, pads, pad_value):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (2, 3, 7, 7))
    x[0, 0] = -128  # negative half-way sums
    recip_w, recip_h = hwparams.pool_reciprocals(kernel)
    layer = QPool("p", ["x"], ["y"], method="avg", kernel=kernel, stride=stride, pads=pads,
                  pad_value=pad_value, recip_w=recip_w, recip_h=recip_h)  # fmt: skip
    got = intref.pool(torch.as_tensor(x), layer).numpy()
    assert np.array_equal(got, py_pool_avg(x, layer))
    if pad_value == 0 and kernel == (7, 7):  # reciprocal rounding stays within 1 of the mean
        assert np.abs(got - x.mean(axis=(2, 3), keepdims=True)).max() <= 1.0


def test_pdp_max_ignores_padding():
    x = torch.full((1, 1, 3, 3), -100, dtype=torch.int64)
    layer = QPool("p", ["x"], ["y"], method="max", kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1))
    assert (intref.pool(x, layer) == -100).all()


def test_factorize_follows_compiler_shift_and_rounds_to_nearest():
    scale, shift = hwparams.factorize(0.0123)
    assert shift == 15 - (int(np.floor(np.log2(0.0123))) + 1)
    assert scale == round(0.0123 * 2**shift) and 2**14 <= scale < 2**15
    scales, shift = hwparams.factorize_per_channel(np.array([0.01, -0.002, 0.0]))
    assert shift == 15 - (int(np.floor(np.log2(0.01))) + 1)
    assert scales.tolist() == [round(0.01 * 2**shift), -round(0.002 * 2**shift), 0]
    # A mantissa that rounds up to 2^15 takes one bit less of shift instead.
    scale, shift = hwparams.factorize(2**-3 * (1 - 2**-17))
    assert (scale, shift) == (2**14, 17)


def test_bias_operand_fits_int16_with_smallest_shift():
    ops, shift = hwparams.bias_operand(np.array([1e6, -3.0, 40000.0]))
    assert shift == 5 and np.abs(ops).max() <= 32767
    assert ops[0] == round(1e6 / 32) and ops[1] == 0


def test_two_stage_requant_keeps_small_channels_precise():
    """Scales spanning 2^12: per-channel exponents keep every channel within ~1 LSB of the
    exact product, where one shared shift would leave the smallest channel ~6 bits."""
    rescale = np.array([3e-4, 1e-5, 7e-8, 2.5e-4])
    chain = hwparams.conv_chain(rescale, None, 1.0)
    assert chain.x2 is not None and chain.x2.mul is not None and chain.x1.truncate == 0
    assert np.abs(chain.x2.mul).min() >= 2**14  # every channel has its own 15-bit mantissa
    rng = np.random.default_rng(5)
    acc = rng.integers(-(2**28), 2**28, (64, 4, 1, 1))
    got = intref.sdp(torch.as_tensor(acc), chain).numpy()
    exact = np.clip(acc * rescale.reshape(1, 4, 1, 1), -128, 127)
    assert np.abs(got - exact).max() <= 1.0
    want = [[py_sdp(int(v), c, chain) for c, v in enumerate(row[:, 0, 0])] for row in acc]
    assert np.array_equal(got[:, :, 0, 0], np.array(want))


@pytest.mark.parametrize("truncate", [32, 33, 34, 48, 49])
def test_mul_bypass_truncate_sees_the_49_bit_value(truncate):
    """With MUL bypassed the truncate still shifts the ALU result sign-extended to 49 bits (RTL
    NV_NVDLA_SDP_HLS_X_int_mul: ``{{16{alu[32]}}, alu}`` into a 49-bit shiftrightsu): a shift of
    33 rounds -2^32 (-0.5) away from zero to -1, which a 33-bit input width would make 0. The
    definition, its compiled pass and the simulator's kernel agree on it."""
    from dlakit.lower.intref import IntReference
    from dlakit.lower.qgraph import QGraph, QSdp, QTensor
    from dlakit.sim import numba_kernels

    unit = XUnit("sum", np.array([-32768]), 16, None, False, truncate, False)  # op = -2^31
    x = t([-(2**31), 2**31 - 1, -5])
    want = [py_shift_right(v + -(2**31), truncate, 49, 32) for v in x.tolist()]
    assert want[0] == {32: -1, 33: -1}.get(truncate, 0)  # 33: where a 33-bit width gives 0
    assert intref.x_unit(x, unit).tolist() == want
    sim = [numba_kernels.x_unit(v, 1, -(2**31), False, 1, truncate, False, False)
           for v in x.tolist()]  # fmt: skip
    assert sim == want
    # The compiled pass (and the definition) on an SDP layer: X1 takes the INT8 input 0 to
    # -2^31, X2 adds -2^31 more and truncates; the output converter keeps the sign of -1.
    first = XUnit("sum", np.array([-32768]), 16, None, False, 0, False)
    layer = QSdp("s", ["a"], ["b"], sdp=SdpChain(x1=first, x2=unit))
    tensors = {n: QTensor(n, (1, 1, 1, 1), "int8", 1.0) for n in "ab"}
    graph = QGraph("t", "nv_full", [layer], tensors, ["a"], ["b"])
    feeds = {"a": np.zeros((1, 1, 1, 1), np.float32)}
    for fused in (True, False):
        got = IntReference(graph, fused=fused).run(feeds)["b"]
        assert got.reshape(-1).tolist() == [py_shift_right(-(2**32), truncate, 49, 32)], fused
