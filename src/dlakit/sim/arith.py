"""The integer primitives of the NVDLA datapath (nvdla.md §5.0), on int64 tensors.

Every right shift rounds half away from zero and then saturates to the destination width; a
shift of at least the shifter's input width gives 0 (RTL ``NV_NVDLA_HLS_shiftrightsu``). Left
shifts saturate. Callers keep values inside int64 (the widest datapath product is 49 bits).
"""

from __future__ import annotations

import torch


def sign_extend(value: int, bits: int) -> int:
    """A ``bits``-wide register field as a signed Python int."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def saturate(x: torch.Tensor, bits: int) -> torch.Tensor:
    return x.clamp(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def shift_right_round(x: torch.Tensor, shift: int, in_bits: int, out_bits: int) -> torch.Tensor:
    """``sat_out(round_half_away(x / 2**shift))``; 0 when ``shift >= in_bits``."""
    if shift >= in_bits:
        return torch.zeros_like(x)
    if shift > 0:
        mag = (x.abs() + (1 << (shift - 1))) >> shift
        x = torch.where(x < 0, -mag, mag)
    return saturate(x, out_bits)


def shift_left_sat(x: torch.Tensor | int, shift: int, out_bits: int) -> torch.Tensor | int:
    if isinstance(x, int):
        lim = 1 << (out_bits - 1)
        return max(-lim, min(lim - 1, x << shift))
    # Operands are at most 17 bits wide: past 40 bits every non-zero value saturates anyway.
    return saturate(x << min(shift, 40), out_bits)
