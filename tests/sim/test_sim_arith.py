"""The rounding/saturating primitives against the spec's Python statement (nvdla.md §5.0)."""

import numpy as np
import sim_reference as ref
import torch

from dlakit.sim.arith import shift_left_sat, shift_right_round, sign_extend


def test_shift_right_round_matches_reference_on_random_and_ties():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(-(2**40), 2**40, 2000), [-3, -2, -1, 0, 1, 2, 3, 6, -6, 10]])
    for shift in (0, 1, 2, 5, 17, 31):
        got = shift_right_round(torch.from_numpy(v), shift, 49, 32).numpy()
        np.testing.assert_array_equal(got, ref.sat(ref.rnd(v, shift), 32))
    assert shift_right_round(torch.tensor([-5, 5, -6]), 1, 49, 32).tolist() == [-3, 3, -3]


def test_shift_at_least_input_width_gives_zero():
    assert shift_right_round(torch.tensor([2**48 - 1, -(2**48)]), 49, 49, 32).tolist() == [0, 0]


def test_left_shift_saturates():
    assert shift_left_sat(torch.tensor([1, -1, 300]), 63, 32).tolist() == [
        2**31 - 1,
        -(2**31),
        2**31 - 1,
    ]
    assert shift_left_sat(-32768, 20, 32) == -(2**31)


def test_sign_extend():
    assert sign_extend(0x97C9, 8) == -55  # the pad value case of nvdla.md §5.1
    assert sign_extend(0x7F, 8) == 127
