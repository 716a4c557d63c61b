"""FP32 vs DLA-INT8 on the same inputs: accuracy, agreement, cosine, SQNR, per layer.

The FP32 side is onnxruntime on the original model; the INT8 side is the integer reference
(:mod:`dlakit.lower.intref`) of the model lowered with its scales. Per-layer SQNR compares every
INT8 tensor the DLA writes with the FP32 tensor of the same name, so the first layer where
it drops is the one that loses accuracy. :func:`suggest_fp16` searches which layers to keep in
FP16 (as TensorRT's ``--layerPrecisions``) to recover the most agreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.lower.intref import IntReference, default_batch
from dlakit.lower.lowering import ScaleSource, quantize_model
from dlakit.lower.qgraph import QConv, QGraph

ACCURACY_SCHEMA = "dlakit.accuracy"
ACCURACY_SCHEMA_VERSION = 2  # 2: per-input records, confident agreement, output precision
CONFIDENT_PROB = 0.5  # FP32's top softmax probability from which an input counts as confident

# ---------------------------------------------------------------- metrics


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose label is among the ``k`` largest logits."""
    logits = logits.reshape(len(logits), -1)
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels).reshape(-1, 1), axis=1)))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows where both give the same top-1 class."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))


def softmax_top(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the top-1 class and its softmax probability (rows already summing to one, as a
    model ending in Softmax gives, are taken as probabilities)."""
    z = logits.reshape(len(logits), -1).astype(np.float64)
    probs = z if np.all(z >= 0) and np.allclose(z.sum(axis=1), 1.0, atol=1e-3) else None
    if probs is None:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
    top = probs.argmax(axis=1)
    return top, probs[np.arange(len(z)), top]


def confident_agreement(
    ref: np.ndarray, test: np.ndarray, prob: float = CONFIDENT_PROB
) -> tuple[float | None, int]:
    """Top-1 agreement on the rows where ``ref``'s top probability is at least ``prob``, and
    how many rows those are (None when there are none)."""
    top, p = softmax_top(ref)
    mask = p >= prob
    if not mask.any():
        return None, 0
    same = top == test.reshape(len(test), -1).argmax(axis=1)
    return float(same[mask].mean()), int(mask.sum())


def per_input_sqnr(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """SQNR in dB of each row (inf where equal)."""
    return np.array([sqnr_db(ref[i : i + 1], test[i : i + 1]) for i in range(len(ref))])


def cosine(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean over samples of the cosine similarity of the flattened tensors."""
    r = ref.reshape(len(ref), -1).astype(np.float64)
    t = test.reshape(len(test), -1).astype(np.float64)
    num = np.sum(r * t, axis=1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(t, axis=1)
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num == 0, 1.0, 0.0))
    return float(np.mean(cos))


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB over the whole batch (inf when equal)."""
    ref = ref.astype(np.float64)
    noise = float(np.sum((ref - test.astype(np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


# ---------------------------------------------------------------- running both sides


def float_run(
    loaded: LoadedModel, x: np.ndarray, extra: Sequence[str] = (), batch: int = 1
) -> dict[str, np.ndarray]:
    """onnxruntime FP32 outputs (plus the ``extra`` intermediate tensors) for inputs ``x``."""
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(loaded.proto.SerializeToString())
    names = list(loaded.output_names)
    for name in extra:
        if name not in names:
            names.append(name)
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    inp = loaded.input_names[0]
    step = loaded.input_shapes[inp][0]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(x), step):
        outs = session.run(names, {inp: x[start : start + step]})
        for name, value in zip(names, outs, strict=True):
            chunks[name].append(value)
    return {n: np.concatenate(v) for n, v in chunks.items()}


def int8_run(
    graph: QGraph,
    input_name: str,
    x: np.ndarray,
    keep: set[str] | None = None,
    batch: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Integer-reference outputs (dequantized) in batches of ``batch`` (None: what fits the
    memory budget); ``progress`` gets the number of inputs done after each batch."""
    ref = IntReference(graph)
    batch = batch or default_batch(graph)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), batch):
        out = ref.run({input_name: x[start : start + batch]}, keep=keep)
        for name, value in out.items():
            parts.setdefault(name, []).append(value)
        if progress is not None:
            progress(min(start + batch, len(x)))
    return {n: np.concatenate(v) for n, v in parts.items()}


# ---------------------------------------------------------------- the report


@dataclass
class OutputStats:
    name: str
    cosine: float
    sqnr_db: float


@dataclass
class LayerStats:
    tensor: str  # ONNX tensor name
    layer: str  # QGraph layer that writes it
    kind: str
    sqnr_db: float


@dataclass
class InputRecord:
    """One evaluation input: FP32's top-1 class and its softmax probability, the DLA's top-1,
    the label (None without one) and the SQNR of this input's first output."""

    index: int
    name: str
    label: int | None
    fp32_top1: int
    fp32_prob: float
    dla_top1: int
    sqnr_db: float


@dataclass
class AccuracyReport:
    """FP32 vs INT8 on ``count`` inputs; accuracy fields are None without labels.

    ``agreement_confident`` is the top-1 agreement on the ``confident_count`` inputs where
    FP32's top softmax probability is at least ``confident_prob``: a hard input (FP32 itself
    unsure between classes) says little about the DLA.
    """

    model: str
    target: str
    count: int
    agreement: float
    outputs: list[OutputStats]
    fp32_top1: float | None = None
    int8_top1: float | None = None
    fp32_top5: float | None = None
    int8_top5: float | None = None
    layers: list[LayerStats] = field(default_factory=list)
    engines: dict[str, int] = field(default_factory=dict)
    output_precision: str = "int8"
    confident_prob: float = CONFIDENT_PROB
    confident_count: int = 0
    agreement_confident: float | None = None
    inputs: list[InputRecord] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "schema": ACCURACY_SCHEMA,
            "schema_version": ACCURACY_SCHEMA_VERSION,
            "model": self.model,
            "target": self.target,
            "output_precision": self.output_precision,
            "count": self.count,
            "agreement": self.agreement,
            "confident_prob": self.confident_prob,
            "confident_count": self.confident_count,
            "agreement_confident": self.agreement_confident,
            "fp32_top1": self.fp32_top1,
            "int8_top1": self.int8_top1,
            "fp32_top5": self.fp32_top5,
            "int8_top5": self.int8_top5,
            "outputs": [vars(o) for o in self.outputs],
            "layers": [vars(s) for s in self.layers],
            "engines": self.engines,
            "inputs": [vars(r) for r in self.inputs],
        }


def per_layer_tensors(graph: QGraph, loaded: LoadedModel) -> dict[str, tuple[str, str]]:
    """ONNX tensor -> (layer, kind) for every INT8 tensor a DLA layer writes."""
    known = set(loaded.shapes)
    found = {}
    for layer in graph.layers:
        for out in layer.outputs:
            if out in known and graph.tensors[out].precision == "int8" and layer.engine == "dla":
                found[out] = (layer.name, type(layer).__name__)
    return found


def check_finite(x: np.ndarray) -> None:
    if not np.all(np.isfinite(x)):
        raise DlakitError("the input data holds NaN or infinite values")


def evaluate(
    loaded: LoadedModel,
    graph: QGraph,
    x: np.ndarray,
    labels: np.ndarray | None = None,
    per_layer: int = 0,
    fp32: dict[str, np.ndarray] | None = None,
    names: Sequence[str] | None = None,
    batch: int | None = None,
    progress: Callable[[int], None] | None = None,
    int8: dict[str, np.ndarray] | None = None,
) -> AccuracyReport:
    """Compare FP32 and INT8 on ``x``; ``per_layer`` > 0 adds per-layer SQNR on that many inputs;
    ``names`` name the inputs in the per-input records (default: their index). ``fp32`` and
    ``int8`` are both sides' outputs where already computed (by shards, dlakit.scale).

    The integer reference runs ``batch`` inputs at a time (None: what fits the memory budget)
    and reports each batch to ``progress``."""
    check_finite(x)
    inp = loaded.input_names[0]
    fp32 = fp32 if fp32 is not None else float_run(loaded, x)
    if int8 is None:
        int8 = int8_run(graph, inp, x, batch=batch, progress=progress)
    first = loaded.output_names[0]
    outputs = [
        OutputStats(name, cosine(fp32[name], int8[name]), sqnr_db(fp32[name], int8[name]))
        for name in loaded.output_names
    ]
    report = AccuracyReport(
        model=graph.model_name,
        target=graph.target,
        count=len(x),
        agreement=agreement(fp32[first], int8[first]),
        outputs=outputs,
        engines=graph.count(),
        output_precision=graph.tensors[first].precision if first in graph.tensors else "int8",
    )
    report.agreement_confident, report.confident_count = confident_agreement(
        fp32[first], int8[first]
    )
    report.inputs = input_records(fp32[first], int8[first], labels, names)
    if labels is not None:
        classes = fp32[first].reshape(len(x), -1).shape[1]
        report.fp32_top1 = topk_accuracy(fp32[first], labels, 1)
        report.int8_top1 = topk_accuracy(int8[first], labels, 1)
        if classes > 5:
            report.fp32_top5 = topk_accuracy(fp32[first], labels, 5)
            report.int8_top5 = topk_accuracy(int8[first], labels, 5)
    if per_layer:
        report.layers = layer_sqnr(loaded, graph, x[:per_layer])
    return report


def input_records(
    ref: np.ndarray,
    test: np.ndarray,
    labels: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> list[InputRecord]:
    """One :class:`InputRecord` per row of the first output."""
    top, prob = softmax_top(ref)
    dla = test.reshape(len(test), -1).argmax(axis=1)
    sq = per_input_sqnr(ref, test)
    return [
        InputRecord(
            index=i,
            name=str(names[i]) if names is not None else str(i),
            label=None if labels is None else int(labels[i]),
            fp32_top1=int(top[i]),
            fp32_prob=float(prob[i]),
            dla_top1=int(dla[i]),
            sqnr_db=float(sq[i]),
        )
        for i in range(len(ref))
    ]


def layer_sqnr(loaded: LoadedModel, graph: QGraph, x: np.ndarray) -> list[LayerStats]:
    """SQNR of every INT8 tensor the DLA writes, in execution order."""
    tensors = per_layer_tensors(graph, loaded)
    names = list(tensors)
    ref = float_run(loaded, x, extra=names)
    got = int8_run(graph, loaded.input_names[0], x, keep=set(names), batch=16)
    return [
        LayerStats(name, tensors[name][0], tensors[name][1], sqnr_db(ref[name], got[name]))
        for name in names
    ]


# ---------------------------------------------------------------- FP16 fallback suggestions


@dataclass
class Suggestion:
    """Keeping ``layers`` (ONNX node names) in FP16 gives ``agreement`` and output ``sqnr_db``."""

    layers: list[str]
    agreement: float
    sqnr_db: float


def suggest_fp16(
    loaded: LoadedModel,
    scales: ScaleSource,
    target: str,
    x: np.ndarray,
    max_layers: int = 3,
    candidates: int = 6,
    fp16_layers: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> list[Suggestion]:
    """Greedy search: each step tries the ``candidates`` INT8 convolutions with the largest
    per-layer SQNR drop in FP16 and keeps the one that raises output SQNR the most."""
    inp = loaded.input_names[0]
    fp32 = float_run(loaded, x)
    first = loaded.output_names[0]
    chosen = list(fp16_layers)
    steps: list[Suggestion] = []
    for _ in range(max_layers):
        graph = quantize_model(loaded, scales, target, fp16_layers=chosen)
        ranked = _ranked_convs(loaded, graph, x)[:candidates]
        if not ranked:
            break
        best: Suggestion | None = None
        for nodes in ranked:
            trial = quantize_model(loaded, scales, target, fp16_layers=[*chosen, *nodes])
            out = int8_run(trial, inp, x)[first]
            result = Suggestion([*chosen, *nodes], agreement(fp32[first], out),
                                sqnr_db(fp32[first], out))  # fmt: skip
            if progress:
                progress(f"{'+'.join(nodes)}: SQNR {result.sqnr_db:.1f} dB")
            if best is None or result.sqnr_db > best.sqnr_db:
                best = result
        assert best is not None
        chosen = best.layers
        steps.append(best)
    return steps


def _ranked_convs(loaded: LoadedModel, graph: QGraph, x: np.ndarray) -> list[list[str]]:
    """INT8 convolutions ordered by how much SQNR they lose relative to their input."""
    stats = {s.tensor: s.sqnr_db for s in layer_sqnr(loaded, graph, x)}
    drops = []
    for layer in graph.layers:
        if not isinstance(layer, QConv) or layer.outputs[0] not in stats:
            continue
        src = layer.inputs[0].removesuffix("::int8")
        before = stats.get(src, 60.0)
        drops.append((before - stats[layer.outputs[0]], layer.onnx_nodes))
    drops.sort(key=lambda d: -d[0])
    return [nodes for _, nodes in drops]
