"""SDP lookup tables for activations: Sigmoid, Tanh, SiLU, HardSigmoid, HardSwish in INT8.

The SDP Y unit ends in a lookup table (``nvdla.md`` §5.7, :class:`~dlakit.lower.qgraph.SdpLut`):
both tables linearly indexed on the 32-bit Y input ``v``, standing for ``x = v * u``; the
entries are ``f(x) / w`` rounded, and the C converter shifts them to the output's INT8 units.

* **From memory** (an INT8 input ``q``, ``u = s_in``): the LO table starts at -128 with step 1,
  so every INT8 value is an entry and no interpolation happens; the entries are
  ``round(f(q * s_in) / s_out)`` (``w = s_out``, C shift 0): each output is rounded once, the
  exact INT8 activation of the INT8 input.
* **On the fly after a convolution** (the accumulator, requantized by X1/X2 to ``u = s_pre /
  2^k`` with ``s_pre`` the pre-activation tensor's calibrated scale and ``k`` = 8 fraction bits
  where the rescale leaves room): LO spans ``[-128, 128] s_pre`` in steps of ``2^k`` (its INT8
  grid), LE ``2^e`` times that range (``e`` octaves, up to where ``f`` is flat or linear, at
  least 2) for values the INT8 tensor would have clipped; both interpolate linearly. ``w =
  s_out / 2^8`` and C shifts by 8, so the interpolation keeps 8 fraction bits; entries saturate
  to INT16, beyond the INT8 output range either way. Outside LE the tables extrapolate with
  ``f``'s asymptotic slope (0, or 1 for SiLU/HardSwish above).

SiLU is ``x * sigmoid(x)`` as one function of ``x`` (ONNX ``Sigmoid`` and the ``Mul`` of its
input and output): one table, where the literal form would be a LUT pass and a Y multiply, each
rounding to INT8 in between.

Error against float, in output units: 1/2 (the output rounding) plus, on the fly, the
interpolation of ``f`` between entries ``h`` apart (at most ``h^2/8 max|f''|``: for SiLU, whose
``|f''| <= 1/2``, ``h = s_pre`` gives ``s_pre^2/16``) and the entries' rounding (``2^-9``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlakit.errors import DlakitError
from dlakit.lower.hwparams import INT16_MAX, conv_chain
from dlakit.lower.qgraph import LutTable, OutCvt, SdpChain, SdpLut

LE_ENTRIES = 65
LO_ENTRIES = 257
SLOPE_SHIFT_MAX = 15  # the slope shift fields are signed 5-bit
FLY_FRACTION = 8  # fraction bits of the LUT input on the fly (k)
FLY_OUT_FRACTION = 8  # fraction bits of the LUT output on the fly (C shifts them away)
LE_OCTAVES_MAX = 8


@dataclass(frozen=True)
class Activation:
    """A pointwise activation: ``kind`` and the HardSigmoid/HardSwish slope and offset."""

    kind: str  # sigmoid | tanh | silu | hardsigmoid | hardswish
    alpha: float = 0.2
    beta: float = 0.5

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "sigmoid":
            return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|
        if self.kind == "tanh":
            return np.tanh(x)
        if self.kind == "silu":
            return x * 0.5 * (1.0 + np.tanh(0.5 * x))
        hard = np.clip(self.alpha * x + self.beta, 0.0, 1.0)
        if self.kind == "hardsigmoid":
            return hard
        if self.kind == "hardswish":
            return x * hard
        raise DlakitError(f"no lookup table for activation {self.kind!r}")

    def flat_beyond(self) -> float:
        """``|x|`` beyond which ``f`` is constant or linear to within 2^-12 of its range."""
        if self.kind in ("sigmoid", "silu"):
            return 12.0
        if self.kind == "tanh":
            return 6.0
        return max(abs(self.beta), abs(1.0 - self.beta)) / self.alpha

    def high_slope(self) -> float:
        """``df/dx`` as ``x`` grows: 1 for SiLU and HardSwish, else 0."""
        return 1.0 if self.kind in ("silu", "hardswish") else 0.0


def activation_of(op: str, attrs: dict) -> Activation:
    """The activation of an ONNX node (``SiLU`` for the Sigmoid/Mul pair)."""
    kind = op.lower()
    if kind == "hardsigmoid":
        return Activation(kind, float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5)))
    if kind == "hardswish":
        return Activation(kind, 1.0 / 6.0, 0.5)
    return Activation(kind)


def _slope(ratio: float) -> tuple[int, int]:
    """A slope in table units per input unit: (INT16 scale, shift), ``ratio ~ scale * 2^-shift``
    with the shift a signed 5-bit field (negative shifts left)."""
    if ratio <= 0:
        return 0, 0
    shift = 14 - math.floor(math.log2(ratio))
    shift = min(max(shift, -SLOPE_SHIFT_MAX - 1), SLOPE_SHIFT_MAX)
    # Beyond the field, a smaller slope loses bits; it only acts past the tables' ends.
    return min(math.floor(ratio * 2.0**shift + 0.5), INT16_MAX), shift


def _table(act: Activation, n: int, start: int, select: int, u: float, w: float) -> LutTable:
    x = (start + np.arange(n, dtype=np.float64) * 2.0**select) * u
    v = act(x) / w
    entries = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -INT16_MAX - 1, INT16_MAX)
    end = start + ((n - 1) << select)
    oflow_scale, oflow_shift = _slope(act.high_slope() * u / w)
    return LutTable(entries.astype(np.int16), start, end, select, 0, 0, oflow_scale, oflow_shift)


def lut_tables(act: Activation, u: float, k: int, octaves: int, w: float) -> SdpLut:
    """LO over ``[-128, 128] * 2^k`` input units (step ``2^k``), LE over ``2^octaves`` times
    that (step ``2^(k + octaves + 2)``), entries ``f(v u) / w``; hits prefer LO, misses LE."""
    lo = _table(act, LO_ENTRIES, -(128 << k), k, u, w)
    le = _table(act, LE_ENTRIES, -(128 << (k + octaves)), k + octaves + 2, u, w)
    return SdpLut(le=le, lo=lo, uflow_lo=False, oflow_lo=False, hybrid_lo=True,
                  function=act.kind)  # fmt: skip


def memory_lut_chain(act: Activation, s_in: float, s_out: float) -> SdpChain:
    """An SDP pass from memory: X bypassed, the INT8 input indexes LO directly, C shift 0."""
    lut = lut_tables(act, s_in, 0, 1, s_out)
    return SdpChain(lut=lut, c=OutCvt(offset=0, scale=1, shift=0, precision="int8"))


def fly_lut_chain(
    act: Activation,
    acc_scale: np.ndarray,
    bias: np.ndarray | None,
    s_pre: float,
    s_out: float,
    acc_bound: np.ndarray | float | None,
) -> SdpChain:
    """A convolution's SDP chain ending in ``act``: X1/X2 requantize the accumulator (units
    ``acc_scale``) to ``s_pre / 2^k``, Y looks the activation up, C shifts to INT8 ``s_out``."""
    acc_scale = np.asarray(acc_scale, dtype=np.float64)
    top = float(np.abs(acc_scale).max(initial=0.0)) / s_pre
    k = FLY_FRACTION
    while k > 0 and top * 2.0**k >= 2.0**14:  # keep the X rescale a 15-bit mantissa, shift >= 0
        k -= 1
    octaves = math.ceil(math.log2(max(act.flat_beyond() / (128.0 * s_pre), 1.0)))
    octaves = min(max(octaves, 2), LE_OCTAVES_MAX)
    u = s_pre / 2.0**k
    chain = conv_chain(acc_scale, bias, u, acc_bound=acc_bound, x_range=128 << (k + octaves))
    chain.lut = lut_tables(act, u, k, octaves, s_out / 2.0**FLY_OUT_FRACTION)
    chain.c = OutCvt(offset=0, scale=1, shift=FLY_OUT_FRACTION, precision="int8")
    return chain
