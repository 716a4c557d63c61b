"""Element precisions of the feature data path: INT8, INT16, FP16 (nv_full; nvdla.md §3).

A feature atom holds ``atom`` bytes whatever the precision: 32 INT8 or 16 INT16/FP16 channels
on nv_full. INT16 elements are signed little-endian; FP16 elements are kept as their 16 raw
bits (0..65535) until a float unit decodes them. INT8 cubes keep the fast strided path of
``layout``.
"""

from __future__ import annotations

import torch

from dlakit.sim.layout import (
    feature_addresses,
    load_signed,
    padded_channels,
    read_cube,
    store_signed,
    write_cube,
)
from dlakit.sim.memory import Memory

ELEMENT_BYTES = {"INT8": 1, "INT16": 2, "FP16": 2}
INT_BITS = {"INT8": 8, "INT16": 16}


def channels_per_atom(atom: int, precision: str) -> int:
    return atom // ELEMENT_BYTES[precision]


def padded(channels: int, atom: int, precision: str) -> int:
    """Channels rounded up to whole atoms of this precision."""
    return padded_channels(channels, channels_per_atom(atom, precision))


def read_elements(
    mem: Memory,
    base: int,
    channels: int,
    height: int,
    width: int,
    line: int,
    surf: int,
    atom: int,
    precision: str,
) -> torch.Tensor:
    """Cube [C, H, W] as int64: signed integers, or FP16 bit patterns."""
    size = ELEMENT_BYTES[precision]
    if size == 1:
        return read_cube(mem, base, channels, height, width, line, surf, atom)
    addrs = feature_addresses(base, channels, height, width, line, surf, atom, size, mem.device)
    values = load_signed(mem, addrs, size)
    return values & 0xFFFF if precision == "FP16" else values


def write_elements(
    mem: Memory, base: int, values: torch.Tensor, line: int, surf: int, atom: int, precision: str
) -> None:
    """Store a cube [C, H, W] of integers in range (or FP16 bit patterns)."""
    size = ELEMENT_BYTES[precision]
    if size == 1:
        write_cube(mem, base, values, line, surf, atom)
        return
    c, h, w = values.shape
    addrs = feature_addresses(base, c, h, w, line, surf, atom, size, mem.device)
    store_signed(mem, addrs, values.to(torch.int64), size)
