"""An input tensor's buffer from a file, as the runtime test application builds it
(nvdla/sw ``umd/apps/runtime`` ``PGM2DIMG``, ``createImageCopy``).

* ``.pgm`` (binary P5, 8-bit): one channel; an FP16 tensor gets ``(pixel - mean) / normalize``
  with the runtime's defaults mean 0 and normalize 1 through ``half.h``; an INT8 tensor gets
  ``floor(pixel * 127 / 255 + 0.5)``.
* ``.npy``: a [C, H, W] (or [1, C, H, W]) array of the tensor's values: floats for an FP16
  tensor (rounded as ``half.h`` does), integers in range for INT8 / INT16.
* ``.dimg``: an image from ``loadable run``: its elements are copied.

Elements are placed in the tensor's feature layout (its line and surface strides; 32-byte
atoms, 8 bytes for ``FEATURE_X8``), the rest of the buffer is zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.loadable.dimg import read_dimg
from dlakit.loadable.half import float_to_half
from dlakit.loadable.reader import PIXEL_FORMAT_FEATURE_X8, DataType, TensorDesc

_BYTES = {DataType.HALF: 2, DataType.INT16: 2, DataType.INT8: 1}


def read_pgm(path: Path) -> np.ndarray:
    """A binary 8-bit PGM as [H, W] uint8 (comment lines skipped, as ``parsePGMInfo`` does)."""
    raw = path.read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise DlakitError(f"{path}: truncated PGM header")
        line = raw[pos:end]
        pos = end + 1
        if line.startswith(b"#"):
            continue
        fields.extend(line.split())
    magic, width, height, maxval = fields[:4]
    if magic != b"P5":
        raise DlakitError(f"{path}: not a binary PGM (magic {magic!r}, want P5)")
    try:
        w, h, m = int(width), int(height), int(maxval)
    except ValueError:
        raise DlakitError(f"{path}: bad PGM size or maximum value") from None
    if m != 255:
        raise DlakitError(f"{path}: PGM maximum value {m}; the runtime reads 255 only")
    data = raw[pos : pos + w * h]
    if len(data) != w * h:
        raise DlakitError(f"{path}: {len(data)} pixel bytes, a {w}x{h} image needs {w * h}")
    return np.frombuffer(data, dtype=np.uint8).reshape(h, w)


def _values(path: Path, tensor: TensorDesc) -> np.ndarray:
    """Element values [C, H, W] in the tensor's type (FP16 as bit patterns)."""
    kind = DataType(tensor.data_type) if tensor.data_type in _BYTES else None
    if kind is None:
        raise DlakitError(
            f"input tensor {tensor.name!r}: data type {tensor.data_type} is not modelled"
        )
    suffix = path.suffix.lower()
    if suffix == ".pgm":
        pixels = read_pgm(path)[None].astype(np.float32)
        if kind == DataType.HALF:
            return float_to_half(pixels)
        if kind == DataType.INT8:
            return np.floor(pixels * 127.0 / 255.0 + 0.5).astype(np.int64)
        raise DlakitError(f"{path}: the runtime has no PGM conversion to INT16")
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DlakitError(f"{path}: not a readable .npy ({exc})") from None
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 3:
            raise DlakitError(f"{path}: shape {arr.shape}, expected [C, H, W] or [1, C, H, W]")
        if kind == DataType.HALF:
            return float_to_half(arr.astype(np.float32))
        if not np.issubdtype(arr.dtype, np.integer):
            raise DlakitError(f"{path}: {arr.dtype} values for an integer ({kind.name}) tensor")
        bits = 8 * _BYTES[kind]
        if arr.min(initial=0) < -(1 << (bits - 1)) or arr.max(initial=0) >= 1 << (bits - 1):
            raise DlakitError(f"{path}: values outside {kind.name}")
        return arr.astype(np.int64)
    if suffix == ".dimg":
        image = read_dimg(path)
        elements = image.elements()
        return elements.view(np.uint16) if elements.dtype == np.float16 else elements
    raise DlakitError(
        f"{path}: input must be .pgm, .npy or .dimg (not {path.suffix or 'no suffix'})"
    )


def input_buffer(path: Path, tensor: TensorDesc) -> bytes:
    """The bytes of ``tensor``'s buffer holding the input from ``path``."""
    if not path.is_file():
        raise DlakitError(f"input {path} not found")
    values = _values(path, tensor)
    c, h, w = values.shape
    if (h, w) != (tensor.h, tensor.w) or c > tensor.c:
        raise DlakitError(
            f"{path}: {c}x{h}x{w} (CxHxW) does not fit input tensor {tensor.name!r} "
            f"({tensor.c}x{tensor.h}x{tensor.w})"
        )
    size = _BYTES[DataType(tensor.data_type)]
    offsets = feature_offsets(tensor, c)
    buf = np.zeros(tensor.size, dtype=np.uint8)
    v = values.astype(np.int64) & ((1 << (8 * size)) - 1)
    for i in range(size):
        buf[offsets + i] = (v >> (8 * i)) & 0xFF
    return buf.tobytes()


def feature_offsets(tensor: TensorDesc, channels: int, first_channel: int = 0) -> np.ndarray:
    """Byte offset in ``tensor``'s buffer of each element [C, H, W] of ``channels`` channels
    from ``first_channel`` on (the feature layout: atoms of 8 or 32 bytes, line and surface
    strides); refused when the strides run past the buffer."""
    size = _BYTES[DataType(tensor.data_type)]
    atom = 8 if tensor.pixel_format == PIXEL_FORMAT_FEATURE_X8 else 32
    per_atom = atom // size
    line, surf = tensor.strides[1], tensor.strides[2]
    cc = np.arange(first_channel, first_channel + channels)[:, None, None]
    hh = np.arange(tensor.h)[None, :, None]
    ww = np.arange(tensor.w)[None, None, :]
    offsets = (cc // per_atom) * surf + hh * line + ww * atom + (cc % per_atom) * size
    if offsets.size and int(offsets.max()) + size > tensor.size:
        raise DlakitError(f"tensor {tensor.name!r}: its strides run past its {tensor.size} bytes")
    return offsets
