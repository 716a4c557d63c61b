"""The quantized graph: a model's layers lowered to hardware-shaped integer layers.

A :class:`QGraph` is what the INT8 reference (:mod:`dlakit.lower.intref`) executes and what the
NVDLA compiler lowers to registers. Every number the hardware needs is explicit here as an
integer with the width of its register field, so the compiler copies values and never derives
them again; the reference and the compiled artifact must then agree byte for byte.

Conventions used by every layer:

* Tensors are NCHW (ONNX order); a 2-D ``(N, C)`` tensor is the cube ``C x 1 x 1``. Shapes in
  :class:`QTensor` are the model's shapes at batch 1; the reference runs any batch.
* INT8 tensors are symmetric: real value = ``int8 * scale``, zero point 0.
* "Channel" operands are numpy arrays of shape ``(K,)``; a register (per-layer) operand is
  shape ``(1,)`` and is broadcast over channels.
* All right shifts round half away from zero and then saturate (``nvdla.md`` §5.0).

Where a layer's SDP chain puts each job (see :mod:`dlakit.lower.hwparams` for the derivation):

* X1 (BS): ALU SUM adds the bias (INT16 operand << ALU shift) in accumulator units, MUL applies
  the per-channel requantization multiplier, TRT shifts right, ReLU is the lower clip at 0.
* X2 (BN): only for an upper clip (ReLU6 / Clip): ALU MIN with a register operand; MUL bypassed
  with truncate 0 (the truncate applies even when MUL is bypassed).
* Y (EW): an elementwise add, max or multiply with a second INT8 tensor through the ALU or MUL
  operand converter; then, on targets with the SDP LUT, a lookup table (an activation).
* C: output converter to INT8 (identity when no Y unit is used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx

from dlakit.support.verdict import Engine, NodeVerdict

Precision = Literal["int8", "fp16", "fp32"]
OutPrecision = Literal["int8", "fp16"]
LayerPrecision = Literal["int8", "fp16"]  # the data path of a hardware layer


@dataclass
class QTensor:
    """A tensor of the quantized graph.

    ``precision`` is how the tensor is stored: ``int8`` (with ``scale``), ``fp16`` or ``fp32``.
    An ``fp16`` tensor with a ``scale`` holds the FP16 of an INT17 written by an SDP output
    converter (real value = value * scale); without one it holds real values.
    ``shape`` is the ONNX shape at batch 1.
    """

    name: str
    shape: tuple[int, ...]
    precision: Precision
    scale: float | None = None


@dataclass
class XUnit:
    """SDP X1 (BS) or X2 (BN) sub-unit: ALU -> MUL -> TRT -> ReLU (``nvdla.md`` §5.4).

    * ``alu``: ``"sum"``, ``"max"``, ``"min"`` or None (bypass). Its operand is
      ``sat32(alu_operand << alu_shift)``; ``alu_operand`` is INT16, ``(1,)`` = register
      ``D_DP_*_ALU_SRC_VALUE``, ``(K,)`` = per-channel from the B/N-RDMA. ``alu_shift`` is the
      6-bit ``*_ALU_SHIFT_VALUE``. The ALU result is 33 bits, not saturated.
    * ``mul``: INT16 multiplier(s) or None (bypass); product is 49 bits. ``prelu``: non-negative
      inputs pass unmultiplied and untruncated.
    * ``truncate``: ``*_MUL_SHIFT_VALUE`` (0..63), applied even when MUL is bypassed; result
      saturates to INT32.
    * ``relu``: ``max(y, 0)`` unless bypassed.

    When both ALU and MUL operands are per-channel, the RDMA reads them interleaved (ALU first).
    """

    alu: Literal["sum", "max", "min"] | None = None
    alu_operand: np.ndarray | None = None
    alu_shift: int = 0
    mul: np.ndarray | None = None
    prelu: bool = False
    truncate: int = 0
    relu: bool = False


@dataclass
class EwUnit:
    """SDP Y (EW) sub-unit used with a second INT8 tensor (targets with SDP EW).

    The operand tensor ``operand`` (INT8, same shape as the layer output) is read by the E-RDMA and
    passes the operand converter of its ``stage``:
    ``op32 = sat32(round((x - cvt_offset) * cvt_scale >> cvt_truncate))`` (offset 32-bit, scale
    INT16, truncate 6-bit). Stage ``"alu"``: ``sat32(y ALU op32)``, MUL bypassed. Stage
    ``"mul"``: ``sat32(round(y * op32 >> truncate))`` (64-bit product, ``D_DP_EW_TRUNCATE_VALUE``
    10 bits), ALU bypassed.
    """

    operand: str
    cvt_offset: int
    cvt_scale: int
    cvt_truncate: int
    alu: Literal["sum", "max", "min"] = "sum"
    stage: Literal["alu", "mul"] = "alu"
    truncate: int = 0


@dataclass
class OutCvt:
    """SDP C output converter: ``t17 = sat17(round((x - offset) * scale >> shift))``, then
    ``sat8(t17)`` (``precision="int8"``) or FP16 of ``t17`` rounded to nearest even, 65520 and
    beyond infinite (``"fp16"``: ``D_DATA_FORMAT.OUT_PRECISION``, cmod ``sdp_c.cpp``
    ``Int17ToFp16``).

    ``offset`` is 32-bit (``D_CVT_OFFSET``), ``scale`` INT16 (``D_CVT_SCALE``), ``shift`` 6-bit
    (``D_CVT_SHIFT``).
    """

    offset: int = 0
    scale: int = 1
    shift: int = 0
    precision: OutPrecision = "int8"


@dataclass
class LutTable:
    """One linearly indexed lookup table (``nvdla.md`` §5.7): LE has 65 entries, LO 257. As CDP
    reads it (SDP's reading is :class:`SdpLut`'s):

    ``entries`` are INT16. An input ``s`` with ``0 < s - start`` and index
    ``(s - start) >> index_select`` below the last entry interpolates between two entries with a
    16-bit fraction; at or below ``start`` it extrapolates from the first entry,
    ``entries[0] + ((s - start) * uflow_scale >> uflow_shift)``, past the table from the last one
    with ``end`` and the overflow slope (slope scale INT16, shift signed 5-bit, negative = left).
    """

    entries: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    start: int = 0
    end: int = 0
    index_select: int = 0
    uflow_scale: int = 0
    uflow_shift: int = 0
    oflow_scale: int = 0
    oflow_shift: int = 0


@dataclass
class SdpLut:
    """The SDP Y lookup table (``nvdla.md`` §5.7; cmod ``sdp_y_idx``/``sdp_y_inp``), both
    tables linearly indexed, on the 32-bit Y input ``x``; the result is 32 bits, for C.

    Per table (LE 65 entries, LO 257): ``x <= start`` underflows, ``rel = x - start``, index
    ``rel >> index_select``, an index at or past the last entry overflows; inside,
    ``round((e[i] * (2^35 - f) + e[i+1] * f) / 2^35)`` with ``f`` the index's 35-bit fraction;
    below (above) the table, ``e[0] + round((x - start) * uflow_scale >> uflow_shift)``
    (``e[last]`` and ``end``, oflow), a negative shift shifting left, saturated to 32 bits.
    Both underflow: ``uflow_lo`` picks LO; both overflow: ``oflow_lo``; one hit: the one that
    hit; else ``hybrid_lo``. ``function`` names what the tables hold (for ``inspect``).
    """

    le: LutTable = field(default_factory=LutTable)
    lo: LutTable = field(default_factory=LutTable)
    uflow_lo: bool = False
    oflow_lo: bool = False
    hybrid_lo: bool = True
    function: str = ""


@dataclass
class SdpChain:
    """The SDP path of one layer: X1 -> X2 -> Y (operand stage, then ``lut``) -> C; a None unit
    is bypassed."""

    x1: XUnit | None = None
    x2: XUnit | None = None
    y: EwUnit | None = None
    lut: SdpLut | None = None
    c: OutCvt = field(default_factory=OutCvt)


@dataclass
class QLayer:
    """Base of every layer: a name (the ONNX node it came from), its engine and tensors."""

    name: str
    inputs: list[str]
    outputs: list[str]
    engine: Engine = "dla"
    onnx_nodes: list[str] = field(default_factory=list)  # ONNX nodes fused into this layer


@dataclass
class QConv(QLayer):
    """Direct convolution (CDMA/CSC/CMAC/CACC) followed by an SDP chain, INT8 in and out
    (``precision="fp16"``: FP16 in and out, below).

    * ``weight``: INT8 ``(K, C/groups, R, S)``, symmetric per output channel.
    * ``stride`` (h, w), ``pads`` (top, left, bottom, right), ``dilation`` (h, w), ``groups``.
    * ``pad_value``: INT8 value of out-of-bounds taps (``D_ZERO_PADDING_VALUE`` low byte); 0 for
      symmetric data.
    * ``cacc_truncate``: ``CACC.D_CLIP_CFG.CLIP_TRUNCATE`` (0, as the NVDLA compiler sets). The
      accumulator is 34-bit saturating; its result is rounded by ``cacc_truncate`` and saturated
      to INT32 before X1.
    * ``sdp``: the post-processing chain; its Y operand, if any, is ``inputs[1]``.

    Fully-connected layers are convolutions whose kernel covers the whole input (``R x S = H x W``).

    FP16 (``precision="fp16"``, nv_full): ``weight`` is ``float16``, data and output are FP16
    (CDMA/CSC/CMAC/CACC and SDP in FP16 mode). The SDP chain's operands are ``float16`` values
    (bias, BatchNorm multiplier, clip bounds); shifts and truncates are 0 and the output converter
    is the identity (the hardware only narrows FP32 to FP16 there).
    """

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 1, 1), np.int8))
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    pad_value: int = 0
    cacc_truncate: int = 0
    sdp: SdpChain = field(default_factory=SdpChain)
    precision: LayerPrecision = "int8"


@dataclass
class QSdp(QLayer):
    """A standalone SDP pass reading ``inputs[0]`` (INT8, sign-extended to 32 bits) from memory.

    Used for requantizing activations, standalone ReLU/Clip and elementwise add (Y operand =
    ``inputs[1]``). ``precision="fp16"``: an FP16 cube in and out, ``float16`` operands.
    """

    sdp: SdpChain = field(default_factory=SdpChain)
    precision: LayerPrecision = "int8"


@dataclass
class QPool(QLayer):
    """PDP pooling, INT8 in and out with the same scale (PDP has no converter).

    * ``method``: ``"max"``, ``"min"`` or ``"avg"``; ``kernel`` (h, w) 1..8, ``stride`` 1..16,
      ``pads`` (top, left, bottom, right) 0..7.
    * Max/min ignore padded positions. Average sums the window with ``pad_value`` (19-bit
      ``PAD_VALUE_1X``) for each padded position (firmware programs ``PAD_VALUE_nX = n*1X``),
      then ``t = round(sum * recip_w / 2^16)``, ``out = sat8(round(t * recip_h / 2^16))``, with
      the 17-bit ``RECIP_KERNEL_WIDTH/HEIGHT``: the divisor is always ``kh * kw``.

    ``precision="fp16"``: FP16 in and out; ``recip_w``/``recip_h`` are FP17 numbers (the
    firmware's table) and ``pad_value`` is 0, as the firmware requires for FP16.
    """

    method: Literal["max", "min", "avg"] = "max"
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: int = 0
    recip_w: int = 0x10000
    recip_h: int = 0x10000
    precision: LayerPrecision = "int8"


@dataclass
class QLrn(QLayer):
    """ONNX LRN across channels on CDP (``nvdla.md`` §5.6), INT8 in and out.

    * input converter: ``x9 = sat9(round((x - in_offset) * in_scale >> in_shift))``;
    * ``s`` = sum of ``x9**2`` over the ``2 * normalz_len + 3`` channels centred on each channel
      (channels outside the cube count 0);
    * ``lut(s)`` from the LE (``le``, linear index mode here) and LO (``lo``) tables: both hit or
      a mixed miss -> ``hybrid_lo``, both underflow -> ``uflow_lo``, both overflow -> ``oflow_lo``
      (True picks LO), saturated to INT16;
    * ``y = lut * x9`` unless ``mul_bypass``;
    * output converter: ``sat8(round((y - out_offset) * out_scale >> out_shift))``.

    The hardware clamps LUT intermediates to 56 bits; the reference does not, which is exact for
    every table :func:`dlakit.lower.hwparams.lrn_params` makes (products stay below 2^40).
    """

    size: int = 5
    normalz_len: int = 1
    in_offset: int = 0
    in_scale: int = 1
    in_shift: int = 0
    le: LutTable = field(default_factory=LutTable)
    lo: LutTable = field(default_factory=LutTable)
    uflow_lo: bool = True
    oflow_lo: bool = True
    hybrid_lo: bool = True
    mul_bypass: bool = False
    out_offset: int = 0
    out_scale: int = 1
    out_shift: int = 0


@dataclass
class QConcat(QLayer):
    """Channel concatenation: a memory layout (producers write into one buffer); every input
    has the output's scale (the lowering inserts requantizing :class:`QSdp` layers otherwise)."""

    axis: int = 1


@dataclass
class QView(QLayer):
    """Channels ``[start, start + channels)`` of ``inputs[0]`` (ONNX Split or Slice along the
    channel axis): a surface at a channel offset where it starts on a memory atom, else a copy;
    the output has the input's scale."""

    start: int = 0
    channels: int = 0


@dataclass
class QContract(QLayer):
    """RUBIK contract (deconvolution's de-interleave, ``nvdla.md`` §1): ``inputs[0]`` holds
    ``sy * sx`` phases of ``padded`` channels each (phase ``y * sx + x``, channels ``channels``
    up to ``padded`` zero), ``H x W``; the output is ``channels x (sy H) x (sx W)``, phase
    ``(y, x)`` at rows ``h * sy + y``, columns ``w * sx + x``. INT8, same scale."""

    stride: tuple[int, int] = (1, 1)
    channels: int = 0
    padded: int = 0


@dataclass
class QReshape(QLayer):
    """Flatten/Reshape/Squeeze: a layout no-op; ``shape`` is the ONNX output shape at batch 1."""

    shape: tuple[int, ...] = ()


@dataclass
class QQuantize(QLayer):
    """Float -> INT8 at a DLA segment's input: ``sat8(round_half_away(x / scale))``.

    Saturation is to the full INT8 range [-128, 127], as the SDP output converter does.
    """

    scale: float = 1.0


@dataclass
class QToFp16(QLayer):
    """Float -> FP16 at a DLA FP16 segment's input, on the fallback: round to nearest even (as
    IEEE ``float16``), the value an FP16 surface holds."""


@dataclass
class QDequantize(QLayer):
    """INT8 -> float at a DLA segment's output: ``x * scale`` (exact in FP32)."""

    scale: float = 1.0


@dataclass
class QFloat(QLayer):
    """One ONNX node run in floating point: a GPU/host fallback (``precision="fp32"``) or a DLA
    FP16 layer (``precision="fp16"``: inputs, weights and output rounded to FP16; the reference
    computes in FP32 between those roundings, so it is not a bit-exact model of the FP16 path)."""

    node: onnx.NodeProto = field(default_factory=onnx.NodeProto)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    precision: Precision = "fp32"
    dtypes: dict[str, int] = field(default_factory=dict)  # ONNX element types of the node's I/O
    opset: int = 17  # the model's default-domain opset


@dataclass
class QGraph:
    """Layers in execution order plus every tensor they name.

    ``inputs``/``outputs`` are the model's float tensors; ``quant_of`` maps an ONNX tensor name
    to the INT8 tensor holding its quantized value (for per-layer comparisons); ``verdicts`` are
    the support verdicts the lowering followed, per ONNX node (the reason of every node that is
    not DLA INT8).
    """

    model_name: str
    target: str
    layers: list[QLayer]
    tensors: dict[str, QTensor]
    inputs: list[str]
    outputs: list[str]
    quant_of: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, NodeVerdict] = field(default_factory=dict)

    def readers(self) -> dict[str, list[int]]:
        """Tensor name -> indices of the layers that read it, in execution order."""
        found: dict[str, list[int]] = {}
        for index, layer in enumerate(self.layers):
            for name in layer.inputs:
                found.setdefault(name, []).append(index)
        return found

    def writers(self) -> dict[str, int]:
        """Tensor name -> index of the layer that writes it."""
        return {name: index for index, layer in enumerate(self.layers) for name in layer.outputs}

    def summary(self) -> list[tuple[str, str, str, str]]:
        """(layer, kind, engine/precision, output) rows for a table."""
        rows = []
        for layer in self.layers:
            kind = type(layer).__name__
            prec = getattr(layer, "precision", "int8")
            rows.append((layer.name, kind, f"{layer.engine}/{prec}", ",".join(layer.outputs)))
        return rows

    def count(self) -> dict[str, int]:
        """Number of layers per (engine, precision): how much of the model is DLA INT8."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            if isinstance(layer, QQuantize | QDequantize | QReshape | QToFp16):
                continue
            prec = getattr(layer, "precision", "int8")
            key = f"{layer.engine}-{prec}"
            counts[key] = counts.get(key, 0) + 1
        return counts
