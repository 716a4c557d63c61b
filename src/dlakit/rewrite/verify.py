"""Check a rewritten model against the original with onnxruntime.

The metric, per graph output: ``max |a - b| / max(max |a|, tiny)``, where ``a`` is the original
model's output, ``b`` the rewritten model's, both maxima are taken over every element of every
verification input, and ``tiny`` is the smallest normal float32 (so an all-zero output compares
absolutely). The model passes when every output stays within ``TOLERANCE`` (1e-5). The error is
relative to the output's range, so a near-zero element is not blown up; and it is pooled over the
inputs, so an input on which the output is nearly all zero (a text detector shown no text, with
a largest probability of 1e-3) is judged on the scale the output really has.
Both models run with onnxruntime's graph optimizations off, so each runs as written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

TOLERANCE = 1e-5
_TINY = float(np.finfo(np.float32).tiny)


@dataclass
class VerifyInputs:
    """Feeds to run both models on, and where they came from (said in every report)."""

    feeds: list[dict[str, np.ndarray]]
    source: str


@dataclass(frozen=True)
class Verification:
    max_rel_error: float
    worst_output: str
    runs: int
    source: str

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= TOLERANCE


def random_inputs(
    model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], seed: int = 0
) -> VerifyInputs:
    """Seeded standard-normal feeds for every graph input (integers: small non-negative values)."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feed = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type or 1)
        shape = shapes[vi.name]
        if np.issubdtype(dtype, np.floating):
            feed[vi.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feed[vi.name] = rng.integers(0, 4, shape).astype(dtype)
    return VerifyInputs([feed], f"random normal (seed {seed})")


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def run_model(model: onnx.ModelProto, inputs: VerifyInputs) -> list[dict[str, np.ndarray]]:
    session = _session(model)
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, feed), strict=True)) for feed in inputs.feeds]


def compare(
    reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]], source: str
) -> Verification:
    """The worst relative error over the outputs, each over all runs (module docstring)."""
    diffs: dict[str, float] = {}
    scales: dict[str, float] = {}
    for ref_run, cand_run in zip(reference, candidate, strict=True):
        for name, ref in ref_run.items():
            a = np.asarray(ref, np.float64)
            b = np.asarray(cand_run[name], np.float64)
            if a.shape != b.shape:
                return Verification(
                    float("inf"), f"{name} (shape {b.shape} != {a.shape})", 0, source
                )
            if a.size == 0:
                continue
            finite = np.abs(a[np.isfinite(a)])
            same = (a == b) | (np.isnan(a) & np.isnan(b))  # identical infinities and NaNs agree
            diff = np.where(same, 0.0, np.abs(a - b))
            worst = float(np.max(diff)) if np.all(np.isfinite(diff)) else float("inf")
            diffs[name] = max(diffs.get(name, 0.0), worst)
            scales[name] = max(scales.get(name, 0.0), float(finite.max()) if finite.size else 0.0)
    errors = {name: diffs[name] / max(scales[name], _TINY) for name in diffs}
    worst_name = max(errors, key=lambda n: errors[n], default="")
    return Verification(errors.get(worst_name, 0.0), worst_name, len(reference), source)
