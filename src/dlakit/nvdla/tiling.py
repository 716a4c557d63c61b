"""Convolution-buffer tiling: split a convolution whose input rows and weights do not fit CBUF.

CBUF is ``banks`` banks of ``depth`` entries of ``width`` bytes; CDMA's ``D_BANK`` gives the
convolution ``data_bank`` banks for input rows and ``weight_bank`` banks for kernels, and their
sum cannot exceed the banks there are. One input row ("slice") takes ``entry_per_slice`` entries
(the channel atoms of the row, ``width / atom`` atoms per entry). When the whole layer does not
fit, it is cut into hardware operations along output channels (whole kernel groups, starting on
an output surface) and along output rows (each tile reads the input rows its outputs need, the
kernel's overlap included, with its own top/bottom padding). The split with the fewest
operations wins; a layer whose single input row and smallest kernel group do not fit together
is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlakit.errors import DlakitError
from dlakit.nvdla.images import WEIGHT_ALIGN
from dlakit.targets import NvdlaSpec, Target


@dataclass(frozen=True)
class ConvShape:
    channels: int
    height: int
    width: int
    kernels: int
    r: int
    s: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    out_h: int
    out_w: int


@dataclass(frozen=True)
class Tile:
    """One hardware operation of a split convolution."""

    k0: int
    kernels: int
    oh0: int
    out_rows: int
    ih0: int  # first input row read
    in_rows: int
    pad_top: int
    pad_bottom: int
    data_banks: int
    weight_banks: int
    entries: int  # entry_per_slice


def entry_per_slice(channels: int, width: int, cfg: NvdlaSpec) -> int:
    """CBUF entries of one input row: whole entries of atoms, then the leftover atoms.

    Counted in channels whatever the precision: the official 16-bit regression loadable
    (CONV_D_L0_0: 128 channels x 8, nv_full) states 16 entries, as many as INT8 data of the same
    channels; such an entry holds ``bpe`` times the bytes (:func:`split_tiles`)."""
    per_entry = max(cfg.cbuf_bank_width // cfg.memory_atomic, 1)
    atoms = -(-channels // cfg.memory_atomic)
    whole, rest = divmod(atoms, per_entry)
    if rest == 0:
        partial = 0
    elif rest == 3:
        partial = width
    else:
        partial = -(-(rest * width) // per_entry)
    return whole * width + partial


def weight_bytes(kernels: int, shape: ConvShape, bpe: int = 1) -> int:
    raw = kernels * shape.channels * shape.r * shape.s * bpe
    return -(-raw // WEIGHT_ALIGN) * WEIGHT_ALIGN


def _banks(nbytes: int, cfg: NvdlaSpec) -> int:
    return max(-(-nbytes // cfg.bank_bytes), 1)


def _rows_for(out_rows: int, shape: ConvShape) -> int:
    return (out_rows - 1) * shape.stride[0] + (shape.r - 1) * shape.dilation[0] + 1


def _row_window(oh0: int, rows: int, shape: ConvShape) -> tuple[int, int, int, int]:
    """(first input row, input rows, pad top, pad bottom) of output rows [oh0, oh0+rows)."""
    start = oh0 * shape.stride[0] - shape.pads[0]
    end = start + _rows_for(rows, shape)
    lo, hi = max(start, 0), min(end, shape.height)
    return lo, max(hi - lo, 0), lo - start, end - hi


def split_tiles(shape: ConvShape, target: Target, name: str, bpe: int = 1) -> list[Tile]:
    """The tiles of one convolution on ``target``'s CBUF (one tile when it fits); ``bpe`` = 2
    for FP16 data and weights."""
    cfg = target.nvdla
    if cfg is None:
        raise DlakitError(f"target {target.name} has no convolution buffer to tile for")
    entries = entry_per_slice(shape.channels, shape.width, cfg)
    q = cfg.k_quantum if bpe == 1 else cfg.k_quantum_fp16
    candidates = sorted({shape.kernels, *range(q, shape.kernels, q)}, reverse=True)
    best: tuple[int, int, int] | None = None  # (operations, kernels per tile, rows per tile)
    for kc in candidates:
        wb = _banks(weight_bytes(kc, shape, bpe), cfg)
        free = cfg.cbuf_banks - wb
        if free < 1:
            continue
        max_rows = free * cfg.cbuf_bank_depth // (entries * bpe)
        if min(shape.height, _rows_for(1, shape)) > max_rows:
            continue
        if min(shape.height, _rows_for(shape.out_h, shape)) <= max_rows:
            oh = shape.out_h
        else:
            oh = max((max_rows - (shape.r - 1) * shape.dilation[0] - 1) // shape.stride[0] + 1, 1)
        ops = -(-shape.kernels // kc) * -(-shape.out_h // oh)
        if best is None or ops < best[0]:
            best = (ops, kc, oh)
    if best is None:
        raise DlakitError(
            f"layer {name}: one input row ({shape.channels} channels x {shape.width}) with "
            f"{min(q, shape.kernels)} kernels of {shape.r}x{shape.s}x{shape.channels} does not fit "
            f"the {target.name} convolution buffer ({cfg.cbuf_banks} banks x "
            f"{cfg.bank_bytes} bytes)"
        )
    _, kc, oh = best
    tiles = []
    for k0 in range(0, shape.kernels, kc):
        kn = min(kc, shape.kernels - k0)
        wb = _banks(weight_bytes(kn, shape, bpe), cfg)
        for oh0 in range(0, shape.out_h, oh):
            rows = min(oh, shape.out_h - oh0)
            ih0, in_rows, top, bottom = _row_window(oh0, rows, shape)
            db = _banks(entries * cfg.cbuf_bank_width * bpe * in_rows, cfg)
            tiles.append(Tile(k0, kn, oh0, rows, ih0, in_rows, top, bottom, db, wb, entries))
    return tiles
