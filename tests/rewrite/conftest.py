"""Helpers for the rewrite tests: build a small ONNX model, run one pass, compare with onnxruntime.

The oracle is onnxruntime on the original model. Passes run here without the driver's safety net
(``check=None``), so a wrong rewrite shows up as an error instead of being undone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.graph import load_model, save_model
from dlakit.rewrite import Refusal, Rewrite, rewrite_limits
from dlakit.rewrite.driver import rewrite
from dlakit.targets import load_target


@dataclass
class Applied:
    model: onnx.ModelProto
    rewrites: list[Rewrite]
    refusals: list[Refusal]
    error: float  # max |a - b| / max |a| against onnxruntime on the original

    @property
    def ops(self) -> Counter:
        return Counter(n.op_type for n in self.model.graph.node)

    def nodes(self, op_type: str) -> list[onnx.NodeProto]:
        return [n for n in self.model.graph.node if n.op_type == op_type]


def build(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    """A model from nodes, (name, shape) inputs, output names and (name, array) initializers."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def ort_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def rel_error(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    worst = 0.0
    for a, b in zip(reference, candidate, strict=True):
        assert a.shape == b.shape
        with np.errstate(invalid="ignore"):  # inf - inf where both are the same infinity
            diff = np.where(a == b, 0.0, np.abs(a - b))
        scale = max(float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)), 1e-30)
        worst = max(worst, float(np.max(diff)) / scale)
    return worst


@pytest.fixture
def apply_pass(tmp_path):
    """Run one pass class (Orin limits) on a model; returns :class:`Applied`."""

    def run(model: onnx.ModelProto, pass_cls, seed: int = 0) -> Applied:
        loaded = load_model(save_model(model, tmp_path / "m.onnx"))
        passes = [pass_cls(rewrite_limits(load_target("orin")))]
        fixed, rewrites, refusals = rewrite(loaded.proto, passes)
        rng = np.random.default_rng(seed)
        feeds = {
            n: rng.standard_normal(s).astype(np.float32) for n, s in loaded.input_shapes.items()
        }
        error = rel_error(ort_outputs(loaded.proto, feeds), ort_outputs(fixed, feeds))
        return Applied(fixed, rewrites, refusals, error)

    return run


@pytest.fixture
def build_model():
    """:func:`build` as a fixture (test modules cannot import conftest)."""
    return build
