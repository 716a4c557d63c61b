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


def run_ort_int8(model: bytes, loaded: LoadedModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of the ORT-quantized model on ``x``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
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
