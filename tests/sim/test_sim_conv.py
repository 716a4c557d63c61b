"""Convolution through the register interface vs a numpy int64 reference (incl. saturation)."""

import numpy as np
import pytest
import sim_reference as ref
import torch

from dlakit.sim.conv import ConvGeometry, cacc_truncate, conv_accumulate
from dlakit.sim.layout import pack_weights, read_feature, write_feature
from dlakit.sim.nvdla import Nvdla
from dlakit.sim.program import ConvSpec, program_conv

IN, WT, OUT = 0x8000_0000, 0x8100_0000, 0x8200_0000


def _run(spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    nv = Nvdla("nv_small")
    write_feature(nv.memory, IN, torch.from_numpy(x))
    nv.memory.write(WT, pack_weights(torch.from_numpy(w)))
    program_conv(nv, spec)
    assert nv.take_interrupt("SDP") and nv.read_reg("CDMA", "D_OP_ENABLE") == 0
    return read_feature(nv.memory, OUT, (w.shape[0], *spec.out_hw)).cpu().numpy()


@pytest.mark.parametrize("seed", range(6))
def test_random_convolutions(seed):
    rng = np.random.default_rng(seed)
    c, h, w = rng.integers(1, 40), rng.integers(1, 12), rng.integers(1, 12)
    k, r, s = rng.integers(1, 20), rng.integers(1, 5), rng.integers(1, 5)
    stride = tuple(int(v) for v in rng.integers(1, 4, 2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    h = max(h, (r - 1) * dilation[0] + 1)
    w = max(w, (s - 1) * dilation[1] + 1)
    x = rng.integers(-128, 128, (c, h, w))
    wt = rng.integers(-128, 128, (k, c, r, s))
    spec = ConvSpec(
        IN,
        WT,
        OUT,
        (int(c), int(h), int(w)),
        (int(k), int(r), int(s)),
        stride,
        dilation,
        pads,
        pad_value=int(rng.integers(-128, 128)),
        clip_truncate=int(rng.integers(0, 12)),
        cvt=(int(rng.integers(-50, 50)), int(rng.integers(-300, 300)), int(rng.integers(0, 12))),
    )
    acc = ref.conv(x, wt, stride, dilation, pads, spec.pad_value)
    expected = ref.cvt_out(ref.cacc(acc, spec.clip_truncate), *spec.cvt)
    np.testing.assert_array_equal(_run(spec, x, wt), expected)


def test_extreme_values_saturate_cacc_and_converter():
    # 8192 x 4 x 4 taps of (-128) * (-128) sum to exactly 2**31: CACC saturates to 2**31 - 1.
    c, r = 8192, 4
    x = np.full((c, r, r), -128)
    wt = np.full((2, c, r, r), -128)
    wt[1] = 127
    spec = ConvSpec(IN, WT, OUT, (c, r, r), (2, r, r), cvt=(0, 1, 24))
    got = _run(spec, x, wt)
    acc = ref.conv(x, wt, (1, 1), (1, 1), (0, 0, 0, 0), 0)
    assert acc[0, 0, 0] == 1 << 31
    np.testing.assert_array_equal(got, ref.cvt_out(ref.cacc(acc, 0), 0, 1, 24))
    assert got[0, 0, 0] == 128 - 1 and got[1, 0, 0] == -127  # (2**31 - 1) >> 24 rounds to 128


def test_accumulator_saturates_at_34_bits_in_hardware_order():
    c, r = 8192, 12
    x = np.full((c, r, r), 127)
    x[c // 2 :] = -128
    wt = np.full((1, c, r, r), 127)
    geo = ConvGeometry((1, 1), (1, 1), (0, 0), (1, 1), 0)
    got = int(conv_accumulate(torch.from_numpy(x), torch.from_numpy(wt), geo, atom_c=8))
    lim, acc = 1 << 33, 0
    for c0 in range(0, c, 8):  # CSC order: C-block, then kernel rows and columns
        block = (x[c0 : c0 + 8] * wt[0, c0 : c0 + 8]).sum(axis=0)
        for tap in block.reshape(-1):
            acc = max(-lim, min(lim - 1, acc + int(tap)))
    assert got == acc != int((x * wt[0]).sum())


def test_cacc_truncate_rounds_half_away_and_keeps_16_fraction_bits():
    values = torch.tensor([5, -5, 6, -6, 7, -7, 2**33 - 1, -(2**33)], dtype=torch.int64)
    np.testing.assert_array_equal(cacc_truncate(values, 1).numpy(), ref.cacc(values.numpy(), 1))
    # truncate 20: the RTL sees only bits [19:4] below the point. -(2**19) + 1 is just above
    # -0.5 (exact rounding gives 0) but looks like a tie to the RTL, which rounds it to -1.
    v = torch.tensor([-(2**19) + 1, -(2**19) + 16, 2**19], dtype=torch.int64)
    assert cacc_truncate(v, 20).tolist() == [-1, 0, 1]
