"""ONNX LRN lowered to CDP (QLrn): the INT8 reference is close to onnxruntime FP32."""

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dlakit.accuracy.compare import float_run
from dlakit.graph import load_model, save_model
from dlakit.lower import hwparams
from dlakit.lower.intref import IntReference, lrn, lut_linear
from dlakit.lower.lowering import quantize_model
from dlakit.lower.qgraph import QLrn

RNG = np.random.default_rng(11)


def lrn_model(path, size: int, alpha=1e-4, beta=0.75, bias=1.0):
    """Conv -> Relu -> LRN -> Conv on an 8x8 image with 16 channels."""
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        mk("Relu", ["c1"], ["r1"], name="relu1"),
        mk("LRN", ["r1"], ["n1"], name="lrn", size=size, alpha=alpha, beta=beta, bias=bias),
        mk("Conv", ["n1", "w2", "b2"], ["y"], name="conv2"),
    ]
    inits = {
        "w1": RNG.normal(scale=0.4, size=(16, 3, 3, 3)), "b1": RNG.normal(scale=0.1, size=16),
        "w2": RNG.normal(scale=0.3, size=(8, 16, 1, 1)), "b2": RNG.normal(scale=0.1, size=8),
    }  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "lrn_case",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, path)


def max_scales(loaded, x, names):
    values = float_run(loaded, x, extra=names)
    return {n: max(float(np.abs(v).max()), 1e-6) / 127.0 for n, v in values.items()}


def sqnr_db(ref, got):
    return 10 * math.log10(float(np.sum(ref**2)) / float(np.sum((ref - got) ** 2)))


@pytest.mark.parametrize("alpha,beta,bias", [(1e-4, 0.75, 1.0), (2e-2, 0.75, 2.0)])
def test_lrn_int8_close_to_fp32(tmp_path, alpha, beta, bias):
    path = lrn_model(tmp_path / "m.onnx", 5, alpha, beta, bias)
    x = RNG.normal(size=(4, 3, 8, 8)).astype(np.float32)
    loaded = load_model(path)
    names = ["x", "c1", "r1", "n1", "y"]
    graph = quantize_model(loaded, max_scales(loaded, x, names), "nv_small")
    assert any(isinstance(layer, QLrn) for layer in graph.layers)
    assert graph.count() == {"dla-int8": 3}  # conv1+relu, LRN on CDP, conv2: nothing on the host
    sess = ort.InferenceSession(str(path))
    want = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])
    got = IntReference(graph).run({"x": x}, keep={"n1"})
    assert sqnr_db(want, got["y"]) > 25
    # The LRN output alone, against float LRN of the INT8 reference's own input.
    ref_in = IntReference(graph).run({"x": x}, keep={"r1"})["r1"]
    t = torch.as_tensor(ref_in)
    sq = torch.nn.functional.pad(t * t, (0, 0, 0, 0, 2, 2))
    s = sum(sq[:, j : j + 16] for j in range(5))
    want_lrn = (t / (bias + alpha / 5 * s) ** beta).numpy()
    assert sqnr_db(want_lrn, got["n1"]) > 35


def py_lut(s: int, layer: QLrn) -> int:
    """The LO table of :func:`hwparams.lrn_params` by hand: every s is inside it or below it."""
    t = layer.lo
    if s <= t.start:
        return int(t.entries[0])
    i, f = divmod(s - t.start, 1 << t.index_select)
    d = (int(t.entries[i + 1]) - int(t.entries[i])) * (f << (16 - t.index_select))
    return int(t.entries[i]) + int(math.copysign((abs(d) + (1 << 15)) >> 16, d))


@pytest.mark.parametrize("size", [3, 5, 7, 9])
def test_lrn_matches_python_ints(size):
    params = hwparams.lrn_params(size, 0.5, 0.75, 1.0, 0.05, 0.01)
    layer = QLrn("lrn", ["a"], ["b"], **params)
    x = torch.as_tensor(RNG.integers(-128, 128, size=(1, 12, 3, 2)))
    x[0, :, 0, 0] = -128  # the largest square sums
    got = lrn(x, layer).numpy()
    half = size // 2
    for c, h, w in np.ndindex(12, 3, 2):
        s = sum(int(x[0, j, h, w]) ** 2 for j in range(max(0, c - half), min(12, c + half + 1)))
        y = py_lut(s, layer) * int(x[0, c, h, w]) * layer.out_scale
        r = int(math.copysign((abs(y) + (1 << (layer.out_shift - 1))) >> layer.out_shift, y))
        assert got[0, c, h, w] == max(-128, min(127, r)), (c, h, w)


def test_lut_error_within_stated_bound():
    s_in = 0.05
    p = hwparams.lrn_params(5, 0.5, 0.75, 1.0, s_in, 1.0)
    layer = QLrn("lrn", ["a"], ["b"], **p)
    s = np.arange(0, 5 * 128 * 128 + 1, 37)
    frac = 14  # f(0) = 1: the largest power of two keeping 2^frac in INT16
    a = 0.5 / 5 * s_in * s_in
    f = (1.0 + a * s) ** -0.75
    got, *_ = lut_linear(torch.as_tensor(s), layer.lo)
    h = 1 << layer.lo.index_select
    bound = 2.0 ** -(frac + 1) + h * h / 8 * 0.75 * 1.75 * a * a + 2.0**-frac
    assert np.max(np.abs(got.numpy() / 2.0**frac - f)) <= bound
