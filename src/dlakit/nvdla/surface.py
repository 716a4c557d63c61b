"""Feature surfaces in memory (``nvdla.md`` §3): channels in atoms, order C'(atom) -> W -> H ->
C-surface; an INT8 tensor of shape (1, C, H, W) or (1, C) is the cube C x H x W (H = W = 1).
An atom holds ``atom`` bytes whatever the precision: ``atom // bpe`` channels of ``bpe`` bytes
(FP16: 2)."""

from __future__ import annotations

from dataclasses import dataclass

from dlakit.errors import DlakitError


def cube_of(shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    """(C, H, W) of a batch-1 ONNX shape held by the DLA."""
    if len(shape) == 4:
        return int(shape[1]), int(shape[2]), int(shape[3])
    if len(shape) == 2:
        return int(shape[1]), 1, 1
    if len(shape) == 3:
        return int(shape[1]), int(shape[2]), 1
    raise DlakitError(f"tensor '{name}' of shape {list(shape)} is not a feature cube")


@dataclass(frozen=True)
class Surface:
    """A feature cube at ``address`` with its strides; a view into a larger cube (a tile, a
    concatenation input) keeps the parent's strides."""

    address: int
    channels: int
    height: int
    width: int
    line_stride: int
    surf_stride: int

    def to_json(self) -> dict:
        return {
            "address": self.address,
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "line_stride": self.line_stride,
            "surf_stride": self.surf_stride,
        }

    @classmethod
    def from_json(cls, doc: dict) -> Surface:
        return cls(**{k: int(doc[k]) for k in cls.__dataclass_fields__})


def packed_bytes(cube: tuple[int, int, int], atom: int, bpe: int = 1) -> int:
    c, h, w = cube
    return -(-c // (atom // bpe)) * h * w * atom


def packed_surface(address: int, cube: tuple[int, int, int], atom: int) -> Surface:
    c, h, w = cube
    return Surface(address, c, h, w, w * atom, h * w * atom)


def channel_view(parent: Surface, c0: int, channels: int, atom: int, bpe: int = 1) -> Surface:
    """Channels ``[c0, c0 + channels)`` of ``parent``; ``c0`` must start a surface."""
    per_surface = atom // bpe
    if c0 % per_surface:
        raise DlakitError(
            f"a concatenation input starts at channel {c0}, not on a {per_surface}-channel surface"
        )
    return Surface(
        parent.address + (c0 // per_surface) * parent.surf_stride,
        channels,
        parent.height,
        parent.width,
        parent.line_stride,
        parent.surf_stride,
    )


def row_view(parent: Surface, row0: int, rows: int) -> Surface:
    return Surface(
        parent.address + row0 * parent.line_stride,
        parent.channels,
        rows,
        parent.width,
        parent.line_stride,
        parent.surf_stride,
    )
