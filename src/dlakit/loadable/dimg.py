"""The runtime's image file (``.dimg``): nvdla/sw ``NvDlaImage`` (``umd/apps/runtime/DlaImage.cpp``,
``TestUtils.cpp``), as of the regression goldens (commit 537e0e8^, before INT8 support moved the
format numbers).

File: ``"DIMG"``, u32 version 0, then the metadata (u32 each: surface format, width, height,
channel, line stride, surface stride, size) and the elements packed channel by channel, row by
row (``packData`` with a stable hash). Each element is read from the output buffer at
``getAddrOffset``: for the feature formats ``(c / x) * surface_stride + h * line_stride + w * x *
bpe + (c % x) * bpe`` with x = 32 (INT8) or 16 (INT16, FP16) whatever the target's atom, so the
buffer of a target with 8-byte atoms is read with overlapping strides, as the goldens were made.
FP16 values equal to 32768.0 become 0 and NaNs become 31744.0: ``half == 0x8000`` and ``half =
0x7C00`` compare and assign numbers, not bit patterns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.loadable.reader import (
    PIXEL_FORMAT_FEATURE,
    PIXEL_FORMAT_FEATURE_X8,
    DataType,
    TensorDesc,
)

MAGIC = b"DIMG"
VERSION = 0
HEADER = struct.Struct("<4sIIIIIIII")
# NvDlaImage::PixelFormat numbers of that version.
D_F8_CHW_I, D_F16_CHW_I, D_F16_CHW_F = 37, 38, 39
D_F8_CXHWX_X32_I, D_F16_CXHWX_X16_I, D_F16_CXHWX_X16_F = 40, 41, 42
T_R8 = 0
FORMAT_NAMES = {
    T_R8: "T_R8",
    D_F8_CHW_I: "D_F8_CHW_I",
    D_F16_CHW_I: "D_F16_CHW_I",
    D_F16_CHW_F: "D_F16_CHW_F",
    D_F8_CXHWX_X32_I: "D_F8_CxHWx_x32_I",
    D_F16_CXHWX_X16_I: "D_F16_CxHWx_x16_I",
    D_F16_CXHWX_X16_F: "D_F16_CxHWx_x16_F",
}
_FEATURE = {
    D_F8_CXHWX_X32_I: (32, 1, "int"),
    D_F16_CXHWX_X16_I: (16, 2, "int"),
    D_F16_CXHWX_X16_F: (16, 2, "float"),
}
_HALF_32768 = 0x7800
_HALF_31744 = 0x77C0


@dataclass(frozen=True)
class DlaImage:
    surface_format: int
    width: int
    height: int
    channel: int
    line_stride: int
    surface_stride: int
    size: int
    data: bytes  # the packed elements, c-h-w order

    @property
    def format_name(self) -> str:
        return FORMAT_NAMES.get(self.surface_format, str(self.surface_format))

    def to_bytes(self) -> bytes:
        head = HEADER.pack(
            MAGIC,
            VERSION,
            self.surface_format,
            self.width,
            self.height,
            self.channel,
            self.line_stride,
            self.surface_stride,
            self.size,
        )
        return head + self.data

    def elements(self) -> np.ndarray:
        """The packed elements as a [C, H, W] array (int8, int16 or float16)."""
        bpe = _FEATURE.get(self.surface_format, (1, 1, "int"))[1]
        kind = _FEATURE.get(self.surface_format, (1, 1, "int"))[2]
        dtype = {(1, "int"): np.int8, (2, "int"): np.int16, (2, "float"): np.float16}[(bpe, kind)]
        if self.surface_format == T_R8:
            dtype = np.uint8
        arr = np.frombuffer(self.data, dtype=dtype)
        return arr.reshape(self.channel, self.height, self.width)


def surface_format(tensor: TensorDesc) -> int:
    """``Tensor2DIMG``: the image format of an output tensor descriptor."""
    if tensor.pixel_format not in (PIXEL_FORMAT_FEATURE, PIXEL_FORMAT_FEATURE_X8):
        # The runtime warns and falls back to FP16 features.
        return D_F16_CXHWX_X16_F
    formats = {
        DataType.HALF: D_F16_CXHWX_X16_F,
        DataType.INT16: D_F16_CXHWX_X16_I,
        DataType.INT8: D_F8_CXHWX_X32_I,
    }
    if tensor.data_type not in formats:
        raise DlakitError(
            f"output tensor {tensor.name!r}: data type {tensor.data_type} has no image format"
        )
    return formats[DataType(tensor.data_type)]


def from_buffer(tensor: TensorDesc, buffer: bytes) -> DlaImage:
    """Serialize an output buffer as the runtime does (``serialize(stableHash=true)``)."""
    fmt = surface_format(tensor)
    x, bpe, kind = _FEATURE[fmt]
    c, h, w = tensor.c, tensor.h, tensor.w
    line, surf = tensor.strides[1], tensor.strides[2]
    cc = np.arange(c)[:, None, None]
    hh = np.arange(h)[None, :, None]
    ww = np.arange(w)[None, None, :]
    offsets = (cc // x) * surf + hh * line + ww * (x * bpe) + (cc % x) * bpe
    if offsets.size and int(offsets.max()) >= tensor.size:
        raise DlakitError(
            f"output tensor {tensor.name!r}: element offset {int(offsets.max())} >= its size "
            f"{tensor.size} (packData refuses it)"
        )
    raw = np.frombuffer(buffer, dtype=np.uint8)
    if raw.size < tensor.size:
        raise DlakitError(f"output tensor {tensor.name!r}: {raw.size} of {tensor.size} bytes")
    if bpe == 1:
        packed = raw[offsets].astype(np.uint8)
    else:
        packed = raw[offsets].astype(np.uint16) | (raw[offsets + 1].astype(np.uint16) << 8)
        if kind == "float":
            packed = _stable_half(packed)
        packed = packed.astype("<u2")
    return DlaImage(fmt, w, h, c, line, surf, tensor.size, packed.tobytes())


def _stable_half(bits: np.ndarray) -> np.ndarray:
    nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)
    out = np.where(bits == _HALF_32768, 0, bits)
    return np.where(nan, _HALF_31744, out).astype(np.uint16)


def read_dimg(path: Path) -> DlaImage:
    """Read a ``.dimg`` file (``DIMGFile2DIMG``); bad input names the file and field."""
    if not path.is_file():
        raise DlakitError(f"image {path} not found")
    raw = path.read_bytes()
    if len(raw) < HEADER.size:
        raise DlakitError(f"{path}: {len(raw)} bytes is too short for a DIMG header")
    magic, version, fmt, w, h, c, line, surf, size = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise DlakitError(f"{path}: not a DIMG file (magic {magic!r})")
    if version != VERSION:
        raise DlakitError(f"{path}: DIMG version {version}, expected {VERSION}")
    bpe = _FEATURE.get(fmt, (1, 1, "int"))[1] if fmt != T_R8 else 1
    if fmt not in FORMAT_NAMES:
        raise DlakitError(f"{path}: surface format {fmt} is not supported")
    need = w * h * c * bpe
    data = raw[HEADER.size :]
    if len(data) != need:
        raise DlakitError(
            f"{path}: {w}x{h}x{c} elements need {need} data bytes, file has {len(data)}"
        )
    return DlaImage(fmt, w, h, c, line, surf, size, data)
