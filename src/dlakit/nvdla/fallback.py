"""A fallback segment of a quantized graph as one ONNX model.

Fallback layers keep their ONNX node; the conversions at DLA boundaries become plain ONNX ops
that compute exactly what the integer reference does (``dlakit.lower.intref``):

* quantize: ``clip(sign(v) * floor(|v| + 0.5), -128, 127)`` with ``v = double(x) / scale``
  (round half away from zero, in float64), cast to INT8;
* dequantize: ``float(q) * float32(scale)``;
* a reshape that changes the feature layout: ``Reshape`` with the batch dimension kept;
* a concatenation whose inputs cannot share one surface: ``Concat``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dlakit.errors import DlakitError
from dlakit.lower.qgraph import (
    QConcat,
    QDequantize,
    QFloat,
    QGraph,
    QLayer,
    QQuantize,
    QReshape,
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
