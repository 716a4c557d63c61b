"""The integer reference: executes a :class:`~dlakit.lower.qgraph.QGraph` bit for bit.

Every INT8 layer follows the RTL arithmetic of ``nvdla.md`` §5 (batched torch int64, no
per-element Python):

* every right shift rounds half away from zero, then saturates; a shift >= the input width
  gives 0 (§5.0);
* CACC: 34-bit saturating accumulation, ``CLIP_TRUNCATE`` rounding with the RTL's 16 kept
  fraction bits, saturation to INT32 (§5.3);
* SDP X1/X2: ALU (33-bit) -> MUL (49-bit) -> truncate (also when MUL is bypassed) -> ReLU; Y
  operand converter and ALU or MUL, then the Y lookup table (§5.7); C converter to INT17 then
  INT8 (§5.4);
* PDP: max/min over real elements; average with pad values and two rounded reciprocal stages
  (§5.5).

Convolution sums are computed with float GEMMs over integers, which is exact because every
partial sum is an integer below 2^24 (float32) or 2^53 (float64): the code picks the type from
a per-layer bound and refuses layers whose accumulator could exceed 34 bits (where the RTL's
per-step saturation would make the result depend on the summation order). The executor's
compiled path sums pointwise and depthwise layers in int32 instead (INT8 matrix product,
compiled depthwise pass), exact where the layer's bound is below 2^31; a 3x3 depthwise layer's
taps go through int16 pairs first where no pair's sum can leave int16
(:func:`dlakit.lower.intref_kernels.pairs`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx

from dlakit.extras import missing_extra

try:
    import torch
    import torch.nn.functional as F
except ModuleNotFoundError as exc:
    raise missing_extra(exc, "the integer reference of the NVDLA datapath") from None

from dlakit.errors import DlakitError
from dlakit.lower.qgraph import (
    EwUnit,
    LutTable,
    OutCvt,
    QConcat,
    QContract,
    QConv,
    QDequantize,
    QFloat,
    QGraph,
    QLayer,
    QLrn,
    QPool,
    QQuantize,
    QReshape,
    QSdp,
    QView,
    SdpChain,
    SdpLut,
    XUnit,
)
from dlakit.system import int8_matmul_exact

CACC_WIDTH = 34
# Bytes of a pointwise layer's int32 sums per chunk: a quarter of the 2 MiB L2 cache per core
# of the machine measured, leaving room for the chunk's INT8 input and output.
CHUNK_BYTES = 1 << 19
CACC_FRACTION_BITS = 16  # RTL keeps 16 fraction bits when truncating (nvdla.md §5.3)

# ---------------------------------------------------------------- integer primitives (§5.0)


def saturate(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Clamp to the signed range of ``bits``."""
    return x.clamp(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def shift_right_round(x: torch.Tensor, shift: int, in_bits: int, out_bits: int) -> torch.Tensor:
    """RTL ``shiftrightsu``: round half away from zero, saturate; ``shift >= in_bits`` gives 0."""
    if shift == 0:
        return saturate(x, out_bits)
    if shift >= in_bits:
        return torch.zeros_like(x)
    # floor((x + 2^(s-1) - [x < 0]) / 2^s) is round-half-away-from-zero of x / 2^s.
    rounded = (x + ((1 << (shift - 1)) - (x < 0).to(x.dtype))) >> shift
    return saturate(rounded, out_bits)


def shift_left_saturate(x: torch.Tensor, shift: int, out_bits: int) -> torch.Tensor:
    """RTL ``shiftleftsu``: ``sat(x << shift)`` (computed without int64 overflow)."""
    limit = 1 << (out_bits - 1)
    if shift >= out_bits:
        return torch.where(x > 0, limit - 1, torch.where(x < 0, -limit, 0)).to(x.dtype)
    return saturate(x.clamp(-limit, limit) << shift, out_bits)


def cacc_output(acc: torch.Tensor, truncate: int) -> torch.Tensor:
    """CACC INT8 delivery: saturate to 34 bits, round by ``truncate`` the RTL way, sat32."""
    acc = saturate(acc, CACC_WIDTH)
    if truncate == 0:
        return saturate(acc, 32)
    # {acc34, 16'b0} >>> truncate: bits beyond the 16 kept fraction bits are lost (RTL quirk).
    v = (acc << CACC_FRACTION_BITS) >> truncate
    data = v >> CACC_FRACTION_BITS
    guide = (v >> (CACC_FRACTION_BITS - 1)) & 1
    sticky = (v & ((1 << (CACC_FRACTION_BITS - 1)) - 1)) != 0
    up = guide.bool() & ((acc >= 0) | sticky)
    return saturate(data + up.to(acc.dtype), 32)


# ---------------------------------------------------------------- SDP (§5.4)


def _per_channel(values: np.ndarray, ndim: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(values, dtype=np.int64))
    return t.reshape((1, -1) + (1,) * (ndim - 2)) if ndim >= 2 else t


def x_unit(x: torch.Tensor, unit: XUnit) -> torch.Tensor:
    """SDP X1/X2 on a 32-bit input (channel axis 1): ALU -> MUL -> TRT -> ReLU."""
    if unit.alu is not None:
        if unit.alu_operand is None:
            raise DlakitError("SDP X ALU enabled without an operand")
        op = shift_left_saturate(_per_channel(unit.alu_operand, x.ndim), unit.alu_shift, 32)
        if unit.alu == "sum":
            x = x + op  # 33 bits, not saturated
        elif unit.alu == "max":
            x = torch.maximum(x, op)
        else:
            x = torch.minimum(x, op)
    if unit.mul is not None:
        product = x * _per_channel(unit.mul, x.ndim)  # 49 bits
        y = shift_right_round(product, unit.truncate, 49, 32)
        if unit.prelu:
            y = torch.where(x >= 0, saturate(x, 32), y)  # PReLU: non-negatives skip MUL and TRT
    else:
        # The truncate applies in bypass too, to the ALU result sign-extended to 49 bits (RTL
        # NV_NVDLA_SDP_HLS_X_int_mul/_trt): a shift of 33 still rounds -2^32 to -1.
        y = shift_right_round(x, unit.truncate, 49, 32)
    if unit.relu:
        y = y.clamp_min(0)
    return y


def y_unit(x: torch.Tensor, unit: EwUnit, operand: torch.Tensor) -> torch.Tensor:
    """SDP Y as an elementwise ALU or MUL with an INT8 tensor through its operand converter."""
    op = shift_right_round(
        (operand.to(torch.int64) - unit.cvt_offset) * unit.cvt_scale, unit.cvt_truncate, 49, 32
    )
    if unit.stage == "mul":
        return shift_right_round(x * op, unit.truncate, 64, 32)  # 64-bit product
    if unit.alu == "sum":
        return saturate(x + op, 32)
    if unit.alu == "max":
        return torch.maximum(x, op)
    return torch.minimum(x, op)


def c_unit(x: torch.Tensor, cvt: OutCvt) -> torch.Tensor:
    """SDP output converter: INT17, then INT8 (int64 values) or FP16 (float16 tensor)."""
    t17 = shift_right_round((x - cvt.offset) * cvt.scale, cvt.shift, 49, 17)
    if cvt.precision == "fp16":
        # INT17 -> FP16 rounds to nearest even (cmod FpIntToFloat); an INT17 is exact in FP32.
        return t17.to(torch.float32).to(torch.float16)
    return saturate(t17, 8)


def sdp(x: torch.Tensor, chain: SdpChain, ew: torch.Tensor | None = None) -> torch.Tensor:
    """The whole SDP chain on a 32-bit input; returns INT8 values (int64 dtype), or FP16 values
    when the output converter writes FP16."""
    if chain.x1 is not None:
        x = x_unit(x, chain.x1)
    if chain.x2 is not None:
        x = x_unit(x, chain.x2)
    if chain.y is not None:
        if ew is None:
            raise DlakitError("SDP Y unit has no operand tensor")
        x = y_unit(x, chain.y, ew.reshape(x.shape))
    if chain.lut is not None:
        x = sdp_lut(x, chain.lut)
    return c_unit(x, chain.c)


SDP_LUT_FRACTION = 35  # bits of the index fraction that interpolates (cmod sdp_y_idx)


def _sdp_table(x: torch.Tensor, t: LutTable) -> tuple[torch.Tensor, ...]:
    """Value, hit, underflow, overflow of one linearly indexed SDP table (32-bit value)."""
    entries = torch.as_tensor(np.asarray(t.entries, dtype=np.int64))
    last = entries.numel() - 1
    under = x <= t.start
    rel = (x - t.start).clamp(min=0)
    k = t.index_select
    index = rel << -k if k < 0 else rel >> k
    over = ~under & (index >= last)
    if k <= 0:
        frac = torch.zeros_like(rel)
    else:
        frac = rel & ((1 << k) - 1)
        frac = frac >> (k - SDP_LUT_FRACTION) if k > SDP_LUT_FRACTION else (
            frac << (SDP_LUT_FRACTION - k)
        )  # fmt: skip
    i = index.clamp(0, last)
    y0, y1 = entries[i], entries[(i + 1).clamp(max=last)]
    inside = _round_shift(y0 * ((1 << SDP_LUT_FRACTION) - frac) + y1 * frac, SDP_LUT_FRACTION)
    below = entries[0] + _slope(x - t.start, t.uflow_scale, t.uflow_shift)
    above = entries[last] + _slope(x - t.end, t.oflow_scale, t.oflow_shift)
    value = torch.where(under, below, torch.where(over, above, inside))
    return saturate(value, 32), ~(under | over), under, over


def _slope(d: torch.Tensor, scale: int, shift: int) -> torch.Tensor:
    """``sat32(round(d * scale / 2^shift))``; a negative shift is a saturating left shift."""
    v = d * scale
    if shift <= 0:
        return shift_left_saturate(v, -shift, 32)
    return saturate(_round_shift(v, shift), 32)


def sdp_lut(x: torch.Tensor, lut: SdpLut) -> torch.Tensor:
    """The SDP Y lookup table on 32-bit values (``SdpLut``): 32-bit values out."""
    le, le_hit, le_u, le_o = _sdp_table(x, lut.le)
    lo, lo_hit, lo_u, lo_o = _sdp_table(x, lut.lo)
    use_lo = torch.where(le_hit == lo_hit, lut.hybrid_lo, lo_hit)
    use_lo = torch.where(le_o & lo_o, lut.oflow_lo, use_lo)
    use_lo = torch.where(le_u & lo_u, lut.uflow_lo, use_lo)
    return torch.where(use_lo, lo, le)


# ---------------------------------------------------------------- conv (§5.1-5.3) and PDP (§5.5)


def _accumulator_bounds(layer: QConv) -> np.ndarray:
    """Per output channel, the largest magnitude of its sums (INT8 inputs and pad value)."""
    w = np.asarray(layer.weight, dtype=np.int64)
    return 128 * np.abs(w).reshape(w.shape[0], -1).sum(axis=1)


def conv_weights(layer: QConv) -> torch.Tensor:
    """The layer's weights as the float type whose sums are exact for them: float32 when every
    partial sum stays below 2^24, else float64; refused when the accumulator could reach 34 bits."""
    w = np.asarray(layer.weight, dtype=np.int64)
    bound = int(_accumulator_bounds(layer).max(initial=0))
    if bound >= 1 << (CACC_WIDTH - 1):
        raise DlakitError(
            f"layer {layer.name}: accumulator bound {bound} reaches 34 bits; the RTL result "
            "would depend on the summation order"
        )
    dtype = torch.float32 if bound < 1 << 24 else torch.float64
    return torch.as_tensor(w).to(dtype)


def _conv_input(
    x: torch.Tensor, layer: QConv, weights: torch.Tensor
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``x`` as ``weights``' float type, padded with the layer's pad value where conv2d's own
    zero padding does not do it, and the padding left to conv2d."""
    top, left, bottom, right = layer.pads
    xf = x if x.dtype == weights.dtype else x.to(weights.dtype)
    if (top, left) == (bottom, right) and layer.pad_value == 0:
        return xf, (top, left)  # conv2d pads with zeros itself: no padded copy
    if any(layer.pads):
        xf = F.pad(xf, (left, right, top, bottom), value=float(layer.pad_value))
    return xf, (0, 0)


def conv_sums(x: torch.Tensor, layer: QConv, weights: torch.Tensor) -> torch.Tensor:
    """Exact convolution sums of INT8 values ``x`` as floats, with the layer's pad value in
    padded taps (direct or GEMM algorithms only: NNPACK's Winograd would round)."""
    xf, padding = _conv_input(x, layer, weights)
    with torch.backends.nnpack.flags(enabled=False):
        return F.conv2d(
            xf,
            weights,
            stride=layer.stride,
            padding=padding,
            dilation=layer.dilation,
            groups=layer.groups,
        )


def conv_sums_into(
    x: torch.Tensor, layer: QConv, weights: torch.Tensor, zeros: Callable[[tuple], torch.Tensor]
) -> torch.Tensor:
    """``conv_sums`` (float32 weights), added by oneDNN's direct convolution to the zeros of
    ``zeros(shape)`` (a channels-last [B, K, H, W] view of a buffer every layer reuses): a
    fresh output costs a page fault per 4 KiB, a third of a large layer's time. Where torch
    has no oneDNN, ``conv_sums``."""
    binary = getattr(torch.ops.mkldnn, "_convolution_pointwise_", None)
    if binary is None or weights.dtype != torch.float32:
        return conv_sums(x, layer, weights)
    xf, padding = _conv_input(x, layer, weights)
    (kh, kw), (sh, sw), (dh, dw) = weights.shape[2:], layer.stride, layer.dilation
    height = (xf.shape[2] + 2 * padding[0] - dh * (kh - 1) - 1) // sh + 1
    width = (xf.shape[3] + 2 * padding[1] - dw * (kw - 1) - 1) // sw + 1
    out = zeros((xf.shape[0], weights.shape[0], height, width))
    # sums + 0 is the sum: every partial sum is an integer below 2^24 (conv_weights).
    geometry = (list(padding), list(layer.stride), list(layer.dilation), layer.groups)
    return binary.binary(out, xf, weights, None, *geometry, "add", 1.0, None, [], None)


def pointwise(layer: QConv) -> bool:
    """Whether the layer is a plain matrix product of its channels-last pixels: 1x1 kernel,
    stride 1, no padding, one group."""
    weight = np.asarray(layer.weight)
    plain = tuple(layer.stride) == (1, 1) and not any(layer.pads) and layer.groups == 1
    return plain and weight.shape[2:] == (1, 1)


def matmul_weights(layer: QConv) -> torch.Tensor | None:
    """A pointwise layer's INT8 weights as the [C, K] matrix ``torch._int_mm`` multiplies
    pixels by, or None where its sums need not be exact in int32 (bound >= 2^31) or this
    torch's INT8 matrix product is not exact (:func:`dlakit.system.int8_matmul_exact`)."""
    if layer.precision != "int8" or not pointwise(layer):
        return None
    if int(_accumulator_bounds(layer).max(initial=0)) >= 1 << 31:
        return None
    if not int8_matmul_exact():
        return None
    weight = torch.as_tensor(np.asarray(layer.weight, dtype=np.int8))
    return weight.reshape(weight.shape[0], -1).t().contiguous()


def depthwise_weights(layer: QConv) -> np.ndarray | None:
    """A depthwise layer's (one filter per channel) INT8 weights as int32 [R, S, K], for the
    compiled pass that sums them in int32; None for other layers and where a sum could reach
    2^31."""
    weight = np.asarray(layer.weight)
    channels = weight.shape[0]
    depthwise = layer.groups == channels and weight.shape[1] == 1 and channels > 1
    if layer.precision != "int8" or not depthwise:
        return None
    if int(_accumulator_bounds(layer).max(initial=0)) >= 1 << 31:
        return None
    return np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0), dtype=np.int32)


def conv_accumulate(x: torch.Tensor, layer: QConv) -> torch.Tensor:
    """Exact INT8 convolution sums (int64), with the layer's pad value in padded taps."""
    return conv_sums(x, layer, conv_weights(layer)).to(torch.int64)


def pool(x: torch.Tensor, layer: QPool) -> torch.Tensor:
    """PDP pooling on INT8 values (int64 in, int64 out)."""
    top, left, bottom, right = layer.pads
    xf = x.to(torch.float32)  # INT8 values and window sums (<= 64 * 2^18) are exact in FP32
    if layer.method in ("max", "min"):
        sign = 1.0 if layer.method == "max" else -1.0
        padded = F.pad(sign * xf, (left, right, top, bottom), value=-float("inf"))
        out = sign * F.max_pool2d(padded, layer.kernel, layer.stride)
        return out.to(torch.int64)
    padded = F.pad(xf, (left, right, top, bottom), value=0.0)
    sums = F.avg_pool2d(padded, layer.kernel, layer.stride, divisor_override=1)
    if any(layer.pads) and layer.pad_value:
        real = F.pad(torch.ones_like(xf[:1, :1]), (left, right, top, bottom), value=0.0)
        count = F.avg_pool2d(real, layer.kernel, layer.stride, divisor_override=1)
        sums = sums + (layer.kernel[0] * layer.kernel[1] - count) * layer.pad_value
    total = sums.round().to(torch.int64)
    t = shift_right_round(total * layer.recip_w, 16, 48, 48)
    return saturate(shift_right_round(t * layer.recip_h, 16, 48, 48), 8)


def _round_shift(v: torch.Tensor, shift: int) -> torch.Tensor:
    """Round half away from zero of ``v / 2**shift``; a negative ``shift`` shifts left."""
    if shift <= 0:
        return v << -shift
    mag = (v.abs() + (1 << (shift - 1))) >> shift
    return torch.where(v < 0, -mag, mag)


def lut_linear(s: torch.Tensor, t: LutTable) -> tuple[torch.Tensor, ...]:
    """Value, hit, underflow, overflow of a linearly indexed LUT (``nvdla.md`` §5.7)."""
    entries = torch.as_tensor(np.asarray(t.entries, dtype=np.int64))
    last = entries.numel() - 1
    rel = s - t.start
    k = t.index_select
    index = rel << -k if k < 0 else rel >> k
    under = rel <= 0
    over = ~under & (index >= last)
    hit = ~under & ~over
    i = index.clamp(0, last - 1)
    if k <= 0:
        frac = torch.zeros_like(rel)
    else:
        frac = rel & ((1 << k) - 1)
        frac = frac >> (k - 16) if k > 16 else frac << (16 - k)  # a 16-bit fraction
    y0, y1 = entries[i], entries[i + 1]
    inside = y0 + _round_shift((y1 - y0) * frac, 16)
    # The edge entry of an extrapolation is read as an unsigned 16-bit number.
    first, final = int(entries[0]) & 0xFFFF, int(entries[last]) & 0xFFFF
    below = first + _round_shift((s - t.start) * t.uflow_scale, t.uflow_shift)
    above = final + _round_shift((s - t.end) * t.oflow_scale, t.oflow_shift)
    value = torch.where(under, below, torch.where(over, above, inside))
    return value, hit, under, over


def lrn(x: torch.Tensor, layer: QLrn) -> torch.Tensor:
    """CDP local response normalisation on INT8 values [N, C, H, W] (int64 in, int64 out)."""
    x9 = shift_right_round((x - layer.in_offset) * layer.in_scale, layer.in_shift, 25, 9)
    half = layer.normalz_len + 1
    sq = F.pad(x9 * x9, (0, 0, 0, 0, half, half))
    s = sum(sq[:, j : j + x.shape[1]] for j in range(2 * half + 1))
    le, le_hit, le_u, le_o = lut_linear(s, layer.le)
    lo, lo_hit, lo_u, lo_o = lut_linear(s, layer.lo)
    hybrid = lo if layer.hybrid_lo else le
    value = torch.where(le_hit != lo_hit, torch.where(le_hit, le, lo), hybrid)
    value = torch.where(le_o & lo_o, lo if layer.oflow_lo else le, value)
    value = torch.where(le_u & lo_u, lo if layer.uflow_lo else le, value)
    y = saturate(value, 16)
    if not layer.mul_bypass:
        y = y * x9
    return shift_right_round((y - layer.out_offset) * layer.out_scale, layer.out_shift, 42, 8)


# ---------------------------------------------------------------- the executor


def quantize(x: torch.Tensor, scale: float, name: str) -> torch.Tensor:
    """Float -> INT8: round half away from zero of ``x / scale`` (float64), saturate to INT8."""
    if not torch.isfinite(x).all():
        raise DlakitError(f"tensor '{name}' holds NaN or infinite values; cannot quantize it")
    v = x.to(torch.float64) / scale
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)
    return q.clamp(-128, 127).to(torch.int64)


def dequantize(q: torch.Tensor, scale: float) -> torch.Tensor:
    return q.to(torch.float32) * np.float32(scale)


# Bytes a batch of one needs per element of the model's largest tensor: the INT8 tensors kept
# alive, the float convolution input and sums, and the int64 temporaries of the definition.
_BYTES_PER_ELEMENT = 32
DEFAULT_BATCH = 64


def default_batch(graph: QGraph) -> int:
    """Inputs per batch: ``DEFAULT_BATCH``, fewer when the memory budget asks for it."""
    from dlakit.system import memory_budget

    largest = max((int(np.prod(t.shape[1:])) for t in graph.tensors.values()), default=1)
    fit = memory_budget() // max(largest * _BYTES_PER_ELEMENT, 1)
    return int(max(1, min(DEFAULT_BATCH, fit)))


class IntReference:
    """Runs a QGraph on a batch; ``run`` returns the graph outputs as float arrays.

    ``keep`` names tensors to return as well (INT8 tensors are returned dequantized), for
    per-layer comparisons. With ``fused`` (default where numba is installed) each convolution's
    and SDP pass's CACC + SDP chain runs as one compiled pass
    (:mod:`dlakit.lower.intref_kernels`) on channels-last tensors, except chains with a lookup
    table or the Y multiplier (:func:`_fusable`), which it does not cover; the whole-tensor
    functions above are the definition it is tested against, and the integers are the same.
    """

    def __init__(self, graph: QGraph, fused: bool | None = None) -> None:
        self.graph = graph
        self.fused = _kernels() is not None if fused is None else fused
        self._weights: dict[str, torch.Tensor] = {}
        self._packed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._sessions: dict[str, object] = {}
        self._scratch: dict[torch.dtype, torch.Tensor] = {}
        # (tensor, its float copy in the shared buffer) that the previous chain wrote.
        self._wide: tuple[str, torch.Tensor] | None = None
        self._sums: torch.Tensor | None = None  # zeros but while a layer's sums are in it
        # Per thread, int32 sums of a chunk of a pointwise layer's pixels, and the threads.
        self._chunk_sums: list[torch.Tensor] = []
        self._threads: tuple[int, ThreadPoolExecutor] | None = None
        self._matrices: dict[str, torch.Tensor | None] = {}
        # INT8 buffers of the compiled passes' outputs, by storage address, and those free:
        # a fresh multi-MiB output per layer costs a page fault per 4 KiB (and, under a fixed
        # mmap threshold, an mmap and munmap), as long as the pass that fills it.
        self._outputs: dict[int, torch.Tensor] = {}
        self._free: list[torch.Tensor] = []
        self._filters: dict[str, np.ndarray | None] = {}
        self._pairs: dict[str, np.ndarray] = {}  # the depthwise layers' int16 taps (``pairs``)
        self._copies = self._copying_chains() if self.fused else set()
        self._handlers: dict[type, Callable[[QLayer, dict[str, torch.Tensor]], None]] = {
            QConv: self._conv,
            QSdp: self._sdp,
            QPool: self._pool,
            QLrn: self._lrn,
            QConcat: self._concat,
            QView: self._view,
            QContract: self._contract,
            QReshape: self._reshape,
            QQuantize: self._quantize,
            QDequantize: self._dequantize,
            QFloat: self._float,
        }

    def run(
        self, feeds: dict[str, np.ndarray], keep: set[str] | None = None
    ) -> dict[str, np.ndarray]:
        keep = set(keep or ())
        missing = [name for name in self.graph.inputs if name not in feeds]
        if missing:
            raise DlakitError(f"no data for model input(s): {', '.join(missing)}")
        values: dict[str, torch.Tensor] = {
            name: torch.as_tensor(np.ascontiguousarray(feeds[name], dtype=np.float32))
            for name in self.graph.inputs
        }
        last_use = self._last_use(keep)
        self._wide = None
        kept: dict[str, np.ndarray] = {}
        # What a run returns are float copies: every output buffer is free when one starts.
        self._free = list(self._outputs.values())
        # Tensors (views included) alive per output buffer: at 0 the buffer is free again.
        users: dict[int, int] = {}
        for index, layer in enumerate(self.graph.layers):
            self._handlers[type(layer)](layer, values)
            for name in layer.outputs:
                address = values[name].untyped_storage().data_ptr()
                if address in self._outputs:
                    users[address] = users.get(address, 0) + 1
                if name in keep:
                    kept[name] = self._as_float(name, values[name])
            for name in [n for n, last in last_use.items() if last == index]:
                value = values.pop(name, None)
                address = -1 if value is None else value.untyped_storage().data_ptr()
                if address in users:
                    users[address] -= 1
                    if not users[address]:
                        del users[address]
                        self._free.append(self._outputs[address])
        for name in self.graph.outputs:
            kept[name] = self._as_float(name, values[name])
        return kept

    def _output(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An INT8 [B, K, H, W] channels-last tensor in the smallest free output buffer that
        holds it (a new one where none does); ``run`` frees it after its last use."""
        batch, channels, height, width = shape
        numel = batch * channels * height * width
        fits = [i for i, b in enumerate(self._free) if b.numel() >= numel]
        if fits:
            buffer = self._free.pop(min(fits, key=lambda i: self._free[i].numel()))
        else:
            buffer = torch.empty(numel, dtype=torch.int8)
            self._outputs[buffer.untyped_storage().data_ptr()] = buffer
        return buffer[:numel].view(batch, height, width, channels).permute(0, 3, 1, 2)

    def _copying_chains(self) -> set[str]:
        """Layers whose compiled chain (or quantize) also writes its INT8 result as float32 into
        the shared buffer: those whose 4-D output the next layer convolves with float32 sums.
        That saves the next convolution a pass that casts its input."""
        names = set()
        for layer, consumer in zip(self.graph.layers, self.graph.layers[1:], strict=False):
            quantize = isinstance(layer, QQuantize)  # a model's input, before its first conv
            if not quantize and (not isinstance(layer, QConv | QSdp) or not _fusable(layer.sdp)):
                continue
            if len(self.graph.tensors[layer.outputs[0]].shape) != 4:
                continue
            if not isinstance(consumer, QConv) or not _fusable(consumer.sdp):
                continue
            float32 = self._conv_weights(consumer).dtype == torch.float32
            # a matmul and the depthwise pass read INT8
            int8 = self._matrix(consumer) is not None or self._depthwise(consumer) is not None
            float32 = float32 and not int8
            if consumer.inputs[0] == layer.outputs[0] and float32:
                names.add(layer.name)
        return names

    def _last_use(self, keep: set[str]) -> dict[str, int]:
        last: dict[str, int] = {}
        for index, layer in enumerate(self.graph.layers):
            for name in layer.inputs:
                last[name] = index
        for name in [*self.graph.outputs, *keep]:
            last.pop(name, None)
        return last

    def _as_float(self, name: str, value: torch.Tensor) -> np.ndarray:
        tensor = self.graph.tensors[name]
        if tensor.precision == "int8" or tensor.scale is not None:  # INT8, or FP16 of an INT17
            return np.ascontiguousarray(dequantize(value, tensor.scale or 1.0).numpy())
        return np.ascontiguousarray(value.to(torch.float32).numpy())

    def _shape(self, name: str, batch: int) -> tuple[int, ...]:
        return (batch, *self.graph.tensors[name].shape[1:])

    def _conv(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QConv)
        x = values[layer.inputs[0]]
        batch = x.shape[0]
        if x.ndim == 2:
            x = x.reshape(batch, -1, 1, 1)
        ew = values[layer.inputs[1]] if layer.sdp.y is not None else None
        matrix = self._matrix(layer) if self.fused and _fusable(layer.sdp) else None
        depthwise = self._depthwise(layer) if self.fused and _fusable(layer.sdp) else None
        if depthwise is not None and x.dtype == torch.int8:
            self._wide = None
            out = self._depthwise_chain(layer, x, depthwise, ew)
        elif matrix is not None and x.dtype == torch.int8:
            self._wide = None
            out = self._matmul_chain(layer, x, matrix, ew)
        elif self.fused and _fusable(layer.sdp):
            weights = self._conv_weights(layer)
            wide, self._wide = self._wide, None
            if wide is not None and wide[0] == layer.inputs[0]:
                x = wide[1]
            else:
                x = self._widened(x.contiguous(memory_format=torch.channels_last), weights.dtype)
            acc = conv_sums_into(x, layer, weights, self._zeros)
            out = self._fused_chain(layer, acc, ew, layer.cacc_truncate)
        elif self.fused and x.dtype == torch.int8 and self._matrix(layer) is not None:
            # A chain the compiled pass does not cover (a classifier's FP16 output): the INT8
            # matrix product's sums (exact, as in _matmul_chain), then the definition's SDP.
            # The float convolution of the 32 x 1280 x 1000 classifier took 5 times as long.
            pixels = torch._int_mm(_pixels(x), self._matrix(layer))
            sums = pixels.view(batch, x.shape[2], x.shape[3], -1).permute(0, 3, 1, 2)
            out = sdp(cacc_output(sums.to(torch.int64), layer.cacc_truncate), layer.sdp, ew)
        else:
            # conv_accumulate with the weights cast once
            sums = conv_sums(x.to(torch.int64), layer, self._conv_weights(layer))
            out = sdp(cacc_output(sums.to(torch.int64), layer.cacc_truncate), layer.sdp, ew)
        values[layer.outputs[0]] = _stored(out.reshape(self._shape(layer.outputs[0], batch)))

    def _conv_weights(self, layer: QConv) -> torch.Tensor:
        weights = self._weights.get(layer.name)
        if weights is None:
            weights = conv_weights(layer).contiguous(memory_format=torch.channels_last)
            self._weights[layer.name] = weights
        return weights

    def _matrix(self, layer: QConv) -> torch.Tensor | None:
        if layer.name not in self._matrices:
            self._matrices[layer.name] = matmul_weights(layer)
        return self._matrices[layer.name]

    def _depthwise(self, layer: QConv) -> np.ndarray | None:
        if layer.name not in self._filters:
            self._filters[layer.name] = depthwise_weights(layer)
        return self._filters[layer.name]

    def _depthwise_chain(
        self, layer: QConv, x: torch.Tensor, weight: np.ndarray, ew: torch.Tensor | None
    ) -> torch.Tensor:
        """INT8 [B, K, H', W'] (channels last) of a depthwise layer and its chain, its sums
        computed in the compiled pass from the INT8 input (no float copy, no sums in memory)."""
        kernels = _kernels()
        batch, channels, height, width = x.shape
        top, left, bottom, right = layer.pads
        (taps_h, taps_w, _), (sh, sw), (dh, dw) = weight.shape, layer.stride, layer.dilation
        out_h = (height + top + bottom - dh * (taps_h - 1) - 1) // sh + 1
        out_w = (width + left + right - dw * (taps_w - 1) - 1) // sw + 1
        geometry = np.array([sh, sw, dh, dw, top, left, layer.pad_value, out_h, out_w], np.int64)
        packed = self._packed.get(layer.name)
        if packed is None:
            packed = kernels.pack(layer.sdp, channels, layer.cacc_truncate,
                                  _accumulator_bounds(layer))  # fmt: skip
            self._packed[layer.name] = packed
        paired = self._pairs.get(layer.name)
        if paired is None:
            paired = self._pairs[layer.name] = kernels.pairs(weight, layer.pad_value)
        shape = (batch, channels, out_h, out_w)
        out = self._output(shape)
        operand, wide = self._chain_operands(layer, shape, ew)
        nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).numpy()
        flat = None if wide is None else wide.view(-1, channels).numpy()
        kernels.depthwise_chain(nhwc, weight, geometry, _pixels(out).numpy(), *packed, operand,
                                flat, paired)  # fmt: skip
        if wide is not None:
            self._wide = (layer.outputs[0], wide.permute(0, 3, 1, 2))
        return out

    def _matmul_chain(
        self, layer: QConv, x: torch.Tensor, matrix: torch.Tensor, ew: torch.Tensor | None
    ) -> torch.Tensor:
        """INT8 [B, K, H, W] (channels last) of a pointwise layer of INT8 ``x`` and its chain:
        ``torch._int_mm`` (INT8 products summed in int32, exact below the layer's bound
        < 2^31) on chunks of pixels whose int32 sums stay in the L2 cache, each followed by
        the compiled chain; one chunk after the other in each of ``torch.get_num_threads()``
        Python threads, torch at one thread meanwhile. Sums through memory took twice as
        long per element (measured), and no float copy of the input is made."""
        kernels = _kernels()
        batch, _, height, width = x.shape
        channels = matrix.shape[1]
        pixels = _pixels(x)
        out = self._output((batch, channels, height, width))
        flat = _pixels(out).numpy()
        packed = self._pack(layer, channels, layer.cacc_truncate)
        operand, wide = self._chain_operands(layer, tuple(out.shape), ew)
        wide_flat = None if wide is None else wide.view(-1, channels).numpy()
        rows = pixels.shape[0]
        per = max(8, CHUNK_BYTES // (4 * channels) // 8 * 8)
        chunks = (rows + per - 1) // per
        threads = torch.get_num_threads()
        workers = max(1, min(threads, chunks))
        while len(self._chunk_sums) < workers:
            self._chunk_sums.append(torch.empty(0, dtype=torch.int32))
        for w in range(workers):
            if self._chunk_sums[w].numel() < per * channels:
                self._chunk_sums[w] = torch.empty(per * channels, dtype=torch.int32)
        order = itertools.count()

        def work(worker: int) -> None:
            sums = self._chunk_sums[worker][: per * channels].view(per, channels)
            while (chunk := next(order)) < chunks:
                r0, r1 = chunk * per, min(rows, chunk * per + per)
                part = sums[: r1 - r0]
                torch._int_mm(pixels[r0:r1], matrix, out=part)
                kernels.chain(part.numpy(), flat[r0:r1], *packed,
                              None if operand is None else operand[r0:r1],
                              None if wide_flat is None else wide_flat[r0:r1], False,
                              False)  # fmt: skip

        torch.set_num_threads(1)
        try:
            helpers = [self._helper_threads(workers).submit(work, w) for w in range(1, workers)]
            work(0)
            for helper in helpers:
                helper.result()
        finally:
            torch.set_num_threads(threads)
        if wide is not None:
            self._wide = (layer.outputs[0], wide.permute(0, 3, 1, 2))
        return out

    def _chain_operands(
        self, layer: QConv | QSdp, shape: tuple[int, ...], ew: torch.Tensor | None
    ) -> tuple[np.ndarray | None, torch.Tensor | None]:
        """A compiled chain's Y operand (INT8 [pixels, K] of ``ew``, or None) and, where the
        next layer convolves the result (``_copies``), the shared float buffer [B, H, W, K] the
        chain also fills, for an output of ``shape`` [B, K, H, W]."""
        batch, channels, height, width = shape
        operand = None if ew is None else _pixels(ew.reshape(shape).to(torch.int8)).numpy()
        wide = None
        if layer.name in self._copies:
            wide = self._buffer(torch.float32, (batch, height, width, channels))
        return operand, wide

    def _helper_threads(self, workers: int) -> ThreadPoolExecutor:
        """The threads that run chunks of a layer beside the calling one."""
        if self._threads is None or self._threads[0] < workers - 1:
            self._threads = (workers - 1, ThreadPoolExecutor(max(1, workers - 1), "intref"))
        return self._threads[1]

    def _pack(self, layer: QConv | QSdp, channels: int, cacc_truncate: int) -> tuple:
        """The layer's chain for the compiled pass (``intref_kernels.pack``), once."""
        packed = self._packed.get(layer.name)
        if packed is None:
            bound = 128  # INT8 values
            if isinstance(layer, QConv):
                bound = _accumulator_bounds(layer)
            packed = _kernels().pack(layer.sdp, channels, cacc_truncate, bound)
            self._packed[layer.name] = packed
        return packed

    def _buffer(self, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        """A C-contiguous ``shape`` view of the one float buffer of ``dtype`` every layer reuses
        for its convolution's input: a fresh one per layer costs a page fault per 4 KiB, about
        as long as filling it."""
        numel = int(np.prod(shape))
        buffer = self._scratch.get(dtype)
        if buffer is None or buffer.numel() < numel:
            buffer = self._scratch[dtype] = torch.empty(numel, dtype=dtype)
        return buffer[:numel].view(shape)

    def _zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A channels-last [B, K, H, W] view of zeros in the one accumulator buffer: the
        compiled chain that reads the sums writes the zeros back (``clear``)."""
        batch, channels, height, width = shape
        numel = batch * channels * height * width
        if self._sums is None or self._sums.numel() < numel:
            self._sums = torch.zeros(numel, dtype=torch.float32)
        return self._sums[:numel].view(batch, height, width, channels).permute(0, 3, 1, 2)

    def _widened(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Channels-last INT8 ``x`` as ``dtype`` (channels last), cast by the compiled loop into
        the shared buffer (torch's and numpy's casts take one core)."""
        nhwc = x.permute(0, 2, 3, 1).contiguous()
        wide = self._buffer(dtype, tuple(nhwc.shape))
        _kernels().widen_into(nhwc.numpy(), wide.numpy())
        return wide.permute(0, 3, 1, 2)

    def _sdp(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QSdp)
        x = values[layer.inputs[0]]  # INT8 from memory, sign-extended
        ew = values[layer.inputs[1]] if layer.sdp.y is not None else None
        if self.fused and x.ndim == 4 and _fusable(layer.sdp):
            values[layer.outputs[0]] = self._fused_chain(layer, x, ew, -1)
        else:
            values[layer.outputs[0]] = _stored(sdp(x.to(torch.int64), layer.sdp, ew))

    def _fused_chain(
        self, layer: QConv | QSdp, x: torch.Tensor, ew: torch.Tensor | None, cacc_truncate: int
    ) -> torch.Tensor:
        """INT8 [B, K, H, W] (channels last) of sums or INT8 values ``x`` [B, K, H, W]; also
        cast into the shared float buffer when the next layer convolves it (``_copies``)."""
        kernels = _kernels()
        assert kernels is not None
        channels = x.shape[1]
        packed = self._pack(layer, channels, cacc_truncate)
        out = self._output(tuple(x.shape))
        operand, wide = self._chain_operands(layer, tuple(x.shape), ew)
        clear = self._sums is not None and x.data_ptr() == self._sums.data_ptr()
        kernels.chain(_pixels(x).numpy(), _pixels(out).numpy(), *packed, operand,
                      None if wide is None else wide.view(-1, channels).numpy(), clear)  # fmt: skip
        if wide is not None:
            self._wide = (layer.outputs[0], wide.permute(0, 3, 1, 2))
        return out

    def _pool(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QPool)
        x = values[layer.inputs[0]]
        avg = layer.method == "avg" and layer.precision == "int8"
        if self.fused and avg and x.ndim == 4 and x.dtype == torch.int8:
            values[layer.outputs[0]] = self._average_pool(layer, x)
            return
        x = x.to(torch.int64)
        out = pool(x, layer)
        values[layer.outputs[0]] = out.reshape(self._shape(layer.outputs[0], x.shape[0])).to(
            torch.int8
        )

    def _average_pool(self, layer: QPool, x: torch.Tensor) -> torch.Tensor:
        """INT8 [B, K, H', W'] (channels last) of the compiled average pool of INT8 ``x``."""
        batch, channels, height, width = x.shape
        top, left, bottom, right = layer.pads
        (kh, kw), (sh, sw) = layer.kernel, layer.stride
        out_h, out_w = (height + top + bottom - kh) // sh + 1, (width + left + right - kw) // sw + 1
        geometry = np.array([kh, kw, sh, sw, top, left, layer.pad_value, layer.recip_w,
                             layer.recip_h], np.int64)  # fmt: skip
        out = torch.empty((batch, out_h, out_w, channels), dtype=torch.int8)
        nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        _kernels().average_pool(nhwc.numpy(), geometry, out.numpy())
        return out.permute(0, 3, 1, 2).reshape(self._shape(layer.outputs[0], batch))

    def _lrn(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QLrn)
        values[layer.outputs[0]] = lrn(values[layer.inputs[0]].to(torch.int64), layer).to(
            torch.int8
        )

    def _concat(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QConcat)
        values[layer.outputs[0]] = torch.cat([values[n] for n in layer.inputs], dim=layer.axis)

    def _view(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QView)
        x = values[layer.inputs[0]]
        values[layer.outputs[0]] = x.narrow(1, layer.start, layer.channels)

    def _contract(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QContract)
        x = values[layer.inputs[0]]
        n, _, h, w = x.shape
        sy, sx = layer.stride
        phases = x.reshape(n, sy, sx, layer.padded, h, w)[:, :, :, : layer.channels]
        out = phases.permute(0, 3, 4, 1, 5, 2).reshape(n, layer.channels, h * sy, w * sx)
        values[layer.outputs[0]] = out.contiguous()

    def _reshape(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        x = values[layer.inputs[0]]
        values[layer.outputs[0]] = x.reshape(self._shape(layer.outputs[0], x.shape[0]))

    def _quantize(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QQuantize)
        x = values[layer.inputs[0]]
        if self.fused and x.dtype == torch.float32:
            q = _kernels().quantize(x.numpy(), layer.scale)
            if q is not None:  # else NaN or infinities: the definition names the tensor
                values[layer.outputs[0]] = torch.from_numpy(q)
                if layer.name in self._copies:
                    # The first convolution's float input, cast and made channels-last in one
                    # pass instead of a channels-last copy and a cast.
                    batch, channels, height, width = q.shape
                    wide = self._buffer(torch.float32, (batch, height, width, channels))
                    _kernels().widen_channels_last(q, wide.numpy())
                    self._wide = (layer.outputs[0], wide.permute(0, 3, 1, 2))
                return
        values[layer.outputs[0]] = quantize(x, layer.scale, layer.inputs[0]).to(torch.int8)

    def _dequantize(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QDequantize)
        values[layer.outputs[0]] = dequantize(values[layer.inputs[0]], layer.scale)

    def _float(self, layer: QLayer, values: dict[str, torch.Tensor]) -> None:
        assert isinstance(layer, QFloat)
        session = self._sessions.get(layer.name)
        if session is None:
            session = self._sessions[layer.name] = _node_session(layer)
        feeds = {}
        for name in layer.inputs:
            if name in layer.initializers or not name:
                continue
            value = np.ascontiguousarray(values[name].numpy())
            if layer.precision == "fp16" and value.dtype == np.float32:
                value = value.astype(np.float16).astype(np.float32)
            feeds[name] = value
        outs = session.run(list(layer.outputs), feeds)  # type: ignore[attr-defined]
        for name, out in zip(layer.outputs, outs, strict=True):
            if not np.all(np.isfinite(out)) and out.dtype.kind == "f":
                raise DlakitError(f"layer {layer.name} produced NaN or infinite values in '{name}'")
            if layer.precision == "fp16" and out.dtype == np.float32:
                out = out.astype(np.float16).astype(np.float32)
            values[name] = torch.as_tensor(out)


def _fusable(chain: SdpChain) -> bool:
    """Whether the compiled pass covers ``chain``: INT8 out, no lookup table, Y (if any) in its
    ALU stage. The LUT and the Y multiplier run in the whole-tensor definition."""
    y_alu = chain.y is None or chain.y.stage == "alu"
    return chain.c.precision == "int8" and chain.lut is None and y_alu


def _kernels():
    """:mod:`dlakit.lower.intref_kernels`, or None where numba is not installed."""
    try:
        from dlakit.lower import intref_kernels
    except ImportError:
        return None
    return intref_kernels


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """[B, K, H, W] as a C-contiguous [B * H * W, K] view of its channels-last copy (``x``
    itself when it is channels-last already)."""
    nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
    return nhwc.reshape(-1, x.shape[1])


def _stored(out: torch.Tensor) -> torch.Tensor:
    """An SDP result as its memory holds it: INT8, or FP16 as the converter wrote it."""
    return out if out.dtype == torch.float16 else out.to(torch.int8)


def _node_session(layer: QFloat):
    """An onnxruntime session for one node (any batch: input shapes left unspecified)."""
    import onnxruntime as ort

    inits = []
    for name, value in layer.initializers.items():
        if layer.precision == "fp16" and value.dtype == np.float32:
            value = value.astype(np.float16).astype(np.float32)
        inits.append(onnx.numpy_helper.from_array(value, name))
    inputs = [
        onnx.helper.make_tensor_value_info(n, layer.dtypes.get(n, onnx.TensorProto.FLOAT), None)
        for n in layer.inputs
        if n and n not in layer.initializers
    ]
    outputs = [
        onnx.helper.make_tensor_value_info(n, layer.dtypes.get(n, onnx.TensorProto.FLOAT), None)
        for n in layer.outputs
    ]
    graph = onnx.helper.make_graph([layer.node], layer.name, inputs, outputs, inits)
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", layer.opset)], ir_version=10
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
