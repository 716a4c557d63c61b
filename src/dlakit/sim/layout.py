"""Addresses of NVDLA memory surfaces (nvdla.md §3) as int64 index tensors.

Feature cube: channels grouped by the memory atom (8 bytes on nv_small), order
C'(atom) -> W -> H -> C-surface, with programmable line and surface strides. Reading and writing a
cube is one gather / scatter through these addresses.
"""

from __future__ import annotations

import torch

from dlakit.errors import DlakitError
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
    if elem_bytes == 1:
        return mem.gather(addrs).view(torch.int8).to(torch.int64)
    value = torch.zeros(addrs.shape, dtype=torch.int64, device=addrs.device)
    for i in range(elem_bytes):
        value |= mem.gather(addrs + i).to(torch.int64) << (8 * i)
    bits = 8 * elem_bytes
    return torch.where(value >= (1 << (bits - 1)), value - (1 << bits), value)


def store_signed(mem: Memory, addrs: torch.Tensor, values: torch.Tensor, elem_bytes: int) -> None:
    for i in range(elem_bytes):
        mem.scatter(addrs + i, (values >> (8 * i)) & 0xFF)


def _cube_shape(
    channels: int, height: int, width: int, line: int, surf: int, atom: int
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The cube's bytes as a [C/atom, H, W, atom] strided access (None: lines or surfaces
    overlap, so it is no such view)."""
    if channels % atom or line < width * atom or (channels > atom and surf < height * line):
        return None
    return (channels // atom, height, width, atom), (surf, line, atom, 1)


def read_cube(
    mem: Memory,
    base: int,
    channels: int,
    height: int,
    width: int,
    line: int,
    surf: int,
    atom: int,
    dtype: torch.dtype = torch.int64,
) -> torch.Tensor:
    """INT8 feature cube [C, H, W] as ``dtype`` (C a multiple of the atom).

    The bytes move as strided views of memory; only the bytes of the cube are read, so the
    gaps between its lines and surfaces may be uninitialised.
    """
    layout = _cube_shape(channels, height, width, line, surf, atom)
    if layout is None:
        addrs = feature_addresses(
            base, channels, height, width, line, surf, atom, device=mem.device
        )
        return load_signed(mem, addrs, 1).to(dtype)
    pieces = list(mem.strided_pieces(base, *layout))
    if len(pieces) == 1 and pieces[0][0] == ():
        raw = pieces[0][1]
    else:
        raw = torch.empty(layout[0], dtype=torch.uint8, device=mem.device)
        for index, piece in pieces:
            raw[index] = piece
    cube = raw.view(torch.int8).permute(0, 3, 1, 2).reshape(channels, height, width)
    return cube.to(dtype)


def write_cube(
    mem: Memory, base: int, values: torch.Tensor, line: int, surf: int, atom: int
) -> None:
    """Store int values [C, H, W] (already in INT8 range, C a multiple of the atom); bytes
    between its lines and surfaces are left as they are."""
    channels, height, width = values.shape
    layout = _cube_shape(channels, height, width, line, surf, atom)
    if layout is None:
        addrs = feature_addresses(
            base, channels, height, width, line, surf, atom, device=mem.device
        )
        store_signed(mem, addrs, values, 1)
        return
    data = values.to(torch.int8).reshape(channels // atom, atom, height, width).permute(0, 2, 3, 1)
    for index, piece in mem.strided_pieces(base, *layout):
        piece.view(torch.int8).copy_(data[index])


def padded_channels(channels: int, atom: int) -> int:
    return -(-channels // atom) * atom


def weight_offsets(k: int, c: int, r: int, s: int, atom_k: int, atom_c: int) -> torch.Tensor:
    """Byte offset of weight (k, c, r, s) in the DC weight layout: shape [K, C, R, S].

    Kernels in groups of atom_k; inside a group, C-blocks of atom_c channels (last one partial,
    not filled), then R, S, the group's kernels and the block's channels, all compact.
    """
    kk = torch.arange(k, dtype=torch.int64)[:, None, None, None]
    cc = torch.arange(c, dtype=torch.int64)[None, :, None, None]
    rr = torch.arange(r, dtype=torch.int64)[None, None, :, None]
    ss = torch.arange(s, dtype=torch.int64)[None, None, None, :]
    group, k_in = kk // atom_k, kk % atom_k
    group_k = torch.clamp(k - group * atom_k, max=atom_k)
    block, c_in = cc // atom_c, cc % atom_c
    block_c = torch.clamp(c - block * atom_c, max=atom_c)
    return (
        group * atom_k * c * r * s
        + block * atom_c * r * s * group_k
        + ((rr * s + ss) * group_k + k_in) * block_c
        + c_in
    )


def packed_strides(height: int, width: int, atom: int = 8) -> tuple[int, int]:
    """Line and surface strides of a compact feature cube."""
    return width * atom, height * width * atom


def write_feature(
    mem: Memory,
    base: int,
    cube: torch.Tensor,
    line_stride: int | None = None,
    surf_stride: int | None = None,
    atom: int = 8,
) -> None:
    """Store an INT8 cube [C, H, W] in the feature layout (compact strides by default).

    Channels past C up to the atom are written as 0, as a compiler lays them out. Where a byte
    of the cube is not addressable, the memory it spans is allocated first.
    """
    c, h, w = cube.shape
    dl, ds = packed_strides(h, w, atom)
    line_stride = dl if line_stride is None else line_stride
    surf_stride = ds if surf_stride is None else surf_stride
    cp = padded_channels(c, atom)
    full = torch.zeros((cp, h, w), dtype=torch.int64, device=mem.device)
    full[:c] = torch.as_tensor(cube, device=mem.device).to(torch.int64)
    try:
        write_cube(mem, base, full, line_stride, surf_stride, atom)
    except DlakitError:
        last = (cp // atom - 1) * surf_stride + (h - 1) * line_stride + (w - 1) * atom + atom
        mem.alloc_covering(base, base + last)
        write_cube(mem, base, full, line_stride, surf_stride, atom)


def read_feature(
    mem: Memory,
    base: int,
    shape: tuple[int, int, int],
    line_stride: int | None = None,
    surf_stride: int | None = None,
    atom: int = 8,
) -> torch.Tensor:
    """Load an INT8 cube [C, H, W] (int64 values) from the feature layout."""
    c, h, w = shape
    dl, ds = packed_strides(h, w, atom)
    line = dl if line_stride is None else line_stride
    surf = ds if surf_stride is None else surf_stride
    return read_cube(mem, base, padded_channels(c, atom), h, w, line, surf, atom)[:c]


def pack_weights(weights: torch.Tensor, atom_k: int = 8, atom_c: int = 8) -> bytes:
    """INT8 weights [K, C, R, S] as direct-convolution weight bytes, padded to 128 bytes."""
    k, c, r, s = weights.shape
    offsets = weight_offsets(k, c, r, s, atom_k, atom_c).reshape(-1)
    size = -(-(k * c * r * s) // 128) * 128
    buf = torch.zeros(size, dtype=torch.uint8)
    buf[offsets] = (
        torch.as_tensor(weights).reshape(-1).to(torch.int64).bitwise_and(0xFF).to(torch.uint8)
    )
    return buf.numpy().tobytes()
