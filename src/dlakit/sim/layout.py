"""Addresses of NVDLA memory surfaces (nvdla.md §3) as int64 index tensors.

Feature cube: channels grouped by the memory atom (8 bytes on nv_small), order
C'(atom) -> W -> H -> C-surface, with programmable line and surface strides. Reading and writing a
cube is one gather / scatter through these addresses.
"""

from __future__ import annotations

import torch

from dlakit.sim.memory import Memory


def feature_addresses(
    base: int,
    channels: int,
    height: int,
    width: int,
    line_stride: int,
    surf_stride: int,
    atom: int,
    elem_bytes: int = 1,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Byte address of element byte 0 for every (c, h, w): shape [C, H, W].

    ``atom`` is in bytes; with ``elem_bytes`` = 2 an atom holds ``atom // 2`` channels.
    """
    per_atom = atom // elem_bytes
    c = torch.arange(channels, dtype=torch.int64, device=device)
    h = torch.arange(height, dtype=torch.int64, device=device)
    w = torch.arange(width, dtype=torch.int64, device=device)
    c_off = (c // per_atom) * surf_stride + (c % per_atom) * elem_bytes
    return base + c_off[:, None, None] + h[None, :, None] * line_stride + w[None, None, :] * atom


def load_signed(mem: Memory, addrs: torch.Tensor, elem_bytes: int) -> torch.Tensor:
    """Little-endian signed integers of ``elem_bytes`` bytes at ``addrs`` (as int64)."""
    value = torch.zeros(addrs.shape, dtype=torch.int64, device=addrs.device)
    for i in range(elem_bytes):
        value |= mem.gather(addrs + i).to(torch.int64) << (8 * i)
    bits = 8 * elem_bytes
    return torch.where(value >= (1 << (bits - 1)), value - (1 << bits), value)


def store_signed(mem: Memory, addrs: torch.Tensor, values: torch.Tensor, elem_bytes: int) -> None:
    for i in range(elem_bytes):
        mem.scatter(addrs + i, (values >> (8 * i)) & 0xFF)


def padded_channels(channels: int, atom: int) -> int:
    return -(-channels // atom) * atom
