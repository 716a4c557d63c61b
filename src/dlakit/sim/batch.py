"""A batch of memory images with one address map: the simulator's batch axis.

Image ``i`` of the batch is what one NVDLA's memory holds while it runs image ``i``. A region is
either per image (a ``[batch, size]`` uint8 tensor: activations) or shared (one copy read by
every image: the constants, which no operation writes). A surface is read or written for the
whole batch as one strided view ``[batch, *shape]``; :meth:`BatchedMemory.image` gives one image
as a plain :class:`~dlakit.sim.memory.Memory` (views of the same storage) for the unit models.
"""

from __future__ import annotations

import bisect

import numpy as np
import torch

from dlakit.errors import DlakitError
from dlakit.sim.memory import Memory, as_u8


class BatchedMemory:
    def __init__(self, batch: int, device: str | torch.device = "cpu") -> None:
        if batch < 1:
            raise DlakitError(f"a batch holds at least one image, not {batch}")
        self.batch = batch
        self.device = torch.device(device)
        self._bases: list[int] = []
        self._data: list[torch.Tensor] = []  # [batch, size], or [1, size] when shared
        self._shared: list[bool] = []

    @classmethod
    def wrap(cls, memory: Memory) -> BatchedMemory:
        """One image: ``memory``'s regions as they are now (views: writes go to ``memory``)."""
        bm = cls(1, memory.device)
        for base, data in memory.tensors():
            bm._bases.append(base)
            bm._data.append(data[None])
            bm._shared.append(False)
        return bm

    def with_batch(self, batch: int) -> BatchedMemory:
        """The same address map for ``batch`` images: the shared regions are the same tensors,
        the per-image ones new and zeroed."""
        bm = BatchedMemory(batch, self.device)
        for base, data, shared in zip(self._bases, self._data, self._shared, strict=True):
            bm._bases.append(base)
            bm._shared.append(shared)
            bm._data.append(data if shared else data.new_zeros((batch, data.shape[1])))
        return bm

    def alloc(self, base: int, size: int, shared: bool = False) -> None:
        """Zeroed memory at ``[base, base+size)``, per image or ``shared`` by all images."""
        i = bisect.bisect_right(self._bases, base)
        before_end = self._bases[i - 1] + self._data[i - 1].shape[1] if i else base
        if before_end > base or (i < len(self._bases) and self._bases[i] < base + size):
            raise DlakitError(f"memory [0x{base:x}, 0x{base + size:x}) overlaps a region")
        rows = 1 if shared else self.batch
        self._bases.insert(i, base)
        self._data.insert(i, torch.zeros((rows, size), dtype=torch.uint8, device=self.device))
        self._shared.insert(i, shared)

    def load(self, base: int, data: bytes | np.ndarray | torch.Tensor) -> None:
        """Store the same bytes at ``base`` in every image (once in a shared region)."""
        t = as_u8(data, self.device)
        b, d, _ = self._region(base, base + t.numel())
        d[:, base - b : base - b + t.numel()] = t

    def find(self, lo: int, hi: int) -> tuple[int, torch.Tensor, bool] | None:
        """(base, data, shared) of the region holding ``[lo, hi)``, or None."""
        i = bisect.bisect_right(self._bases, lo) - 1
        if i >= 0 and hi <= self._bases[i] + self._data[i].shape[1]:
            return self._bases[i], self._data[i], self._shared[i]
        return None

    def _region(self, lo: int, hi: int) -> tuple[int, torch.Tensor, bool]:
        found = self.find(lo, hi)
        if found is None:
            raise DlakitError(f"memory [0x{lo:x}, 0x{hi:x}) is outside every region of the batch")
        return found

    def shared(self, lo: int, hi: int) -> bool:
        """Whether ``[lo, hi)`` lies in one shared region (constant for every run)."""
        found = self.find(lo, hi)
        return found is not None and found[2]

    def view(
        self, base: int, shape: tuple[int, ...], strides: tuple[int, ...], writable: bool = False
    ) -> torch.Tensor | None:
        """uint8 view ``[batch, *shape]`` of the bytes at ``base + sum(i * stride)`` in every
        image; None when they are not in one region (or, ``writable``, in a shared one)."""
        extent = sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1
        found = self.find(base, base + extent)
        if found is None or (writable and found[2]):
            return None
        b, d, shared = found
        batch_stride = 0 if shared else d.stride(0)
        return d.as_strided(
            (self.batch, *shape),
            (batch_stride, *strides),
            storage_offset=d.storage_offset() + base - b,
        )

    def image(self, index: int) -> Memory:
        """Image ``index`` as a Memory over the same storage (its regions are fixed)."""
        return Memory.over(
            self.device,
            [
                (b, d[0] if s else d[index])
                for b, d, s in zip(self._bases, self._data, self._shared, strict=True)
            ],
        )

    def nbytes(self) -> int:
        return sum(d.numel() for d in self._data)
