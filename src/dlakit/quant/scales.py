"""The dlakit scales file: per-tensor activation ranges and per-channel weight ranges of one model.

This JSON file is what ``dlakit calibrate`` writes and what the later INT8 stages (integer
reference, NVDLA lowering, TensorRT cache export) read::

    {"format": "dlakit-scales", "version": 1,
     "model": {"name": "mnist-cnn", "graph_sha256": "<hex>"},
     "method": "entropy", "percentile": null, "num_inputs": 500, "data": "<source description>",
     "activations": {"<tensor>": {"amax": 2.5, "scale": 0.019685, "min": 0.0, "max": 3.1}},
     "weights": {"<initializer>": {"axis": 0, "amax": [0.31, 0.27, ...]}},
     "fp16_layers": ["<node>", ...],
     "bias_correction": {"<node>": {"input": "<tensor>", "mean": [0.41, -0.02, ...]}}}

Activations are symmetric per tensor: ``scale = amax / 127`` and ``min``/``max`` are the raw
extremes seen during calibration (``amax`` may be below ``max(|min|, |max|)`` when the method
clips). Weights are symmetric per output channel along ``axis``; an all-zero channel has amax 0.
``fp16_layers`` (optional, default empty) names the ONNX nodes to run in FP16, which the later
stages use unless given their own ``--fp16-layers``.
``graph_sha256`` fingerprints the canonical graph (see :func:`graph_sha256`), so a scales file
made for another model, or for other input shapes, is refused by :meth:`Scales.for_model`;
``weights_sha256`` (optional, written by ``calibrate --equalize``) ties the scales to the
equalized weights as well.

``bias_correction`` (optional, written by ``calibrate --bias-correction``) holds, per
convolution or Gemm node, the per-channel mean over the calibration inputs of the tensor it
reads (axis 1; a Gemm's per feature). The lowering subtracts ``(W_q - W) . mean`` from the
node's float bias, with ``W_q`` its own dequantized INT8 weights (Nagel et al., "Data-Free
Quantization", 2019, §4.2, empirical form). A file with the table is version 2, so a reader of
version 1 refuses it instead of silently leaving the biases uncorrected; a file without it is
version 1, as before.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dlakit.errors import DlakitError
from dlakit.files import atomic_write
from dlakit.graph.load import LoadedModel
from dlakit.quant.validate import check_range_value, check_scale, check_weight_amax, one_per_name

FORMAT = "dlakit-scales"
VERSION = 1
VERSION_BIAS_CORRECTION = 2  # the version of a file with a bias_correction table
READ_VERSIONS = (VERSION, VERSION_BIAS_CORRECTION)
QMAX = 127


@dataclass
class ActivationRange:
    """Symmetric per-tensor range: values in [-amax, amax] map to int8 [-127, 127]."""

    amax: float
    min: float
    max: float

    @property
    def scale(self) -> float:
        return self.amax / QMAX


@dataclass
class WeightRange:
    """Symmetric per-channel range of one weight initializer along ``axis``."""

    axis: int
    amax: list[float]

    @property
    def scales(self) -> np.ndarray:
        return np.asarray(self.amax, dtype=np.float64) / QMAX


@dataclass
class InputMean:
    """Per-channel mean of the tensor ``input`` that one convolution or Gemm reads."""

    input: str
    mean: list[float]


@dataclass
class Scales:
    """The contents of a scales file; see the module docstring for the JSON layout."""

    model_name: str
    graph_sha256: str
    method: str
    percentile: float | None
    num_inputs: int
    data: str
    activations: dict[str, ActivationRange] = field(default_factory=dict)
    weights: dict[str, WeightRange] = field(default_factory=dict)
    # ONNX nodes the DLA runs in FP16 (calibrate --fp16-layers); later verbs default to them.
    fp16_layers: list[str] = field(default_factory=list)
    # Set when the scales hold only for these weight values (calibrate --equalize).
    weights_sha256: str | None = None
    # Per conv/Gemm node: the means its INT8 bias correction needs (calibrate --bias-correction).
    bias_correction: dict[str, InputMean] = field(default_factory=dict)

    def activation_scale(self, name: str) -> float:
        """The INT8 scale (amax/127) of activation tensor ``name``."""
        if name not in self.activations:
            raise DlakitError(
                f"no activation scale for tensor '{name}' in the scales of {self.model_name}"
            )
        return self.activations[name].scale

    def for_model(self, loaded: LoadedModel) -> Scales:
        """Return self if these scales were made for ``loaded``'s graph, else raise DlakitError."""
        digest = graph_sha256(loaded)
        if digest == self.graph_sha256 and (
            self.weights_sha256 is None or self.weights_sha256 == weights_sha256(loaded)
        ):
            return self
        if digest == self.graph_sha256:
            raise DlakitError(
                f"the scales were made for the equalized weights of '{self.model_name}' "
                f"(weights {self.weights_sha256[:12]}), not for {loaded.path}'s: use the "
                "equalized model that calibrate --equalize wrote"
            )
        names = set(loaded.shapes)
        missing = sum(1 for name in self.activations if name not in names)
        raise DlakitError(
            f"the scales were made for model '{self.model_name}' (graph {self.graph_sha256[:12]}), "
            f"not for {loaded.path} (graph {digest[:12]}); {missing} of {len(self.activations)} "
            "calibrated tensors are not in it. Re-run dlakit calibrate on this model "
            "(same input shape)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION_BIAS_CORRECTION if self.bias_correction else VERSION,
            "model": {"name": self.model_name, "graph_sha256": self.graph_sha256}
            | ({"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}),
            "method": self.method,
            "percentile": self.percentile,
            "num_inputs": self.num_inputs,
            "data": self.data,
            "activations": {
                name: {"amax": r.amax, "scale": r.scale, "min": r.min, "max": r.max}
                for name, r in self.activations.items()
            },
            "weights": {
                name: {"axis": w.axis, "amax": list(w.amax)} for name, w in self.weights.items()
            },
            "fp16_layers": list(self.fp16_layers),
        } | (
            {
                "bias_correction": {
                    node: {"input": m.input, "mean": list(m.mean)}
                    for node, m in self.bias_correction.items()
                }
            }
            if self.bias_correction
            else {}
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Scales:
        """Read a scales file; DlakitError naming the file and the field if it is malformed."""
        path = Path(path)
        if not path.is_file():
            raise DlakitError(f"scales file not found: {path}")
        try:
            doc = json.loads(path.read_text(), object_pairs_hook=partial(one_per_name, where=path))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise DlakitError(f"{path} is not a dlakit scales file (not JSON: {exc})") from None
        return cls.from_json(doc, str(path))

    @classmethod
    def from_json(cls, doc: Any, where: str = "<scales>") -> Scales:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DlakitError(f'{where} is not a dlakit scales file (no "format": "{FORMAT}")')
        version = doc.get("version")
        if version not in READ_VERSIONS or isinstance(version, bool):
            raise DlakitError(
                f"{where}: scales file version {version!r}; this dlakit reads "
                f"{' and '.join(map(str, READ_VERSIONS))}"
            )
        if "bias_correction" in doc and version != VERSION_BIAS_CORRECTION:
            raise DlakitError(
                f"{where}: a bias_correction table needs version {VERSION_BIAS_CORRECTION}, "
                f"the file says {version}"
            )
        try:
            model = doc["model"]
            activations = {
                str(name): _activation(e, f"{where}: activation '{name}'")
                for name, e in doc["activations"].items()
            }
            weights = {
                str(name): _weight(e, f"{where}: weight '{name}'")
                for name, e in doc["weights"].items()
            }
            percentile = doc.get("percentile")
            if percentile is not None and not 0 < _plain_number(percentile) <= 100:
                raise DlakitError(f"{where}: percentile {percentile!r} is not in (0, 100]")
            num_inputs = doc["num_inputs"]
            if not isinstance(num_inputs, int) or isinstance(num_inputs, bool) or num_inputs < 0:
                raise DlakitError(f"{where}: num_inputs {num_inputs!r} is not a count")
            digest = model["graph_sha256"]
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise DlakitError(f"{where}: model.graph_sha256 {digest!r} is not 64 hex digits")
            return cls(
                model_name=_text(model["name"], f"{where}: model.name"),
                graph_sha256=digest,
                method=_text(doc["method"], f"{where}: method"),
                percentile=None if percentile is None else float(percentile),
                num_inputs=num_inputs,
                data=_text(doc.get("data", ""), f"{where}: data"),
                activations=activations,
                weights=weights,
                fp16_layers=[str(n) for n in doc.get("fp16_layers", [])],
                weights_sha256=model.get("weights_sha256"),
                bias_correction=_bias_correction(doc.get("bias_correction", {}), where),
            )
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
            raise DlakitError(
                f"{where}: malformed scales file ({type(exc).__name__}: {exc})"
            ) from None


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DlakitError(f"{where}: {value!r} is not a string")
    return value


def _plain_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _activation(entry: Any, where: str) -> ActivationRange:
    amax = check_scale(entry["amax"], f"{where}: amax")
    low = check_range_value(entry["min"], f"{where}: min")
    high = check_range_value(entry["max"], f"{where}: max")
    if low > high:
        raise DlakitError(f"{where}: min {low} is above max {high}")
    if "scale" in entry and not math.isclose(
        check_scale(entry["scale"], f"{where}: scale"), amax / QMAX, rel_tol=1e-6
    ):
        raise DlakitError(f"{where}: scale {entry['scale']!r} is not amax/{QMAX} ({amax / QMAX})")
    return ActivationRange(amax=amax, min=low, max=high)


def _weight(entry: Any, where: str) -> WeightRange:
    axis = entry["axis"]
    if not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < 8:
        raise DlakitError(f"{where}: axis {axis!r} is not a tensor axis")
    values = entry["amax"]
    if not isinstance(values, list) or not values:
        raise DlakitError(f"{where}: amax is not a list of per-channel values")
    return WeightRange(axis=axis, amax=[check_weight_amax(v, f"{where}: amax") for v in values])


def _bias_correction(table: Any, where: str) -> dict[str, InputMean]:
    if not isinstance(table, dict):
        raise DlakitError(f"{where}: bias_correction is not a table of nodes")
    out: dict[str, InputMean] = {}
    for node, entry in table.items():
        at = f"{where}: bias_correction '{node}'"
        if not isinstance(entry, dict) or set(entry) != {"input", "mean"}:
            raise DlakitError(f'{at}: needs exactly "input" and "mean"')
        values = entry["mean"]
        if not isinstance(values, list) or not values:
            raise DlakitError(f"{at}: mean is not a list of per-channel values")
        mean = [check_range_value(v, f"{at}: mean") for v in values]
        out[str(node)] = InputMean(input=_text(entry["input"], f"{at}: input"), mean=mean)
    return out


def weights_sha256(loaded: LoadedModel) -> str:
    """Fingerprint of the weight values: every initializer's name, type and bytes, by name."""
    digest = hashlib.sha256()
    for t in sorted(loaded.proto.graph.initializer, key=lambda t: t.name):
        digest.update(f"{t.name}:{t.data_type}\x1e".encode())
        digest.update(onnx.numpy_helper.to_array(t).tobytes())
    return digest.hexdigest()


def graph_sha256(loaded: LoadedModel) -> str:
    """Fingerprint of the canonical graph: every node (name, op, inputs, outputs) in order and
    every tensor's name and shape. Weight values are left out, so re-exported weights of the same
    architecture match; names or shapes that differ do not."""
    digest = hashlib.sha256()
    for node in loaded.proto.graph.node:
        digest.update(
            "\x1f".join([node.name, node.op_type, *node.input, "->", *node.output]).encode()
        )
        digest.update(b"\x1e")
    for name in sorted(loaded.shapes):
        digest.update(f"{name}:{'x'.join(map(str, loaded.shapes[name]))}\x1e".encode())
    return digest.hexdigest()
