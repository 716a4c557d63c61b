"""The peer: onnxruntime's own static INT8 quantization, measured beside the DLA reference.

QDQ format, symmetric INT8 activations (per tensor) and weights (per output channel), calibrated
by onnxruntime on the same calibration inputs that produced the DLA scales. The quantized model
runs in onnxruntime (its CPU kernels; not a DLA model).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel, save_model
from dlakit.graph.nodes import attrs
from dlakit.lower.qgraph import QConv, QGraph

METHODS = {"entropy": "Entropy", "max": "MinMax", "percentile": "Percentile"}


class _Reader:
    """onnxruntime CalibrationDataReader over an array of inputs, one model batch at a time."""

    def __init__(self, name: str, x: np.ndarray, batch: int) -> None:
        self._items = iter([{name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._items, None)


def quantize_ort(loaded: LoadedModel, calib: np.ndarray, method: str = "entropy") -> bytes:
    """The model quantized by ``onnxruntime.quantization.quantize_static`` (serialized)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in METHODS:
        raise DlakitError(f"ORT INT8 calibration {method!r}: choose one of {', '.join(METHODS)}")
    name = loaded.input_names[0]
    batch = loaded.input_shapes[name][0]
    with tempfile.TemporaryDirectory() as tmp:
        src = save_model(loaded.proto, Path(tmp) / "fp32.onnx")
        dst = Path(tmp) / "int8.onnx"
        quantize_static(
            str(src),
            str(dst),
            _Reader(name, np.ascontiguousarray(calib, dtype=np.float32), batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        return dst.read_bytes()


def run_ort_int8(
    model: bytes, loaded: LoadedModel, x: np.ndarray, kernels: bool = True
) -> dict[str, np.ndarray]:
    """Outputs of the ORT-quantized model on ``x``.

    ``kernels=True`` runs it as onnxruntime does by default (Q/DQ pairs fused into its INT8
    CPU kernels); ``False`` disables graph optimizations, so Q/DQ run as float emulation and
    only onnxruntime's quantization recipe (its calibration and scales) is measured.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    if not kernels:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = loaded.input_names[0]
    step = loaded.input_shapes[name][0]
    names = list(loaded.output_names)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(x), step):
        for n, value in zip(
            names, session.run(names, {name: x[start : start + step]}), strict=True
        ):
            parts[n].append(value)
    return {n: np.concatenate(v) for n, v in parts.items()}


def fake_quant(loaded: LoadedModel, graph: QGraph) -> tuple[bytes, dict[str, str]]:
    """The model with generic float fake-quantization at the QGraph's own INT8 points.

    Every tensor the QGraph holds in INT8 gets onnxruntime QuantizeLinear/DequantizeLinear with
    the same scale (zero point 0), and the weights of every INT8 convolution are rounded per
    output channel. The arithmetic is onnxruntime's float emulation, independent of the integer
    reference, so the two should agree up to the hardware's multiplier and rounding details.
    Returns the model and a map from each output to the fake-quantized tensor to read.
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.ModelProto.FromString(loaded.proto.SerializeToString())
    scales = {
        name: graph.tensors[q].scale for name, q in graph.quant_of.items() if graph.tensors[q].scale
    }
    int8_nodes = {n for layer in graph.layers if isinstance(layer, QConv) for n in layer.onnx_nodes}
    inits = {t.name: t for t in proto.graph.initializer}
    extra = []

    def qdq(name: str) -> list[onnx.NodeProto]:
        extra.append(numpy_helper.from_array(np.array(scales[name], np.float32), f"{name}__s"))
        extra.append(numpy_helper.from_array(np.array(0, np.int8), f"{name}__z"))
        return [
            helper.make_node("QuantizeLinear", [name, f"{name}__s", f"{name}__z"], [f"{name}__q"]),
            helper.make_node(
                "DequantizeLinear", [f"{name}__q", f"{name}__s", f"{name}__z"], [f"{name}__dq"]
            ),
        ]

    nodes = [n for name in loaded.input_names if name in scales for n in qdq(name)]
    for node in proto.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for i, name in enumerate(copy.input):
            if name in scales:
                copy.input[i] = f"{name}__dq"
        if node.name in int8_nodes and node.op_type in ("Conv", "Gemm", "MatMul"):
            axis = 1 if node.op_type == "MatMul" or (
                node.op_type == "Gemm" and not _attr(node, "transB", 0)
            ) else 0  # fmt: skip
            weight = inits[node.input[1]]
            weight.CopyFrom(numpy_helper.from_array(
                _round_per_channel(numpy_helper.to_array(weight), axis), weight.name
            ))  # fmt: skip
        nodes.append(copy)
        nodes.extend(n for out in node.output if out in scales for n in qdq(out))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    proto.graph.initializer.extend(extra)
    outputs = {name: f"{name}__dq" if name in scales else name for name in loaded.output_names}
    del proto.graph.output[:]
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in outputs.values())
    return proto.SerializeToString(), outputs


def _attr(node, name: str, default):
    return attrs(node).get(name, default)


def _round_per_channel(w: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(w.astype(np.float64), axis, 0)
    amax = np.abs(moved.reshape(len(moved), -1)).max(axis=1)
    scale = np.where(amax > 0, amax / 127, 1.0).reshape((-1,) + (1,) * (moved.ndim - 1))
    rounded = np.clip(np.round(moved / scale), -127, 127) * scale
    return np.moveaxis(rounded, 0, axis).astype(w.dtype)
