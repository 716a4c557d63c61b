"""FP16 conversions of the runtime's ``half.h`` (half 1.11.0, bundled in nvdla/sw
``umd/external/include/half.h``): float -> half rounds to nearest with ties away from zero
(``HALF_ROUND_STYLE`` 1, ``HALF_ROUND_TIES_TO_EVEN`` 0), by van der Zijp's table method; half
-> float is exact. The hardware's own conversions are ``dlakit.sim.fp16``'s.
"""

from __future__ import annotations

import numpy as np


def _half_tables() -> tuple[np.ndarray, np.ndarray]:
    """van der Zijp's float -> half base and shift tables, as ``half.h`` builds them."""
    base = np.zeros(512, dtype=np.uint32)
    shift = np.zeros(512, dtype=np.uint32)
    for i in range(256):
        e = i - 127
        if e < -24:
            b, s = 0x0000, 24
        elif e < -14:
            b, s = 0x0400 >> (-e - 14), -e - 1
        elif e <= 15:
            b, s = (e + 15) << 10, 13
        elif e < 128:
            b, s = 0x7C00, 24
        else:
            b, s = 0x7C00, 13
        base[i], shift[i] = b, s
        base[i | 0x100], shift[i | 0x100] = b | 0x8000, s
    return base, shift


_BASE, _SHIFT = _half_tables()


def float_to_half(values: np.ndarray) -> np.ndarray:
    """float32 -> FP16 bits, rounding to nearest, ties away from zero (``half.h`` 1.11,
    ``HALF_ROUND_STYLE`` 1, ``HALF_ROUND_TIES_TO_EVEN`` 0)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    idx = bits >> 23
    mant = bits & 0x7FFFFF
    h = _BASE[idx] + (mant >> _SHIFT[idx])
    round_bit = ((mant >> (_SHIFT[idx] - 1)) | ((idx & 0xFF) == 102)) & 1
    h = h + (round_bit & ((h & 0x7C00) != 0x7C00))
    return h.astype(np.uint16)


def half_to_float(bits: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bits, dtype=np.uint16).view(np.float16).astype(np.float32)
