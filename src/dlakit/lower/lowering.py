"""Lower an ONNX model and its scales to a :class:`~dlakit.lower.qgraph.QGraph`.

Every node's engine and precision come from its support verdict
(:func:`dlakit.partition.check_model`: the target's rules, what dlakit's lowering can express
(``support/rules/lowering.toml``), the user's ``--fallback-layers``/``--fp16-layers``, then the
partition), so ``check`` and ``compile`` show the same reason for every node that does not run
INT8 on the DLA:

* a DLA INT8 node becomes an INT8 hardware layer (:class:`QConv`, :class:`QSdp`, ...);
* a DLA FP16 node (TensorRT's FP16 upgrades, ``--fp16-layers``, the lookup-table activations)
  stays a floating-point layer on the DLA;
* a fallback node runs in FP32 on the fallback device, except pure data movement the verdict
  marks as exact there (``fallback_int8``: layout layers, an unaligned concatenation), which
  keeps its INT8 tensors;
* on Jetson DLAs, a node the integer reference cannot express (``modeled_fp32``) is computed in
  FP32 on the fallback side of the reference, with that reason.

Orin and Xavier DLAs are modeled with the nv_full arithmetic (the open RTL is the only public
definition of the DLA's integer path).

Fusions, in the order the SDP applies them: Conv/Gemm -> [BatchNormalization] -> [Relu|Clip]
-> [Add of an INT8 tensor computed earlier]. Weights are quantized symmetric per output
channel (amax/127, at least 1/256 of the layer's largest, rounded half away from zero to
[-127, 127]); activations use the scales
file's per-tensor scale. Pooling, Flatten and Reshape keep their input's scale (PDP has no
converter), whatever the calibration said for their output.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import onnx

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.graph.nodes import attrs as node_attrs
from dlakit.lower import hwparams
from dlakit.lower.lint import lint
from dlakit.lower.lut import Activation, activation_of, fly_lut_chain, memory_lut_chain
from dlakit.lower.qgraph import (
    OutPrecision,
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
    QTensor,
    QView,
)
from dlakit.partition import check_model
from dlakit.support.verdict import Engine, NodeVerdict
from dlakit.targets import load_target

Decision = Literal["int8", "fp16", "int8-fallback", "fp32"]
LUT_OPS = ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish")  # activations of the SDP LUT
RUBIK_ATOM = 32  # RUBIK moves 32-byte atoms: a deconvolution's phases are 32-channel aligned
WEIGHT_QMAX = 127
WEIGHT_SCALE_SPAN = 256  # largest / smallest per-channel weight scale of one layer
FP16_OUTPUT_UNITS = 2048  # an FP16 network output's calibrated amax, in INT17 units (2^11)


class ScaleSource(Protocol):
    def activation_scale(self, name: str) -> float: ...


@dataclass
class _State:
    loaded: LoadedModel
    scales: ScaleSource | Mapping[str, float]
    structure_only: bool = False
    output_precision: OutPrecision = "int8"
    layers: list[QLayer] = field(default_factory=list)
    tensors: dict[str, QTensor] = field(default_factory=dict)
    int8_of: dict[str, str] = field(default_factory=dict)  # ONNX tensor -> INT8 QGraph tensor
    float_of: dict[str, str] = field(default_factory=dict)  # ONNX tensor -> float QGraph tensor
    planned: dict[str, float] = field(default_factory=dict)  # concat inputs at the concat's scale

    def scale(self, name: str) -> float:
        if name in self.planned:
            return self.planned[name]
        return self.calibrated(name)

    def calibrated(self, name: str) -> float:
        try:
            if isinstance(self.scales, Mapping):
                value = float(self.scales[name])
            else:
                value = float(self.scales.activation_scale(name))
        except KeyError:
            raise DlakitError(
                f"the scales have no entry for tensor '{name}' of {self.loaded.path}: "
                "were they made for another model?"
            ) from None
        if not np.isfinite(value) or value <= 0:
            raise DlakitError(f"scale of tensor '{name}' is {value}; it must be positive")
        return value

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.loaded.shapes.get(name, ()))

    def unclipped_scale(self, name: str) -> float:
        """The INT8 scale of the whole calibrated range (``max(|min|, |max|)``, at least amax),
        where the scales file says it; else the calibrated scale."""
        scale = self.scale(name)
        ranges = getattr(self.scales, "activations", None)
        if isinstance(ranges, Mapping) and name in ranges:
            r = ranges[name]
            widest = max(abs(float(r.min)), abs(float(r.max)))
            scale = max(scale, widest / 127.0)
        return scale

    def add_tensor(self, name: str, shape: tuple[int, ...], precision, scale=None) -> str:
        self.tensors[name] = QTensor(name, shape, precision, scale)
        return name

    def int8(self, onnx_name: str) -> str:
        """The INT8 tensor of ``onnx_name``, quantizing its float value if needed."""
        if onnx_name in self.int8_of:
            return self.int8_of[onnx_name]
        src = self.float_of[onnx_name]
        scale = self.scale(onnx_name)
        name = self.add_tensor(f"{onnx_name}::int8", self.shape(onnx_name), "int8", scale)
        # An FP16 tensor of the DLA converts on the DLA; model inputs and GPU tensors on the GPU.
        engine = "dla" if self.tensors[src].precision == "fp16" else "fallback"
        self.layers.append(
            QQuantize(f"quantize:{onnx_name}", [src], [name], engine=engine, scale=scale)
        )
        self.int8_of[onnx_name] = name
        return name

    def float(self, onnx_name: str) -> str:
        """The float tensor of ``onnx_name``, dequantizing its INT8 value if needed."""
        if onnx_name in self.float_of:
            return self.float_of[onnx_name]
        src = self.int8_of[onnx_name]
        name = self.add_tensor(f"{onnx_name}::float", self.shape(onnx_name), "fp32")
        scale = self.tensors[src].scale or 1.0
        self.layers.append(QDequantize(f"dequantize:{onnx_name}", [src], [name], scale=scale))
        self.float_of[onnx_name] = name
        return name

    def available(self, onnx_name: str) -> bool:
        return onnx_name in self.int8_of or onnx_name in self.float_of


def _quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric INT8: (int8 weights, float scales).

    A channel's scale is at least the largest channel's divided by WEIGHT_SCALE_SPAN: bias and
    requantization share one shift per layer (ALU shift, truncate), so a near-dead channel with
    a tiny scale would otherwise force a shift that rounds every other channel's bias away.
    """
    flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    floor = flat.max(initial=0.0) / WEIGHT_SCALE_SPAN
    flat = np.maximum(flat, floor)
    scales = np.where(flat > 0, flat / WEIGHT_QMAX, 1.0)
    v = w / scales.reshape((-1,) + (1,) * (w.ndim - 1))
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(q, -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8), scales


def _clip_bounds(node: onnx.NodeProto, inits: Mapping[str, np.ndarray]):
    """(lower, upper) of Relu/Clip; None where unbounded."""
    if node.op_type == "Relu":
        return 0.0, None
    attrs = node_attrs(node)
    lo = attrs.get("min")
    hi = attrs.get("max")
    if len(node.input) > 1 and node.input[1]:
        lo = float(np.asarray(inits[node.input[1]]).reshape(()))
    if len(node.input) > 2 and node.input[2]:
        hi = float(np.asarray(inits[node.input[2]]).reshape(()))
    return lo, hi


def fused_clip(node: onnx.NodeProto | None, inits: Mapping[str, np.ndarray]):
    """(lower, upper) of a Relu/Clip the SDP applies after a convolution (a lower bound of 0 or
    none), or None where ``node`` is no such activation."""
    if node is None or node.op_type not in ("Relu", "Clip"):
        return None
    lo, hi = _clip_bounds(node, inits)
    return (lo, hi) if lo in (None, 0.0) else None


def batchnorm_factors(
    node: onnx.NodeProto, inits: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A BatchNormalization as ``y = a * x + shift`` per channel (float64): (a, shift)."""
    gamma, beta, mean, var = (np.asarray(inits[n], dtype=np.float64) for n in node.input[1:5])
    a = gamma / np.sqrt(var + float(node_attrs(node).get("epsilon", 1e-5)))
    return a, beta - mean * a


class _Lowering:
    placed = "int8"  # the decision of the nodes this lowering builds hardware layers for

    def __init__(self, st: _State, decisions: dict[str, str]) -> None:
        self.st = st
        self.decisions = decisions
        self.consumers = st.loaded.consumers()
        self.producers = st.loaded.producers()
        self.inits = st.loaded.initializers
        self.outputs = set(st.loaded.output_names)
        self.done: set[str] = set()

    # ---- helpers
    def on_dla(self, tensor: str) -> bool:
        """Whether ``tensor`` already has the value a hardware layer of this lowering reads."""
        return tensor in self.st.int8_of

    def sole_consumer(self, tensor: str) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or tensor in self.outputs:
            return None
        user = users[0]
        return user if self.decisions.get(user.name) == self.placed else None

    def emit_int8(self, layer: QLayer, onnx_out: str, scale: float) -> None:
        self.st.add_tensor(onnx_out, self.st.shape(onnx_out), "int8", scale)
        self.st.int8_of[onnx_out] = onnx_out
        self.st.layers.append(layer)

    def out_format(self, onnx_out: str) -> tuple[float, OutPrecision]:
        """Scale and precision an SDP layer writes ``onnx_out`` in.

        A network output that nothing else reads leaves the DLA in FP16 where the target's
        converter writes FP16 (INT17 in units ``amax / 2048``: the calibrated range is exact
        FP16 integers, 32x beyond it still finite), else in INT8 at the scale of the whole
        calibrated range, so the logits do not clip. Every other tensor: INT8 at its scale.
        """
        st = self.st
        if onnx_out not in self.outputs or self.consumers.get(onnx_out):
            return st.scale(onnx_out), "int8"
        if st.output_precision == "fp16":
            return st.scale(onnx_out) * 127.0 / FP16_OUTPUT_UNITS, "fp16"
        return st.unclipped_scale(onnx_out), "int8"

    def emit_sdp(self, layer: QLayer, onnx_out: str, scale: float, precision: str) -> None:
        if precision == "int8":
            self.emit_int8(layer, onnx_out, scale)
            return
        self.st.add_tensor(onnx_out, self.st.shape(onnx_out), "fp16", scale)
        self.st.float_of[onnx_out] = onnx_out
        self.st.layers.append(layer)

    # ---- per node
    def lower(self, node: onnx.NodeProto) -> None:
        if node.name in self.done:
            return
        decision = self.decisions[node.name]
        if decision in ("int8", "int8-fallback"):
            handler = getattr(self, f"_int8_{node.op_type}", None)
            if handler is None:
                # The lowering table (support/rules/lowering.toml) lists an op built nowhere here.
                raise RuntimeError(f"node {node.name}: lowering.toml admits {node.op_type}, "
                                   "which has no INT8 form in lower/lowering.py")  # fmt: skip
            if decision == "int8":
                handler(node)
            else:
                handler(node, engine="fallback")  # data movement only: layout layers, Concat
        else:
            self.float_node(node, decision)

    def float_node(self, node: onnx.NodeProto, decision: str) -> None:
        st = self.st
        inputs = []
        for name in node.input:
            if name and name not in self.inits:
                inputs.append(st.float(name))
            else:
                inputs.append(name)
        renamed = onnx.NodeProto()
        renamed.CopyFrom(node)
        del renamed.input[:]
        renamed.input.extend(inputs)
        inits = {n: self.inits[n] for n in node.input if n in self.inits}
        dtypes = {n: st.loaded.dtypes.get(orig, onnx.TensorProto.FLOAT)
                  for n, orig in zip(inputs, node.input, strict=True) if n}  # fmt: skip
        for out in node.output:
            dtypes[out] = st.loaded.dtypes.get(out, onnx.TensorProto.FLOAT)
            precision = "fp16" if decision == "fp16" else "fp32"
            st.add_tensor(out, st.shape(out), precision)
            st.float_of[out] = out
        engine = "dla" if decision == "fp16" else "fallback"
        st.layers.append(
            QFloat(
                node.name, [n for n in inputs if n], list(node.output), engine=engine,
                onnx_nodes=[node.name], node=renamed, initializers=inits,
                precision="fp16" if decision == "fp16" else "fp32", dtypes=dtypes,
                opset=st.loaded.opset,
            )
        )  # fmt: skip

    # ---- convolution-like: Conv, Gemm, MatMul with fused BN / activation / add
    def _int8_Conv(self, node: onnx.NodeProto) -> None:
        attrs = node_attrs(node)
        w = np.asarray(self.inits[node.input[1]], dtype=np.float64)
        b = np.asarray(self.inits[node.input[2]], dtype=np.float64) if len(node.input) > 2 and \
            node.input[2] else None  # fmt: skip
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        self.conv_like(
            node, node.input[0], w, b,
            stride=tuple(attrs.get("strides", [1, 1])),
            pads=(pads[0], pads[1], pads[2], pads[3]),
            dilation=tuple(attrs.get("dilations", [1, 1])),
            groups=int(attrs.get("group", 1)),
        )  # fmt: skip

    def _int8_Gemm(self, node: onnx.NodeProto) -> None:
        attrs = node_attrs(node)
        w = np.asarray(self.inits[node.input[1]], dtype=np.float64)
        if not attrs.get("transB", 0):
            w = w.T
        if not self.st.structure_only:
            w = w * float(attrs.get("alpha", 1.0))
        b = None
        if len(node.input) > 2 and node.input[2]:
            b = np.broadcast_to(
                np.asarray(self.inits[node.input[2]], dtype=np.float64).reshape(-1),
                (w.shape[0],),
            ) * float(attrs.get("beta", 1.0))
        self.fc(node, w, b)

    def _int8_MatMul(self, node: onnx.NodeProto) -> None:
        w = np.asarray(self.inits[node.input[1]], dtype=np.float64).T
        self.fc(node, w, None)

    def fc(self, node: onnx.NodeProto, w: np.ndarray, b: np.ndarray | None) -> None:
        """A fully-connected layer is a convolution whose kernel covers its whole input."""
        src = node.input[0]
        source = self.fc_source(src)
        if source is not None:
            _, c, h, wd = self.st.shape(source)
            self.conv_like(node, source, w.reshape(w.shape[0], c, h, wd), b)
        else:
            self.conv_like(node, src, w.reshape(w.shape[0], w.shape[1], 1, 1), b)

    def fc_source(self, tensor: str) -> str | None:
        """The 4-D tensor a Flatten/Reshape fed to this FC, when the FC can read it directly."""
        producer = self.producers.get(tensor)
        if producer is None or producer.op_type not in ("Flatten", "Reshape"):
            return None
        if self.decisions.get(producer.name) != self.placed:
            return None
        source = producer.input[0]
        shape = self.st.shape(source)
        if len(shape) != 4 or not self.st.available(source) or not self.on_dla(source):
            return None
        return source

    def conv_like(
        self,
        node: onnx.NodeProto,
        src: str,
        w: np.ndarray,
        b: np.ndarray | None,
        stride=(1, 1),
        pads=(0, 0, 0, 0),
        dilation=(1, 1),
        groups: int = 1,
        phases: tuple[int, int, int, int] | None = None,
    ) -> None:
        """A convolution and the nodes the SDP applies on the fly. ``phases`` = (sy, sx, K, Kp):
        ``w`` holds a deconvolution's ``sy * sx`` phases of ``Kp`` kernels (``K`` real ones, the
        rest zero), whose output a RUBIK contract de-interleaves (:meth:`deconvolution`)."""
        st = self.st
        fused = [node.name]
        out = node.output[0]
        # The model output channel of each weight row (-1: a phase's padding kernel).
        channel_of = np.arange(w.shape[0])
        if phases is not None:
            sy, sx, k_real, k_pad = phases
            row = np.arange(k_pad)
            channel_of = np.tile(np.where(row < k_real, row, -1), sy * sx)
        nxt = self.sole_consumer(out)
        if nxt is not None and nxt.op_type == "BatchNormalization":
            a, shift = batchnorm_factors(nxt, self.inits)
            live = channel_of >= 0
            a = np.where(live, a[np.maximum(channel_of, 0)], 1.0)
            shift = np.where(live, shift[np.maximum(channel_of, 0)], 0.0)
            if not st.structure_only:
                w = w * a.reshape(-1, 1, 1, 1)
            b = (np.zeros(w.shape[0]) if b is None else b) * a + shift
            fused.append(nxt.name)
            out = nxt.output[0]
            nxt = self.sole_consumer(out)
        clip: tuple[float | None, float | None] = (None, None)
        act, pre = None, out  # a lookup-table activation, and the tensor it reads
        if (bounds := fused_clip(nxt, self.inits)) is not None:
            clip = bounds
            fused.append(nxt.name)
            out = nxt.output[0]
            nxt = self.sole_consumer(out)
        elif nxt is not None and nxt.op_type in LUT_OPS:
            act = activation_of(nxt.op_type, node_attrs(nxt))
            fused.append(nxt.name)
            out = nxt.output[0]
        elif nxt is None and (silu := self.silu_pair(out)) is not None:
            act = Activation("silu")
            fused += [silu[0].name, silu[1].name]
            out = silu[1].output[0]
        ew_src = None
        if act is None and phases is None and nxt is not None and nxt.op_type == "Add":
            other = [n for n in nxt.input if n != out]  # an INT8 DLA Add: the target has SDP Y
            if (
                len(other) == 1
                and st.available(other[0])
                and st.shape(other[0]) == st.shape(nxt.output[0])
            ):
                ew_src = other[0]
                fused.append(nxt.name)
                out = nxt.output[0]
        x = st.int8(src)
        s_in = st.tensors[x].scale or 1.0
        if st.structure_only:  # the layer's shape without quantizing weights nobody reads
            wq, s_w = np.broadcast_to(np.int8(0), w.shape), np.ones(w.shape[0])
        else:
            wq, s_w = _quantize_weights(w)
            if phases is None:
                b = self.corrected_bias(node, w, wq, s_w, b, groups)
        s_out, precision = self.out_format(out)
        if (act is not None or phases is not None) and precision != "int8":
            s_out, precision = st.unclipped_scale(out), "int8"  # these layers write INT8 only
        ew_name, ew_scale = "", None
        inputs = [x]
        if ew_src is not None:
            ew_name = st.int8(ew_src)
            ew_scale = st.tensors[ew_name].scale
            inputs.append(ew_name)
        bound = 128.0 * np.abs(wq.astype(np.float64)).reshape(wq.shape[0], -1).sum(axis=1)
        if act is not None:
            chain = fly_lut_chain(act, s_in * s_w, b, st.scale(pre), s_out, bound)
        else:
            chain = hwparams.conv_chain(s_in * s_w, b, s_out, clip, ew_scale, ew_name,
                                        precision, bound)  # fmt: skip
        self.done.update(fused)
        conv_out = out if phases is None else f"{out}::phases"
        layer = QConv(
            node.name, inputs, [conv_out], onnx_nodes=fused, weight=wq,
            stride=(int(stride[0]), int(stride[1])), pads=tuple(int(p) for p in pads),
            dilation=(int(dilation[0]), int(dilation[1])), groups=groups, sdp=chain,
        )  # fmt: skip
        if phases is None:
            self.emit_sdp(layer, out, s_out, precision)
            return
        sy, sx, k_real, k_pad = phases
        _, _, h, wd = st.shape(src)
        st.add_tensor(conv_out, (1, sy * sx * k_pad, h, wd), "int8", s_out)
        st.layers.append(layer)
        contract = QContract(f"{node.name}:contract", [conv_out], [out], onnx_nodes=[node.name],
                             stride=(sy, sx), channels=k_real, padded=k_pad)  # fmt: skip
        self.emit_int8(contract, out, s_out)

    def corrected_bias(
        self,
        node: onnx.NodeProto,
        w: np.ndarray,
        wq: np.ndarray,
        s_w: np.ndarray,
        b: np.ndarray | None,
        groups: int,
    ) -> np.ndarray | None:
        """``b`` less the expected output error of ``w``'s INT8 weights, ``(W_q - W) . E[x]``,
        where the scales hold ``node``'s input means (calibrate --bias-correction): the error
        of each weight times the mean of the input channel it reads, summed over the taps."""
        table = getattr(self.st.scales, "bias_correction", None)
        if not table or node.name not in table:
            return b
        mean = np.asarray(table[node.name].mean, dtype=np.float64)
        k, c_per_group = w.shape[0], w.shape[1]
        if mean.size == c_per_group * groups:  # a convolution's channels, one group per slice
            by_row = mean.reshape(groups, c_per_group)[np.arange(k) // (k // groups)]
            expected = by_row.reshape(k, c_per_group, 1, 1)
        elif groups == 1 and mean.size == w[0].size:  # an FC reading a flattened tensor
            expected = mean.reshape((1, *w.shape[1:]))
        else:
            raise DlakitError(
                f"bias_correction '{node.name}': {mean.size} input means, the layer reads "
                f"{c_per_group * groups} channels"
            )
        error = wq.astype(np.float64) * s_w.reshape(-1, 1, 1, 1) - w
        shift = (error * expected).sum(axis=(1, 2, 3))
        return (np.zeros(k) if b is None else b) - shift

    def silu_pair(self, tensor: str) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
        """(Sigmoid, Mul) when ``tensor`` is read only by ``Sigmoid`` and by the ``Mul`` of it and
        that Sigmoid's output (SiLU, as PyTorch exports it), all three INT8 on the DLA."""
        users = self.consumers.get(tensor, [])
        if tensor in self.outputs or len(users) != 2:
            return None
        sig = next((u for u in users if u.op_type == "Sigmoid"), None)
        mul = next((u for u in users if u.op_type == "Mul"), None)
        if sig is None or mul is None:
            return None
        gate = sig.output[0]
        if sorted(mul.input) != sorted([tensor, gate]) or gate in self.outputs:
            return None
        if [u.name for u in self.consumers.get(gate, [])] != [mul.name]:
            return None
        if self.decisions.get(sig.name) != "int8" or self.decisions.get(mul.name) != "int8":
            return None
        return sig, mul

    # ---- standalone SDP ops
    def _int8_BatchNormalization(self, node: onnx.NodeProto) -> None:
        a, shift = batchnorm_factors(node, self.inits)
        x = self.st.int8(node.input[0])
        s_in = self.st.tensors[x].scale or 1.0
        s_out, precision = self.out_format(node.output[0])
        chain = hwparams.conv_chain(a * s_in, shift, s_out, out_precision=precision,
                                    acc_bound=128.0)  # fmt: skip
        self.emit_sdp(QSdp(node.name, [x], [node.output[0]], onnx_nodes=[node.name], sdp=chain),
                      node.output[0], s_out, precision)  # fmt: skip

    def _int8_Relu(self, node: onnx.NodeProto) -> None:
        self.activation(node)

    def _int8_Clip(self, node: onnx.NodeProto) -> None:
        self.activation(node)

    def activation(self, node: onnx.NodeProto) -> None:
        x = self.st.int8(node.input[0])
        s_in = self.st.tensors[x].scale or 1.0
        s_out, precision = self.out_format(node.output[0])
        chain = hwparams.conv_chain(np.array([s_in]), None, s_out, _clip_bounds(node, self.inits),
                                    out_precision=precision, acc_bound=128.0)  # fmt: skip
        self.emit_sdp(QSdp(node.name, [x], [node.output[0]], onnx_nodes=[node.name], sdp=chain),
                      node.output[0], s_out, precision)  # fmt: skip

    def _int8_Add(self, node: onnx.NodeProto) -> None:
        a = self.st.int8(node.input[0])
        b = self.st.int8(node.input[1])
        s_out, precision = self.out_format(node.output[0])
        chain = hwparams.conv_chain(
            np.array([self.st.tensors[a].scale]), None, s_out, (None, None),
            self.st.tensors[b].scale, b, precision, 128.0,
        )  # fmt: skip
        self.emit_sdp(QSdp(node.name, [a, b], [node.output[0]], onnx_nodes=[node.name],
                           sdp=chain), node.output[0], s_out, precision)  # fmt: skip

    def _int8_Mul(self, node: onnx.NodeProto) -> None:
        """Two INT8 tensors of one shape: the SDP Y multiplier (``hwparams.mul_chain``)."""
        st = self.st
        a, b = st.int8(node.input[0]), st.int8(node.input[1])
        s_out, precision = self.out_format(node.output[0])
        chain = hwparams.mul_chain(st.tensors[a].scale or 1.0, st.tensors[b].scale or 1.0, s_out,
                                   b, precision)  # fmt: skip
        self.emit_sdp(QSdp(node.name, [a, b], [node.output[0]], onnx_nodes=[node.name],
                           sdp=chain), node.output[0], s_out, precision)  # fmt: skip

    def _int8_Max(self, node: onnx.NodeProto) -> None:
        self.ew_alu(node, "max")

    def _int8_Min(self, node: onnx.NodeProto) -> None:
        self.ew_alu(node, "min")

    def ew_alu(self, node: onnx.NodeProto, alu: str) -> None:
        """Two INT8 tensors of one shape through the SDP Y ALU, as ``Add`` (``conv_chain``)."""
        st = self.st
        a, b = st.int8(node.input[0]), st.int8(node.input[1])
        s_out, precision = self.out_format(node.output[0])
        chain = hwparams.conv_chain(
            np.array([st.tensors[a].scale]), None, s_out, (None, None), st.tensors[b].scale, b,
            precision, 128.0, ew_alu=alu,
        )  # fmt: skip
        self.emit_sdp(QSdp(node.name, [a, b], [node.output[0]], onnx_nodes=[node.name],
                           sdp=chain), node.output[0], s_out, precision)  # fmt: skip

    # ---- SDP lookup table (targets with the SDP LUT)
    def _int8_Sigmoid(self, node: onnx.NodeProto) -> None:
        silu = self.silu_pair(node.input[0])
        if silu is not None and silu[0].name == node.name:
            self.lut_layer(node, Activation("silu"), [node, silu[1]])
        else:
            self.lut_layer(node, activation_of("Sigmoid", {}), [node])

    def _int8_Tanh(self, node: onnx.NodeProto) -> None:
        self.lut_layer(node, activation_of("Tanh", {}), [node])

    def _int8_HardSigmoid(self, node: onnx.NodeProto) -> None:
        self.lut_layer(node, activation_of("HardSigmoid", node_attrs(node)), [node])

    def _int8_HardSwish(self, node: onnx.NodeProto) -> None:
        self.lut_layer(node, activation_of("HardSwish", {}), [node])

    def lut_layer(self, node: onnx.NodeProto, act: Activation, nodes: list[onnx.NodeProto]):
        """An SDP pass from memory whose INT8 input indexes the activation's table."""
        st = self.st
        out = nodes[-1].output[0]
        x = st.int8(node.input[0])
        s_out = st.scale(out) if out not in self.outputs else st.unclipped_scale(out)
        chain = memory_lut_chain(act, st.tensors[x].scale or 1.0, s_out)
        self.done.update(n.name for n in nodes)
        self.emit_int8(QSdp(node.name, [x], [out], onnx_nodes=[n.name for n in nodes],
                            sdp=chain), out, s_out)  # fmt: skip

    # ---- channel views
    def _int8_Split(self, node: onnx.NodeProto) -> None:
        start = 0
        for i, out in enumerate(node.output):
            channels = int(self.st.shape(out)[1])
            if out:
                self.view(node, f"{node.name}:{i}" if i else node.name, out, start, channels)
            start += channels

    def _int8_Slice(self, node: onnx.NodeProto) -> None:
        shape = self.st.shape(node.input[0])
        first, last = _slice_channels(node, self.inits, int(shape[1]), len(shape))
        self.view(node, node.name, node.output[0], first, last - first)

    def view(self, node: onnx.NodeProto, name: str, out: str, start: int, channels: int) -> None:
        st = self.st
        x = st.int8(node.input[0])
        self.emit_int8(QView(name, [x], [out], onnx_nodes=[node.name], start=start,
                             channels=channels), out, st.tensors[x].scale or 1.0)  # fmt: skip

    # ---- deconvolution: phase convolution + RUBIK contract
    def _int8_ConvTranspose(self, node: onnx.NodeProto) -> None:
        w = np.asarray(self.inits[node.input[1]], dtype=np.float64)  # (C, K, sy, sx)
        c, k, sy, sx = w.shape
        b = None
        if len(node.input) > 2 and node.input[2]:
            b = np.asarray(self.inits[node.input[2]], dtype=np.float64)
        self.deconvolution(node, np.transpose(w, (2, 3, 1, 0)), b, c, k, sy, sx)

    def _int8_Resize(self, node: onnx.NodeProto) -> None:
        """Nearest upsampling by whole factors: a deconvolution whose kernel copies each channel
        to every phase (weights 1), kept at the input's scale unless a concatenation sets it."""
        _, c, h, w = self.st.shape(node.input[0])
        _, _, oh, ow = self.st.shape(node.output[0])
        sy, sx = oh // h, ow // w
        phases = np.broadcast_to(np.eye(c), (sy, sx, c, c))
        self.deconvolution(node, phases, None, c, c, sy, sx, keep_scale=True)

    def deconvolution(self, node: onnx.NodeProto, w: np.ndarray, b: np.ndarray | None, c: int,
                      k: int, sy: int, sx: int, keep_scale: bool = False) -> None:  # fmt: skip
        """``w[y, x]`` (K x C) are the phases' kernels: a 1x1 convolution with ``sy * sx * Kp``
        kernels (``Kp``: K padded to RUBIK's 32-channel atom, zero kernels between) then the
        RUBIK contract, as the NVDLA compiler lowers a deconvolution whose kernel is its stride
        (``ConvCoreDeconvolutionOpNode``: one convolution per phase into one buffer, then RUBIK)."""
        k_pad = -(-k // RUBIK_ATOM) * RUBIK_ATOM
        rows = np.zeros((sy, sx, k_pad, c), dtype=np.float64)
        rows[:, :, :k] = w
        bias = None
        if b is not None:
            bias = np.zeros((sy, sx, k_pad))
            bias[:, :, :k] = b
            bias = bias.reshape(-1)
        if keep_scale and node.output[0] not in self.st.planned:
            x = self.st.int8(node.input[0])
            self.st.planned[node.output[0]] = self.st.tensors[x].scale or 1.0
        self.conv_like(node, node.input[0], rows.reshape(-1, c, 1, 1), bias,
                       phases=(sy, sx, k, k_pad))  # fmt: skip

    # ---- PDP
    def _int8_MaxPool(self, node: onnx.NodeProto) -> None:
        self.pool(node, "max")

    def _int8_AveragePool(self, node: onnx.NodeProto) -> None:
        self.pool(node, "avg")

    def _int8_GlobalAveragePool(self, node: onnx.NodeProto) -> None:
        self.pool(node, "avg")

    def _int8_GlobalMaxPool(self, node: onnx.NodeProto) -> None:
        self.pool(node, "max")

    def pool(self, node: onnx.NodeProto, method: str) -> None:
        x = self.st.int8(node.input[0])
        scale = self.st.tensors[x].scale or 1.0
        kernel, stride, pads = _pool_geometry(node, self.st.shape(node.input[0]))
        recip_w, recip_h = hwparams.pool_reciprocals(kernel)
        layer = QPool(
            node.name, [x], [node.output[0]], onnx_nodes=[node.name], method=method,  # type: ignore[arg-type]
            kernel=kernel, stride=stride, pads=pads, pad_value=0, recip_w=recip_w, recip_h=recip_h,
        )  # fmt: skip
        self.emit_int8(layer, node.output[0], scale)

    def _int8_LRN(self, node: onnx.NodeProto) -> None:
        x = self.st.int8(node.input[0])
        attrs = node_attrs(node)
        s_out = self.st.scale(node.output[0])
        params = hwparams.lrn_params(
            int(attrs["size"]), float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)),
            float(attrs.get("bias", 1.0)), self.st.tensors[x].scale or 1.0, s_out,
        )  # fmt: skip
        layer = QLrn(node.name, [x], [node.output[0]], onnx_nodes=[node.name], **params)
        self.emit_int8(layer, node.output[0], s_out)

    # ---- layout
    def _int8_Concat(self, node: onnx.NodeProto, engine: Engine = "dla") -> None:
        st = self.st
        out = node.output[0]
        s_out = st.scale(out)
        inputs = []
        for name in node.input:
            x = st.int8(name)
            if st.tensors[x].scale != s_out:
                requant = st.add_tensor(f"{name}::requant", st.shape(name), "int8", s_out)
                chain = hwparams.conv_chain(np.array([st.tensors[x].scale]), None, s_out,
                                            acc_bound=128.0)  # fmt: skip
                st.layers.append(QSdp(f"requant:{name}", [x], [requant], sdp=chain))
                x = requant
            inputs.append(x)
        axis = int(node_attrs(node).get("axis", 1))
        rank = len(st.shape(out))
        self.emit_int8(QConcat(node.name, inputs, [out], engine=engine, onnx_nodes=[node.name],
                               axis=axis % rank), out, s_out)  # fmt: skip

    def layout(self, node: onnx.NodeProto, engine: Engine = "dla") -> None:
        st = self.st
        src, out = node.input[0], node.output[0]
        if engine == "dla" and self.skip_for_fc(out):
            self.done.add(node.name)
            return
        shape = st.shape(out)
        if engine == "dla" or src in st.int8_of:
            x = st.int8(src)  # an INT8 DLA layer: its input is quantized where it was computed
            scale = st.tensors[x].scale
            st.add_tensor(out, shape, "int8", scale)
            st.int8_of[out] = out
        else:
            x = st.float_of[src]
            st.add_tensor(out, shape, st.tensors[x].precision)
            st.float_of[out] = out
        st.layers.append(
            QReshape(node.name, [x], [out], engine=engine, onnx_nodes=[node.name], shape=shape)
        )

    def skip_for_fc(self, out: str) -> bool:
        """A Flatten/Reshape read only by FC layers that take its 4-D input directly."""
        users = self.consumers.get(out, [])
        if not users or out in self.outputs:
            return False
        return all(
            u.op_type in ("Gemm", "MatMul")
            and self.decisions.get(u.name) == self.placed
            and u.input[0] == out
            and len(self.st.shape(self.producers[out].input[0])) == 4
            and self.on_dla(self.producers[out].input[0])
            for u in users
        )

    _int8_Flatten = layout
    _int8_Reshape = layout
    _int8_Squeeze = layout
    _int8_Unsqueeze = layout
    _int8_Identity = layout
    _int8_Dropout = layout


def _slice_channels(node: onnx.NodeProto, inits: Mapping[str, np.ndarray], c: int, rank: int):
    """[first, last) channels of a Slice along the channel axis (steps 1; the lowering table's
    checks admit no other)."""
    starts = np.ravel(inits[node.input[1]]).astype(np.int64)
    ends = np.ravel(inits[node.input[2]]).astype(np.int64)
    axes = np.ravel(inits[node.input[3]]) if len(node.input) > 3 and node.input[3] else None
    axes = np.arange(len(starts)) if axes is None else axes.astype(np.int64) % rank
    i = int(np.nonzero(axes == 1)[0][0])
    first, last = int(starts[i]), int(ends[i])
    first = first + c if first < 0 else first
    last = last + c if last < 0 else last
    return min(max(first, 0), c), min(max(last, 0), c)


def _pool_geometry(node: onnx.NodeProto, in_shape: tuple[int, ...]):
    attrs = node_attrs(node)
    if node.op_type.startswith("Global"):
        return (in_shape[2], in_shape[3]), (1, 1), (0, 0, 0, 0)
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    stride = tuple(int(s) for s in attrs.get("strides", [1, 1]))
    p = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
    return kernel, stride, (p[0], p[1], p[2], p[3])


# Nodes whose INT8 output keeps their input's scale and commutes with clipping to a narrower
# range (max pooling, data movement), so their input may be made at the concatenation's scale.
# Average pooling keeps the scale too, but clipping before averaging is not clipping after it.
_SCALE_KEEPING = (
    "MaxPool", "GlobalMaxPool", "Split", "Slice", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
    "Identity", "Dropout",
)  # fmt: skip


def _concat_scales(loaded: LoadedModel, decisions: Mapping[str, str], st: _State) -> dict:
    """Tensor -> scale: the INT8 concatenations' inputs made at the concatenation's scale.

    A concatenation is a memory layout, so its inputs must share its scale; rather than an SDP
    pass requantizing each input (an operation, and a second rounding), the layer that makes
    an input writes it at the concatenation's scale (its output converter rescales anyway). An
    input made by a scale-keeping node (max pooling, a channel view, a reshape) passes the scale to
    that node's input. Outer concatenations go first (a nested one then takes their scale); a
    tensor two concatenations want at different scales keeps the first, the other requantizes.
    """
    producers = loaded.producers()
    planned: dict[str, float] = {}
    for node in reversed(loaded.nodes):
        if node.op_type != "Concat" or decisions.get(node.name) not in ("int8", "int8-fallback"):
            continue
        out = node.output[0]
        s_cat = planned.get(out) or st.calibrated(out)
        for name in node.input:
            src = name
            while (
                (p := producers.get(src)) is not None
                and p.op_type in _SCALE_KEEPING
                and (decisions.get(p.name) in ("int8", "int8-fallback"))
            ):
                src = p.input[0]
            planned.setdefault(src, s_cat)
    return planned


def _hoist_conversions(layers: list[QLayer], start: int, graph_inputs: Iterable[str]) -> None:
    """Moves the INT8 conversions of values made before ``layers[start:]`` (a run of DLA
    segments) to the run's start. They are emitted where a layer first reads them; left there,
    each would split the run's DLA segment at a host conversion (one more round trip)."""
    made = {name for layer in layers[:start] for name in layer.outputs} | set(graph_inputs)
    run = layers[start:]
    early = [x for x in run if isinstance(x, QQuantize) and x.inputs[0] in made]
    layers[start:] = early + [x for x in run if not any(x is e for e in early)]


def decide(verdicts: Mapping[str, NodeVerdict]) -> dict[str, Decision]:
    """Per node: ``int8`` or ``fp16`` (DLA), ``int8-fallback`` (exact data movement kept INT8 on
    the fallback) or ``fp32`` (fallback, or a Jetson DLA layer the reference computes in FP32)."""
    decisions: dict[str, Decision] = {}
    for name, v in verdicts.items():
        if v.engine == "fallback":
            decisions[name] = "int8-fallback" if v.fallback_int8 else "fp32"
        elif v.precision == "fp16":
            decisions[name] = "fp16"
        elif v.modeled_fp32 is not None:
            decisions[name] = "fp32"
        else:
            decisions[name] = "int8"
    return decisions


def output_format(target: str, precision: str | None) -> OutPrecision:
    """The network output precision on ``target``: the given one, or FP16 where it exists."""
    has_fp16 = "fp16" in load_target(target).dla.precisions
    if precision is None:
        return "fp16" if has_fp16 else "int8"
    if precision not in ("int8", "fp16"):
        raise DlakitError(f"--output-precision {precision!r}: choose int8 or fp16")
    if precision == "fp16" and not has_fp16:
        raise DlakitError(
            f"--output-precision fp16: target {target}'s DLA has no FP16 (its output converter "
            "writes INT8 only); use int8"
        )
    return precision  # type: ignore[return-value]


def quantize_model(
    loaded: LoadedModel,
    scales: ScaleSource | Mapping[str, float],
    target: str = "nv_full",
    fp16_layers: Iterable[str] = (),
    fallback_layers: Iterable[str] = (),
    trt: str | None = None,
    *,
    structure_only: bool = False,
    output_precision: OutPrecision | None = None,
) -> QGraph:
    """Lower ``loaded`` with ``scales`` for ``target`` into a QGraph (see the module docstring).

    The verdicts are ``check``'s for ``target`` (TensorRT version ``trt`` on Jetson targets)
    with the user's ``fallback_layers`` and ``fp16_layers``. ``structure_only`` builds the
    layers without quantizing weights (zeros of their shapes): for the performance model, which
    reads shapes only; such a graph must not be executed. ``output_precision`` is how network
    outputs leave the DLA (:meth:`_Lowering.out_format`): ``fp16`` where the target's DLA has
    FP16 (its output converter writes it), ``int8`` else; None picks the target's FP16 where it
    exists. ``fp16`` on a target without FP16 is refused.
    """
    result = check_model(
        loaded, load_target(target), trt, fallback_layers=fallback_layers, fp16_layers=fp16_layers
    )
    verdicts = {v.name: v for v in result.nodes}
    st = _State(loaded, scales, structure_only=structure_only,
                output_precision=output_format(target, output_precision))  # fmt: skip
    for name in loaded.input_names:
        st.add_tensor(name, tuple(loaded.input_shapes[name]), "fp32")
        st.float_of[name] = name
    decisions = decide(verdicts)
    st.planned = _concat_scales(loaded, decisions, st)
    lowering = _Lowering(st, decisions)
    # In the partition's segment order, so that each DLA segment's layers are consecutive.
    for engine, run in itertools.groupby(result.segments, key=lambda seg: seg.engine):
        start = len(st.layers)
        for segment in run:
            for index in segment.nodes:
                lowering.lower(loaded.nodes[index])
        if engine == "dla":
            _hoist_conversions(st.layers, start, loaded.input_names)
    for name in loaded.output_names:
        if not st.available(name):
            raise DlakitError(f"model output '{name}' was not produced by the lowering")
    graph = QGraph(
        model_name=loaded.path.stem,
        target=target,
        layers=st.layers,
        tensors=st.tensors,
        inputs=list(loaded.input_names),
        outputs=list(loaded.output_names),
        quant_of=dict(st.int8_of),
        verdicts=verdicts,
    )
    lint(graph)
    return graph
