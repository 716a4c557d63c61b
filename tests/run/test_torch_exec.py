"""The torch runner of fallback segments: an element-wise graph (a segment's input
quantization) runs as one compiled pass or, in torch, in cache-sized pieces, and gives
onnxruntime's bytes, the same as in one piece; a graph with a per-channel constant runs
whole."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dlakit.run import torch_exec
from dlakit.run.torch_exec import TorchGraph

SHAPE = (2, 3, 250, 250)  # 375k elements: more than one piece


def _quantize_model(scale: np.ndarray) -> onnx.ModelProto:
    """x -> int8(clip(sign(v) * floor(|v| + 0.5), -128, 127)), v = float64(x) / scale: round
    half away from zero, as the lowering quantizes a segment's input."""
    consts = [
        numpy_helper.from_array(scale.astype(np.float64), "scale"),
        numpy_helper.from_array(np.array(0.5), "half"),
        numpy_helper.from_array(np.array(-128.0), "lo"),
        numpy_helper.from_array(np.array(127.0), "hi"),
    ]
    nodes = [
        helper.make_node("Cast", ["x"], ["x64"], to=TensorProto.DOUBLE),
        helper.make_node("Div", ["x64", "scale"], ["v"]),
        helper.make_node("Abs", ["v"], ["abs"]),
        helper.make_node("Add", ["abs", "half"], ["abs_h"]),
        helper.make_node("Floor", ["abs_h"], ["mag"]),
        helper.make_node("Sign", ["v"], ["sign"]),
        helper.make_node("Mul", ["mag", "sign"], ["round"]),
        helper.make_node("Clip", ["round", "lo", "hi"], ["sat"]),
        helper.make_node("Cast", ["sat"], ["y"], to=TensorProto.INT8),
    ]
    graph = helper.make_graph(
        nodes,
        "quantize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.INT8, SHAPE)],
        consts,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _input() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 4.0, SHAPE).astype(np.float32)
    # ties (k + 0.5) * scale and values past the INT8 range
    x.reshape(-1)[:4000] = (rng.integers(-140, 140, 4000) + 0.5).astype(np.float32) * 0.25
    return x


def test_elementwise_graph_runs_in_pieces_with_onnxruntimes_bytes(monkeypatch):
    model = _quantize_model(np.array(0.25))
    x = _input()
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    graph = TorchGraph(model)
    assert graph.elementwise
    np.testing.assert_array_equal(graph.run({"x": torch.from_numpy(x)})["y"].numpy(), expected)
    graph.program = None  # the compiled pass (test_elementwise) gave those bytes; now torch's
    pieces = []
    run_piece = graph._run
    monkeypatch.setattr(graph, "_run", lambda feeds: pieces.append(1) or run_piece(feeds))
    y = graph.run({"x": torch.from_numpy(x)})["y"]
    assert len(pieces) == -(-x.size // torch_exec.CHUNK) > 1
    assert y.shape == SHAPE and y.dtype == torch.int8
    np.testing.assert_array_equal(y.numpy(), expected)
    monkeypatch.setattr(torch_exec, "CHUNK", x.size)  # one piece: the same bytes
    assert torch.equal(graph.run({"x": torch.from_numpy(x)})["y"], y)


@pytest.mark.parametrize("scale", [np.full((1, 3, 1, 1), 0.25), np.ones((1, 1, 1, 1, 1))])
def test_graph_with_a_non_scalar_or_wider_constant_runs_whole(scale, monkeypatch):
    model = _quantize_model(scale)
    graph = TorchGraph(model)
    pieces = []
    monkeypatch.setattr(graph, "_in_pieces", lambda *a: pieces.append(1))
    out = graph.run({"x": torch.from_numpy(_input())})["y"]
    assert not pieces
    assert out.shape == torch.broadcast_shapes(SHAPE, scale.shape)
