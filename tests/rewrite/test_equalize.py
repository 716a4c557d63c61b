"""Cross-layer equalization (Nagel et al. 2019): function-preserving, ranges equalized, the
non-homogeneous links (Clip) left alone, and calibrate --equalize ties the scales to it."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.errors import DlakitError
from dlakit.graph import load_model, save_model
from dlakit.rewrite.equalize import equalize_model
from dlakit.rewrite.verify import TOLERANCE

RNG = np.random.default_rng(3)


def _model(path, link_ops):
    """conv1 -> links -> conv2 (grouped by 2) -> clip -> conv3, channel ranges over 2^8."""
    mk = helper.make_node
    nodes = [mk("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1])]
    t = "c1"
    for i, op in enumerate(link_ops):
        extra = {"BatchNormalization": ["g", "be", "m", "v"], "PRelu": ["slope"]}.get(op, [])
        inputs = [t, *extra]
        attrs = {"kernel_shape": [2, 2], "strides": [1, 1]} if op.endswith("Pool") else {}
        nodes.append(mk(op, inputs, [f"l{i}"], name=f"link{i}", **attrs))
        t = f"l{i}"
    nodes += [
        mk("Conv", [t, "w2", "b2"], ["c2"], name="conv2", group=2),
        mk("Clip", ["c2", "zero", "six"], ["r2"], name="relu6"),
        mk("Conv", ["r2", "w3"], ["y"], name="conv3"),
    ]
    w1 = RNG.normal(size=(8, 3, 3, 3)) * 2.0 ** RNG.uniform(-4, 4, (8, 1, 1, 1))
    inits = {
        "w1": w1, "b1": RNG.normal(size=8), "w2": RNG.normal(size=(6, 4, 1, 1)),
        "b2": RNG.normal(size=6), "w3": RNG.normal(size=(2, 6, 1, 1)), "zero": np.array(0.0),
        "six": np.array(6.0), "g": 1 + 0.1 * RNG.normal(size=8), "be": RNG.normal(size=8),
        "m": RNG.normal(size=8), "v": 1 + np.abs(RNG.normal(size=8)),
        "slope": 0.1 * np.abs(RNG.normal(size=(8, 1, 1))),
    }  # fmt: skip
    used = {n for node in nodes for n in node.input}
    g = helper.make_graph(
        nodes, "eq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items() if k in used],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return load_model(save_model(model, path))


@pytest.mark.parametrize(
    "links", [[], ["Relu"], ["BatchNormalization", "Relu", "MaxPool"], ["PRelu", "AveragePool"]]
)
def test_equalizes_ranges_and_keeps_the_function(tmp_path, links):
    loaded = _model(tmp_path / "m.onnx", links)
    x = RNG.normal(size=(4, 1, 3, 10, 10)).astype(np.float32).reshape(4, 3, 10, 10)
    eq, result = equalize_model(loaded, x)
    assert [(p.first, p.second) for p in result.pairs] == [("conv1", "conv2")]
    assert result.verification.ok and result.verification.max_rel_error <= TOLERANCE
    assert result.verification.runs == 4
    w1 = eq.initializers["w1"].astype(np.float64)
    w2 = eq.initializers["w2"].astype(np.float64)
    r1 = np.abs(w1).reshape(8, -1).max(axis=1)
    r2 = np.abs(w2).reshape(2, 3, 4).max(axis=1).reshape(8)  # input channel i of group i // 4
    assert np.allclose(r1, r2, rtol=1e-5)  # Nagel's condition: both ranges sqrt(r1 r2)
    assert result.pairs[0].spread_after < result.pairs[0].spread_before
    assert ("conv2", "relu6 (Clip) is not positively homogeneous") in result.skipped


def test_scales_of_equalized_weights_refuse_the_original(tmp_path):
    from dlakit.cli import main

    pytest.importorskip("dlakit.zoo")
    out = tmp_path / "f.scales.json"
    code = main(["calibrate", "fmnist-cnn", "-d", "fashion-mnist:train", "-n", "16",
                 "--equalize", "-o", str(out), "-q"])  # fmt: skip
    if code != 0:
        pytest.skip("fmnist-cnn or fashion-mnist unavailable")
    doc = json.loads(out.read_text())
    assert doc["model"]["weights_sha256"]
    equalized = tmp_path / "f.equalized.onnx"
    assert equalized.is_file()
    from dlakit.quant.scales import Scales
    from dlakit.zoo import resolve_model

    scales = Scales.load(out)
    scales.for_model(load_model(equalized))
    with pytest.raises(DlakitError, match="equalized"):
        scales.for_model(load_model(resolve_model("fmnist-cnn")))
    assert main(["accuracy", str(equalized), "-s", str(out), "-d", "fashion-mnist", "-n", "8",
                 "-p", "mnist", "-t", "nv_small", "-q"]) == 0  # fmt: skip
