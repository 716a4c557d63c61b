"""QConv and lowered graphs: exact vs per-element Python ints, close to FP32 onnxruntime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dlakit.errors import DlakitError
from dlakit.graph import load_model, save_model
from dlakit.lower import hwparams, intref
from dlakit.lower.intref import IntReference
from dlakit.lower.lowering import quantize_model
from dlakit.lower.qgraph import (
    EwUnit,
    OutCvt,
    QConv,
    QFloat,
    QGraph,
    QPool,
    QReshape,
    QSdp,
    QTensor,
    SdpChain,
    XUnit,
)


def py_conv(x, w, stride, pads, dilation, groups, pad_value):
    """Per-element direct convolution with Python ints."""
    n, _, h, wd = x.shape
    k, cg, r, s = w.shape
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = stride, pads, dilation
    oh = (h + pt + pb - dh * (r - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (s - 1) - 1) // sw + 1
    out = np.zeros((n, k, oh, ow), dtype=np.int64)
    per_group = k // groups
    for b, kk, i, j in np.ndindex(n, k, oh, ow):
        g = kk // per_group
        acc = 0
        for cc in range(cg):
            for ri in range(r):
                for si in range(s):
                    y, q = i * sh + ri * dh - pt, j * sw + si * dw - pl
                    inside = 0 <= y < h and 0 <= q < wd
                    v = int(x[b, g * cg + cc, y, q]) if inside else pad_value
                    acc += v * int(w[kk, cc, ri, si])
        out[b, kk, i, j] = acc
    return out


@pytest.mark.parametrize(
    "cin,k,kernel,stride,pads,dilation,groups,pad_value",
    [
        (3, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, 0),
        (4, 4, (3, 3), (2, 2), (1, 0, 1, 2), (1, 1), 4, -7),
        (6, 4, (2, 3), (1, 2), (0, 2, 1, 0), (2, 1), 2, 3),
        (8, 5, (5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1, 0),
    ],
)  # fmt: skip
def test_qconv_exact_vs_python_ints(cin, k, kernel, stride, pads, dilation, groups, pad_value):
    rng = np.random.default_rng(cin * 10 + k)
    x = rng.integers(-128, 128, (2, cin, 6, 7))
    x[0, 0] = -128
    w = rng.integers(-127, 128, (k, cin // groups, *kernel)).astype(np.int8)
    chain = hwparams.conv_chain(np.full(k, 0.01 * 0.003), rng.normal(0, 0.05, k), 0.02, (0.0, 3.0))
    layer = QConv("c", ["x"], ["y"], weight=w, stride=stride, pads=pads, dilation=dilation,
                  groups=groups, pad_value=pad_value, sdp=chain)  # fmt: skip
    acc = py_conv(x, w, stride, pads, dilation, groups, pad_value)
    got = intref.conv_accumulate(torch.as_tensor(x), layer).numpy()
    assert np.array_equal(got, acc)
    out_shape = (1, k, *acc.shape[2:])
    graph = QGraph("t", "nv_full", [layer], {"x": QTensor("x", (1, cin, 6, 7), "int8", 1.0),
                   "y": QTensor("y", out_shape, "int8", 1.0)}, ["x"], ["y"])  # fmt: skip
    ref = IntReference(graph)
    values = {"x": torch.as_tensor(x).to(torch.int8)}
    ref._conv(layer, values)
    want = intref.sdp(intref.cacc_output(torch.as_tensor(acc), 0), chain).numpy()
    assert np.array_equal(values["y"].numpy(), want)


def test_wide_accumulator_stays_exact():
    """Sums above 2^24 (float64 path) stay exact; beyond 34 bits the layer is refused."""
    x = np.full((1, 600, 1, 1), -128)
    w = np.full((1, 600, 1, 1), 127, dtype=np.int8)
    layer = QConv("fc", ["x"], ["y"], weight=np.tile(w, (1, 1, 8, 8)))
    wide = np.full((1, 600, 8, 8), -128)
    got = intref.conv_accumulate(torch.as_tensor(wide), layer).item()
    assert got == -128 * 127 * 600 * 64
    layer.weight = np.full((1, 20000, 32, 32), 127, dtype=np.int8)
    with pytest.raises(DlakitError, match="34 bits"):
        intref.conv_accumulate(torch.as_tensor(x), layer)


# ---------------------------------------------------------------- lowered hand-made models


def _residual_model(path, rng):
    """Conv-BN-ReLU6 -> depthwise Conv-BN -> Add residual -> MaxPool -> GAP -> Flatten -> Gemm."""
    c = 8
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (c, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), "g"),
        numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.uniform(0.5, 2, c).astype(np.float32), "var"),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6, np.float32), "six"),
        numpy_helper.from_array(rng.normal(0, 0.3, (c, 1, 3, 3)).astype(np.float32), "wd"),
        numpy_helper.from_array(rng.normal(0, 0.1, c).astype(np.float32), "bd"),
        numpy_helper.from_array(rng.normal(0, 0.3, (10, c)).astype(np.float32), "wf"),
        numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "bf"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["n1"],
                         name="bn1"),
        helper.make_node("Clip", ["n1", "zero", "six"], ["r1"], name="relu6"),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["c2"], pads=[1, 1, 1, 1], group=c,
                         name="dw"),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool"),
        helper.make_node("Sigmoid", ["p"], ["sg"], name="sig"),
        helper.make_node("GlobalAveragePool", ["sg"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
    return save_model(model, path)


def _all_outputs(loaded, x):
    model = onnx.ModelProto.FromString(loaded.proto.SerializeToString())
    names = [o for n in model.graph.node for o in n.output]
    del model.graph.output[:]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"x": x[i : i + 1]}) for i in range(len(x))]
    return {n: np.concatenate([o[j] for o in outs]) for j, n in enumerate(names)}


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    rng = np.random.default_rng(3)
    loaded = load_model(_residual_model(tmp_path_factory.mktemp("m") / "res.onnx", rng))
    x = rng.normal(0, 1, (16, 3, 16, 16)).astype(np.float32)
    ref = _all_outputs(loaded, x)
    scales = {n: float(np.abs(v).max()) / 127 for n, v in ref.items()}
    scales["x"] = float(np.abs(x).max()) / 127
    return loaded, x, ref, scales


def test_nv_full_lowering_fuses_and_matches_fp32(residual):
    loaded, x, ref, scales = residual
    q = quantize_model(loaded, scales, "nv_full")
    convs = [layer for layer in q.layers if isinstance(layer, QConv)]
    assert [c.onnx_nodes for c in convs] == [["conv1", "bn1", "relu6"], ["dw", "add"], ["fc"]]
    assert convs[1].sdp.y is not None and convs[2].weight.shape == (10, 8, 1, 1)
    sig = next(layer for layer in q.layers if layer.onnx_nodes == ["sig"])
    assert isinstance(sig, QSdp) and sig.sdp.lut is not None  # Sigmoid: the SDP LUT, INT8
    assert any(isinstance(layer, QPool) and layer.method == "avg" for layer in q.layers)
    out = IntReference(q).run({"x": x}, keep={"a", "r1"})
    for name in ("r1", "a", "y"):
        err = np.abs(out[name] - ref[name]).max()
        assert err < 0.05 * np.abs(ref[name]).max(), (name, err)
    assert out["r1"].max() <= 6.0 + scales["r1"]


def test_nv_small_has_no_ew_or_lut(residual):
    loaded, x, ref, scales = residual
    q = quantize_model(loaded, scales, "nv_small")
    by_name = {layer.name: layer for layer in q.layers}
    assert isinstance(by_name["add"], QFloat) and by_name["add"].engine == "fallback"
    assert isinstance(by_name["sig"], QFloat) and by_name["sig"].precision == "fp32"
    assert all(not isinstance(layer, QSdp | QConv) or layer.sdp.y is None for layer in q.layers)
    out = IntReference(q).run({"x": x})
    assert np.abs(out["y"] - ref["y"]).max() < 0.05 * np.abs(ref["y"]).max()


def test_fp16_layers_and_bad_input(residual):
    loaded, x, _, scales = residual
    q = quantize_model(loaded, scales, "nv_full", fp16_layers=["conv1"])
    assert isinstance(q.layers[0], QFloat) and q.layers[0].precision == "fp16"
    with pytest.raises(DlakitError, match="unknown node"):
        quantize_model(loaded, scales, "nv_full", fp16_layers=["nope"])
    with pytest.raises(DlakitError, match="no entry for tensor"):
        quantize_model(loaded, {"x": 0.1}, "nv_full")
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DlakitError, match="NaN"):
        IntReference(quantize_model(loaded, scales, "nv_full")).run({"x": bad})


def test_standalone_sdp_ops_and_concat(tmp_path):
    """BatchNorm and ReLU not after a conv become SDP passes; Concat inputs are made at the
    concatenation's scale (no requantizing pass)."""
    rng = np.random.default_rng(11)
    f = np.float32
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.4, (4, 3, 3, 3)).astype(f), "w1"),
        numpy_helper.from_array(rng.uniform(0.5, 2, 4).astype(f), "g"),
        numpy_helper.from_array(rng.normal(0, 0.3, 4).astype(f), "beta"),
        numpy_helper.from_array(rng.normal(0, 0.3, 4).astype(f), "mean"),
        numpy_helper.from_array(rng.uniform(0.5, 2, 4).astype(f), "var"),
        numpy_helper.from_array(rng.normal(0, 0.4, (5, 3, 1, 1)).astype(f), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("MaxPool", ["c1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool1"),
        helper.make_node("BatchNormalization", ["p1", "g", "beta", "mean", "var"], ["n1"],
                         name="bn"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu"),
        helper.make_node("AveragePool", ["x"], ["p2"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool2"),
        helper.make_node("Conv", ["p2", "w2"], ["c2"], name="conv2"),
        helper.make_node("Concat", ["r1", "c2"], ["y"], axis=1, name="cat"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "sdp_ops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 9, 4, 4])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
    loaded = load_model(save_model(model, tmp_path / "sdp.onnx"))
    x = rng.normal(0, 1, (8, 3, 8, 8)).astype(np.float32)
    ref = _all_outputs(loaded, x)
    scales = {n: float(np.abs(v).max()) / 127 for n, v in ref.items()}
    scales["x"] = float(np.abs(x).max()) / 127
    q = quantize_model(loaded, scales, "nv_full")
    kinds = {layer.name: type(layer).__name__ for layer in q.layers}
    assert kinds["bn"] == "QSdp" and kinds["relu"] == "QSdp" and kinds["cat"] == "QConcat"
    assert not any(name.startswith("requant:") for name in kinds)
    s_cat = q.tensors["y"].scale
    assert q.tensors["r1"].scale == s_cat and q.tensors["c2"].scale == s_cat
    out = IntReference(q).run({"x": x})["y"]
    assert np.abs(out - ref["y"]).max() < 0.05 * np.abs(ref["y"]).max()


def test_output_buffers_are_reused_only_after_their_last_use(residual):
    """The compiled passes write into buffers that the reference frees after each tensor's last
    use (views included) and reuses across layers and runs: a tensor read again after a view
    of it (``ar``) and a skip connection (``a`` into ``c``'s Y) keep their values, every
    output equals a reference that allocates afresh (``fused=False``), on runs of different
    batch sizes, and later runs allocate no new buffer."""
    shape = (1, 4, 5, 6)

    def sdp(name, inputs, out, mul, y=False):
        ew = EwUnit(inputs[-1], 0, 1, 0, "sum") if y else None
        return QSdp(name, inputs, [out], sdp=SdpChain(XUnit(mul=np.array([mul]), truncate=1),
                                                     None, ew, c=OutCvt()))  # fmt: skip

    layers = [
        sdp("s0", ["x"], "a", 3),
        QReshape("r", ["a"], ["ar"], shape=shape),
        sdp("s1", ["a"], "b", -5),  # the last use of a, not of its view ar
        sdp("s2", ["b"], "c", 7),
        sdp("s3", ["c", "ar"], "d", 1, y=True),
        sdp("s4", ["d", "b"], "y", 1, y=True),
    ]
    tensors = {n: QTensor(n, shape, "int8", 1.0) for n in ["x", "a", "ar", "b", "c", "d", "y"]}
    q = QGraph("t", "nv_full", layers, tensors, ["x"], ["y"])
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (9, *shape[1:])).astype(np.float32)
    fast = IntReference(q)
    counts = []
    for batch in (x[:4], x[4:6], x[:4], x[5:9]):
        got = fast.run({"x": batch})["y"]
        assert np.array_equal(got, IntReference(q, fused=False).run({"x": batch})["y"])
        counts.append(len(fast._outputs))
    assert counts[0] >= 3 and counts[1:] == counts[:1] * 3
