"""A fallback segment of a quantized graph as one ONNX model.

Fallback layers keep their ONNX node; the conversions at DLA boundaries become plain ONNX ops
that compute exactly what the integer reference does (``dlakit.lower.intref``):

* quantize: ``clip(sign(v) * floor(|v| + 0.5), -128, 127)`` with ``v = double(x) / scale``
  (round half away from zero, in float64), cast to INT8;
* to FP16 (an FP16 segment's input): ``Cast`` to FLOAT16 and back (nearest even);
* dequantize: ``float(q) * float32(scale)``;
* a reshape that changes the feature layout: ``Reshape`` with the batch dimension kept;
* a concatenation whose inputs cannot share one surface: ``Concat``;
* an INT8 convolution or SDP pass whose output converter writes FP16 (a network output), which
  the simulator cannot write yet: its integer datapath as exact float64 arithmetic (integer
  sums of a float32 convolution, every shift a division by a power of two rounded half away
  from zero, saturations as clips), then INT17 -> FP16 with ONNX ``Cast`` (nearest even, as
  the converter rounds): what :mod:`dlakit.lower.intref` computes, bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dlakit.errors import DlakitError
from dlakit.lower.qgraph import (
    QConcat,
    QConv,
    QDequantize,
    QFloat,
    QGraph,
    QLayer,
    QQuantize,
    QReshape,
    QSdp,
    QToFp16,
    SdpChain,
    XUnit,
)

OPSET = 17
_DTYPES = {"int8": TensorProto.INT8, "fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT}


def _dtype(graph: QGraph, name: str, layers: list[QLayer]) -> int:
    for layer in layers:
        if isinstance(layer, QFloat) and name in layer.dtypes:
            return layer.dtypes[name]
    return _DTYPES[graph.tensors[name].precision]


def _quantize(layer: QQuantize, inits: list) -> list[onnx.NodeProto]:
    x, y, p = layer.inputs[0], layer.outputs[0], f"{layer.name}/"
    inits.append(numpy_helper.from_array(np.array(layer.scale, dtype=np.float64), p + "scale"))
    inits.append(numpy_helper.from_array(np.array(0.5, dtype=np.float64), p + "half"))
    inits.append(numpy_helper.from_array(np.array(-128.0, dtype=np.float64), p + "lo"))
    inits.append(numpy_helper.from_array(np.array(127.0, dtype=np.float64), p + "hi"))
    mk = helper.make_node
    return [
        mk("Cast", [x], [p + "x64"], to=TensorProto.DOUBLE, name=p + "cast"),
        mk("Div", [p + "x64", p + "scale"], [p + "v"], name=p + "div"),
        mk("Abs", [p + "v"], [p + "abs"], name=p + "abs"),
        mk("Add", [p + "abs", p + "half"], [p + "abs_h"], name=p + "add"),
        mk("Floor", [p + "abs_h"], [p + "mag"], name=p + "floor"),
        mk("Sign", [p + "v"], [p + "sign"], name=p + "sign"),
        mk("Mul", [p + "mag", p + "sign"], [p + "round"], name=p + "mul"),
        mk("Clip", [p + "round", p + "lo", p + "hi"], [p + "sat"], name=p + "clip"),
        mk("Cast", [p + "sat"], [y], to=TensorProto.INT8, name=p + "to_int8"),
    ]


def _dequantize(layer: QDequantize, inits: list) -> list[onnx.NodeProto]:
    x, y, p = layer.inputs[0], layer.outputs[0], f"{layer.name}/"
    inits.append(numpy_helper.from_array(np.array(layer.scale, dtype=np.float32), p + "scale"))
    return [
        helper.make_node("Cast", [x], [p + "xf"], to=TensorProto.FLOAT, name=p + "cast"),
        helper.make_node("Mul", [p + "xf", p + "scale"], [y], name=p + "mul"),
    ]


def _reshape(layer: QReshape, inits: list) -> list[onnx.NodeProto]:
    p = f"{layer.name}/"
    shape = np.array([0, *layer.shape[1:]], dtype=np.int64)
    inits.append(numpy_helper.from_array(shape, p + "shape"))
    return [helper.make_node("Reshape", [layer.inputs[0], p + "shape"], [layer.outputs[0]],
                             name=p + "reshape")]  # fmt: skip


class _Emit:
    """Builds the float64 nodes of one emulated INT8 layer under a name prefix."""

    def __init__(self, prefix: str, inits: list) -> None:
        self.p, self.inits, self.nodes, self.count = prefix, inits, [], 0

    def const(self, value, ndim: int = 4, dtype=np.float64) -> str:
        """A per-channel operand (``(K,)`` -> ``(1, K, 1, ...)``) or a scalar."""
        v = np.asarray(value, dtype=dtype).reshape(-1)
        return self.tensor(v.reshape((1, -1) + (1,) * (ndim - 2)) if v.size > 1 else v[0])

    def tensor(self, value: np.ndarray) -> str:
        name = f"{self.p}c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        self.count += 1
        out = f"{self.p}t{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def saturate(self, x: str, bits: int) -> str:
        lo, hi = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
        return self.op("Clip", [x, self.const(lo), self.const(hi)])

    def shift_right(self, x: str, shift: int, out_bits: int) -> str:
        """intref.shift_right_round: round half away from zero of x / 2^shift, saturate."""
        if shift:
            v = self.op("Mul", [x, self.const(2.0**-shift)])
            mag = self.op("Floor", [self.op("Add", [self.op("Abs", [v]), self.const(0.5)])])
            x = self.op("Mul", [mag, self.op("Sign", [v])])
        return self.saturate(x, out_bits)

    def x_unit(self, x: str, unit: XUnit) -> str:
        if unit.prelu:
            raise DlakitError(f"layer {self.p}: PReLU has no fallback emulation")
        if unit.alu is not None:
            op = np.clip(np.asarray(unit.alu_operand, np.float64) * 2.0**unit.alu_shift,
                         -(2.0**31), 2.0**31 - 1)  # fmt: skip
            kind = {"sum": "Add", "max": "Max", "min": "Min"}[unit.alu]
            x = self.op(kind, [x, self.const(op)])
        if unit.mul is not None:
            x = self.op("Mul", [x, self.const(unit.mul)])
        x = self.shift_right(x, unit.truncate, 32)
        return self.op("Relu", [x]) if unit.relu else x

    def chain(self, x: str, chain: SdpChain, ew: str | None) -> str:
        """The SDP chain on a float64 tensor of integers; returns the FP16 output as float."""
        for unit in (chain.x1, chain.x2):
            if unit is not None:
                x = self.x_unit(x, unit)
        if chain.y is not None:
            y = chain.y
            e = self.op("Cast", [ew], to=TensorProto.DOUBLE)
            e = self.op("Mul", [self.op("Sub", [e, self.const(y.cvt_offset)]),
                                self.const(y.cvt_scale)])  # fmt: skip
            e = self.shift_right(e, y.cvt_truncate, 32)
            x = self.saturate(self.op(y.alu.capitalize(), [x, e]), 32)
        c = chain.c
        x = self.op("Mul", [self.op("Sub", [x, self.const(c.offset)]), self.const(c.scale)])
        t17 = self.shift_right(x, c.shift, 17)
        return self.op("Cast", [self.op("Cast", [t17], to=TensorProto.FLOAT16)],
                       to=TensorProto.FLOAT)  # fmt: skip


def _accumulate(emit: _Emit, x: str, layer: QConv) -> str:
    """Exact integer convolution sums as float64: float32 convolutions whose sums stay below
    2^24 (the weights split in a high and a low part where one would not)."""
    w = np.asarray(layer.weight, dtype=np.int64)
    k = w.shape[0]
    xf = emit.op("Cast", [x], to=TensorProto.FLOAT)
    if layer.pads and any(layer.pads) and layer.pad_value:
        raise DlakitError(f"layer {layer.name}: a pad value has no fallback emulation")
    t, left, b, r = layer.pads
    attrs = dict(strides=list(layer.stride), dilations=list(layer.dilation),
                 group=layer.groups, pads=[t, left, b, r])  # fmt: skip

    def bound(part: np.ndarray) -> int:
        return 128 * int(np.abs(part).reshape(k, -1).sum(axis=1).max(initial=0))

    parts = [(w, 1.0)]
    if bound(w) >= 1 << 24:
        hi = np.floor(w / 16.0 + 0.5).astype(np.int64)
        parts = [(hi, 16.0), (w - 16 * hi, 1.0)]
        if max(bound(p) for p, _ in parts) >= 1 << 24:
            raise DlakitError(f"layer {layer.name}: sums too wide for the fallback emulation")
    acc = None
    for part, weight in parts:
        wname = emit.tensor(part.astype(np.float32))
        conv = emit.op("Cast", [emit.op("Conv", [xf, wname], **attrs)], to=TensorProto.DOUBLE)
        term = emit.op("Mul", [conv, emit.const(weight)]) if weight != 1.0 else conv
        acc = term if acc is None else emit.op("Add", [acc, term])
    assert acc is not None
    return acc


def _int8_layer(graph: QGraph, layer: QConv | QSdp, inits: list) -> list[onnx.NodeProto]:
    """An INT8 layer with an FP16 output converter, emulated exactly (module docstring)."""
    emit = _Emit(f"{layer.name}/", inits)
    x = layer.inputs[0]
    if isinstance(layer, QConv):
        src = graph.tensors[x].shape
        if len(src) == 2:
            shape = np.array([0, src[1], 1, 1], dtype=np.int64)
            x = emit.op("Reshape", [x, emit.tensor(shape)])
        acc = _accumulate(emit, x, layer)
    else:
        acc = emit.op("Cast", [x], to=TensorProto.DOUBLE)
    ew = layer.inputs[1] if layer.sdp.y is not None else None
    out = emit.chain(acc, layer.sdp, ew)
    shape = np.array([0, *graph.tensors[layer.outputs[0]].shape[1:]], dtype=np.int64)
    emit.nodes.append(helper.make_node("Reshape", [out, emit.tensor(shape)],
                                       [layer.outputs[0]], name=f"{layer.name}/out"))  # fmt: skip
    return emit.nodes


def writes_fp16(layer: QLayer) -> bool:
    """An INT8 layer whose SDP output converter writes FP16 (a network output)."""
    return (
        isinstance(layer, QConv | QSdp)
        and layer.precision == "int8"
        and layer.sdp.c.precision == "fp16"
    )


def _to_fp16(layer: QToFp16) -> list[onnx.NodeProto]:
    """Round to FP16 (ONNX ``Cast``: nearest even) and back: the FP16 value, held in FP32."""
    x, y, p = layer.inputs[0], layer.outputs[0], f"{layer.name}/"
    return [
        helper.make_node("Cast", [x], [p + "h"], to=TensorProto.FLOAT16, name=p + "to_fp16"),
        helper.make_node("Cast", [p + "h"], [y], to=TensorProto.FLOAT, name=p + "to_fp32"),
    ]


def fallback_segment_model(
    graph: QGraph, layers: list[QLayer], inputs: list[str], outputs: list[str], name: str
) -> onnx.ModelProto:
    """The ONNX model of ``layers`` (in order) reading ``inputs`` and producing ``outputs``."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    shared: dict[str, np.ndarray] = {}  # fallback constants, once each
    opset = OPSET
    for layer in layers:
        if isinstance(layer, QQuantize):
            nodes += _quantize(layer, inits)
        elif isinstance(layer, QToFp16):
            nodes += _to_fp16(layer)
        elif isinstance(layer, QDequantize):
            nodes += _dequantize(layer, inits)
        elif isinstance(layer, QReshape):
            nodes += _reshape(layer, inits)
        elif isinstance(layer, QConcat):
            nodes.append(helper.make_node("Concat", layer.inputs, layer.outputs, name=layer.name,
                                          axis=layer.axis))  # fmt: skip
        elif isinstance(layer, QFloat):
            nodes.append(layer.node)
            shared.update(layer.initializers)
            opset = max(opset, layer.opset)
        elif writes_fp16(layer):
            nodes += _int8_layer(graph, layer, inits)  # type: ignore[arg-type]
        else:
            raise DlakitError(f"layer {layer.name} ({type(layer).__name__}) cannot run on the host")
    inits += [numpy_helper.from_array(np.asarray(v), k) for k, v in shared.items()]

    def batch_shape(name: str) -> list:
        return ["N", *graph.tensors[name].shape[1:]]

    g = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info(n, _dtype(graph, n, layers), batch_shape(n))
            for n in inputs
        ],
        [
            helper.make_tensor_value_info(n, _dtype(graph, n, layers), batch_shape(n))
            for n in outputs
        ],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
