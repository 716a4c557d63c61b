"""Byte-addressed memory image: a set of disjoint regions, each one torch uint8 tensor.

Regions are created by ``alloc`` (the traces' ``mem_init``) or by writing where none exists;
touching regions merge. Reads and writes take absolute byte addresses as int64 index tensors so a
whole feature cube moves in one gather/scatter, on the simulator's device.
"""

from __future__ import annotations

import bisect

import numpy as np
import torch

from dlakit.errors import DlakitError


class Memory:
    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._bases: list[int] = []
        self._data: list[torch.Tensor] = []

    @property
    def regions(self) -> list[tuple[int, int]]:
        return [(b, int(d.numel())) for b, d in zip(self._bases, self._data, strict=True)]

    def alloc(self, base: int, size: int, fill: int = 0, keep: bool = False) -> None:
        """Make ``[base, base+size)`` addressable and set it to ``fill`` (merging neighbours).

        With ``keep`` the bytes of regions it overlaps keep their values.
        """
        if size <= 0:
            return
        lo, hi = base, base + size
        keep_b, keep_d, merged = [], [], []
        for b, d in zip(self._bases, self._data, strict=True):
            if b + d.numel() < lo or b > hi:
                keep_b.append(b)
                keep_d.append(d)
            else:
                merged.append((b, d))
        new_lo = min([lo] + [b for b, _ in merged])
        new_hi = max([hi] + [b + d.numel() for b, d in merged])
        buf = torch.zeros(new_hi - new_lo, dtype=torch.uint8, device=self.device)
        if keep:
            buf[lo - new_lo : hi - new_lo] = fill
        for b, d in merged:
            buf[b - new_lo : b - new_lo + d.numel()] = d
        if not keep:
            buf[lo - new_lo : hi - new_lo] = fill
        keep_b.append(new_lo)
        keep_d.append(buf)
        order = sorted(range(len(keep_b)), key=keep_b.__getitem__)
        self._bases = [keep_b[i] for i in order]
        self._data = [keep_d[i] for i in order]

    def alloc_covering(self, lo: int, hi: int) -> None:
        """Make ``[lo, hi)`` addressable, keeping any contents already there."""
        try:
            self._region(lo, hi)
        except DlakitError:
            self.alloc(lo, hi - lo, keep=True)

    def _region(self, lo: int, hi: int) -> tuple[int, torch.Tensor]:
        i = bisect.bisect_right(self._bases, lo) - 1
        if i >= 0:
            b, d = self._bases[i], self._data[i]
            if hi <= b + d.numel():
                return b, d
        raise DlakitError(
            f"memory access [0x{lo:x}, 0x{hi:x}) is outside every initialised region "
            f"({', '.join(f'0x{b:x}+0x{s:x}' for b, s in self.regions) or 'none'})"
        )

    def write(self, addr: int, data: bytes | np.ndarray | torch.Tensor) -> None:
        """Store bytes at ``addr``; memory there is allocated first if needed."""
        t = _as_u8(data, self.device)
        try:
            b, d = self._region(addr, addr + t.numel())
        except DlakitError:
            self.alloc(addr, t.numel())
            b, d = self._region(addr, addr + t.numel())
        d[addr - b : addr - b + t.numel()] = t

    def read(self, addr: int, size: int) -> bytes:
        b, d = self._region(addr, addr + size)
        return d[addr - b : addr - b + size].cpu().numpy().tobytes()

    def strided(
        self, base: int, shape: tuple[int, ...], strides: tuple[int, ...]
    ) -> torch.Tensor | None:
        """A uint8 view of the bytes at ``base + sum(i * stride)``, or None if not in one region."""
        if not shape or min(shape) <= 0:
            return None
        extent = sum((n - 1) * st for n, st in zip(shape, strides, strict=True)) + 1
        try:
            b, d = self._region(base, base + extent)
        except DlakitError:
            return None
        return d.as_strided(shape, strides, storage_offset=d.storage_offset() + base - b)

    def gather(self, addrs: torch.Tensor, bounds: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 values at the absolute addresses ``addrs`` (any shape, int64).

        ``bounds`` = (lowest, highest + 1) address when the caller knows them (saves two passes).
        """
        if addrs.numel() == 0:
            return torch.zeros(addrs.shape, dtype=torch.uint8, device=self.device)
        lo, hi = bounds if bounds else (int(addrs.min()), int(addrs.max()) + 1)
        b, d = self._region(lo, hi)
        return d[addrs - b]

    def scatter(self, addrs: torch.Tensor, values: torch.Tensor) -> None:
        if addrs.numel() == 0:
            return
        lo, hi = int(addrs.min()), int(addrs.max()) + 1
        b, d = self._region(lo, hi)
        d[(addrs - b).reshape(-1)] = values.reshape(-1).to(torch.uint8)


def _as_u8(data: bytes | np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        t = data.reshape(-1)
        if t.dtype != torch.uint8:
            t = t.to(torch.int64).bitwise_and(0xFF).to(torch.uint8)
        return t.to(device)
    if isinstance(data, bytes | bytearray | memoryview):
        arr = np.frombuffer(bytes(data), dtype=np.uint8)
    else:
        arr = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return torch.from_numpy(arr.copy()).to(device)
