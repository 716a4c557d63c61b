"""Byte-addressed memory image: a set of disjoint regions, each one torch uint8 tensor.

Regions are created by ``alloc`` (the traces' ``mem_init``) or by writing where none exists;
touching regions merge. Reads and writes take absolute byte addresses: a surface moves as one
strided view of its region (:meth:`strided_pieces`), an arbitrary address set as one
gather/scatter per region it touches. Memory between the bytes an access touches (the gaps of a
surface whose lines or planes are spaced out) need not be initialised and is left as it is.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import numpy as np
import torch

from dlakit.errors import DlakitError

# A piece of a strided access: the index of the sub-block (leading dimensions) and its view.
Piece = tuple[tuple[int, ...], torch.Tensor]


class Memory:
    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._bases: list[int] = []
        self._data: list[torch.Tensor] = []
        self._fixed = False

    @classmethod
    def over(cls, device: torch.device, regions: list[tuple[int, torch.Tensor]]) -> Memory:
        """A memory whose regions are the given tensors (views stay views): its layout is fixed."""
        mem = cls(device)
        mem._bases = [b for b, _ in regions]
        mem._data = [d for _, d in regions]
        mem._fixed = True
        return mem

    @property
    def regions(self) -> list[tuple[int, int]]:
        return [(b, int(d.numel())) for b, d in zip(self._bases, self._data, strict=True)]

    def tensors(self) -> list[tuple[int, torch.Tensor]]:
        """(base, uint8 tensor) of every region, in address order."""
        return list(zip(self._bases, self._data, strict=True))

    def alloc(self, base: int, size: int, fill: int = 0, keep: bool = False) -> None:
        """Make ``[base, base+size)`` addressable and set it to ``fill`` (merging neighbours).

        With ``keep`` the bytes of regions it overlaps keep their values.
        """
        if size <= 0:
            return
        if self._fixed:
            raise DlakitError(
                f"memory [0x{base:x}, 0x{base + size:x}) is not addressable in this memory image "
                "(its regions are fixed: it is one image of a batch)"
            )
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
        if self._find(lo, hi) is None:
            self.alloc(lo, hi - lo, keep=True)

    def release(self, base: int) -> None:
        """Forget the region that starts at ``base`` (the traces' ``mem_release``)."""
        if self._fixed or base not in self._bases:
            raise DlakitError(f"no memory region starts at 0x{base:x} to release")
        i = self._bases.index(base)
        del self._bases[i], self._data[i]

    def _find(self, lo: int, hi: int) -> tuple[int, torch.Tensor] | None:
        i = bisect.bisect_right(self._bases, lo) - 1
        if i >= 0:
            b, d = self._bases[i], self._data[i]
            if hi <= b + d.numel():
                return b, d
        return None

    def _region(self, lo: int, hi: int) -> tuple[int, torch.Tensor]:
        found = self._find(lo, hi)
        if found is None:
            raise self._outside(lo, hi)
        return found

    def _outside(self, lo: int, hi: int) -> DlakitError:
        return DlakitError(
            f"memory access [0x{lo:x}, 0x{hi:x}) is outside every initialised region "
            f"({', '.join(f'0x{b:x}+0x{s:x}' for b, s in self.regions) or 'none'})"
        )

    def write(self, addr: int, data: bytes | np.ndarray | torch.Tensor) -> None:
        """Store bytes at ``addr``; memory there is allocated first if needed."""
        t = as_u8(data, self.device)
        found = self._find(addr, addr + t.numel())
        if found is None:
            self.alloc(addr, t.numel())
            found = self._region(addr, addr + t.numel())
        b, d = found
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
        found = self._find(base, base + _extent(shape, strides))
        if found is None:
            return None
        b, d = found
        return d.as_strided(shape, strides, storage_offset=d.storage_offset() + base - b)

    def strided_pieces(
        self, base: int, shape: tuple[int, ...], strides: tuple[int, ...]
    ) -> Iterator[Piece]:
        """Views covering a strided access, each inside one region: the whole access when it
        fits one region, else its sub-blocks along the leading dimensions (planes, then lines),
        so the bytes between them need not be addressable."""
        view = self.strided(base, shape, strides)
        if view is not None:
            yield (), view
            return
        if len(shape) == 1 or min(shape) <= 0:
            raise self._outside(base, base + _extent(shape, strides))
        for i in range(shape[0]):
            for index, piece in self.strided_pieces(base + i * strides[0], shape[1:], strides[1:]):
                yield (i, *index), piece

    def gather(self, addrs: torch.Tensor, bounds: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 values at the absolute addresses ``addrs`` (any shape, int64).

        ``bounds`` = (lowest, highest + 1) address when the caller knows them (saves two passes).
        """
        if addrs.numel() == 0:
            return torch.zeros(addrs.shape, dtype=torch.uint8, device=self.device)
        lo, hi = bounds if bounds else (int(addrs.min()), int(addrs.max()) + 1)
        found = self._find(lo, hi)
        if found is not None:
            b, d = found
            return d[addrs - b]
        out = torch.empty(addrs.shape, dtype=torch.uint8, device=self.device)
        for mask, b, d in self._by_region(addrs):
            out[mask] = d[addrs[mask] - b]
        return out

    def scatter(self, addrs: torch.Tensor, values: torch.Tensor) -> None:
        if addrs.numel() == 0:
            return
        values = values.reshape(addrs.shape).to(torch.uint8)
        found = self._find(int(addrs.min()), int(addrs.max()) + 1)
        if found is not None:
            b, d = found
            d[(addrs - b).reshape(-1)] = values.reshape(-1)
            return
        for mask, b, d in self._by_region(addrs):
            d[addrs[mask] - b] = values[mask]

    def _by_region(self, addrs: torch.Tensor) -> Iterator[tuple[torch.Tensor, int, torch.Tensor]]:
        """(mask of ``addrs`` inside it, base, data) for each region the addresses touch."""
        bases = torch.tensor(self._bases, dtype=torch.int64, device=addrs.device)
        ends = bases + torch.tensor([d.numel() for d in self._data], device=addrs.device)
        index = torch.searchsorted(bases, addrs, right=True) - 1
        inside = (index >= 0) & (addrs < ends[index.clamp(min=0)])
        if not bool(inside.all()):
            bad = int(addrs[~inside].reshape(-1)[0])
            raise self._outside(bad, bad + 1)
        for i in torch.unique(index).tolist():
            yield index == i, self._bases[i], self._data[i]


def _extent(shape: tuple[int, ...], strides: tuple[int, ...]) -> int:
    return sum((n - 1) * st for n, st in zip(shape, strides, strict=True)) + 1


def as_u8(data: bytes | np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
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
