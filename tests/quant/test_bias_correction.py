"""Empirical bias correction (calibrate --bias-correction): the lowering subtracts the expected
output error of each convolution's INT8 weights, (W_q - W) . E[x], from its float bias."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.accuracy.compare import float_run, int8_run
from dlakit.errors import DlakitError
from dlakit.graph import load_model, save_model
from dlakit.lower.lowering import quantize_model
from dlakit.quant.calibrate import calibrate
from dlakit.quant.inputs import ArrayInputs
from dlakit.quant.scales import Scales


def _biased_conv_model(path, groups: int = 1):
    """Conv 3x3 (16 -> 8 channels) -> Relu, weights with one large tap per channel so the
    small ones round coarsely."""
    rng = np.random.default_rng(3)
    cin, cout = 16, 8 if groups == 1 else 16
    w = rng.normal(0, 0.05, (cout, cin // groups, 3, 3))
    w[:, 0, 1, 1] = rng.choice([-1.0, 1.0], cout) * 2.5
    b = rng.normal(0, 0.1, cout)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1],
                            group=groups)  # fmt: skip
    graph = helper.make_graph(
        [conv],
        "biased",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 8, 8])],
        [numpy_helper.from_array(w.astype(np.float32), "w"),
         numpy_helper.from_array(b.astype(np.float32), "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return load_model(save_model(model, path))


def _biased_inputs(n: int, cin: int = 16) -> np.ndarray:
    """Inputs whose channels have means far from 0 (as post-ReLU activations do)."""
    rng = np.random.default_rng(5)
    offsets = rng.uniform(0.5, 2.0, (1, cin, 1, 1))
    return (offsets + rng.uniform(0, 0.5, (n, cin, 8, 8))).astype(np.float32)


def _calibrated(loaded, x, bias_correction: bool) -> Scales:
    inputs = ArrayInputs("arrays", "x", (1, 16, 8, 8), x, [str(i) for i in range(len(x))])
    return calibrate(loaded, inputs, "max", bias_correction=bias_correction).scales


@pytest.mark.parametrize("groups", [1, 16])
def test_corrected_output_mean_error_is_smaller(tmp_path, groups):
    loaded = _biased_conv_model(tmp_path / "m.onnx", groups)
    calib, x = _biased_inputs(48), _biased_inputs(96)[48:]
    fp32 = float_run(loaded, x)["y"]
    errors = {}
    for corrected in (False, True):
        scales = _calibrated(loaded, calib, corrected)
        assert bool(scales.bias_correction) == corrected
        graph = quantize_model(loaded, scales, "nv_full", output_precision="int8")
        out = int8_run(graph, "x", x)["y"]
        errors[corrected] = np.abs((out - fp32).mean(axis=(0, 2, 3)))  # per output channel
    assert errors[True].mean() < 0.5 * errors[False].mean(), errors


def test_means_recorded_and_file_round_trips(tmp_path):
    loaded = _biased_conv_model(tmp_path / "m.onnx")
    x = _biased_inputs(8)
    scales = _calibrated(loaded, x, True)
    entry = scales.bias_correction["conv"]
    assert entry.input == "x"
    np.testing.assert_allclose(entry.mean, x.mean(axis=(0, 2, 3)), rtol=1e-6)
    path = scales.save(tmp_path / "s.json")
    doc = json.loads(path.read_text())
    assert doc["version"] == 2
    assert Scales.load(path).bias_correction == scales.bias_correction
    plain = _calibrated(loaded, x, False).save(tmp_path / "plain.json")
    assert json.loads(plain.read_text())["version"] == 1  # old readers still read it


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ([1, 2], "bias_correction is not a table of nodes"),
        ({"conv": {"input": "x"}}, 'bias_correction \'conv\': needs exactly "input" and "mean"'),
        ({"conv": {"input": "x", "mean": []}}, "mean is not a list"),
        ({"conv": {"input": "x", "mean": [1.0, "a"]}}, "'a' is not a number"),
        ({"conv": {"input": 3, "mean": [1.0]}}, "input: 3 is not a string"),
    ],
)
def test_malformed_table_is_one_line(tmp_path, table, message):
    loaded = _biased_conv_model(tmp_path / "m.onnx")
    doc = _calibrated(loaded, _biased_inputs(4), True).to_json()
    doc["bias_correction"] = table
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DlakitError, match=message) as err:
        Scales.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_table_in_a_version_1_file_is_refused(tmp_path):
    loaded = _biased_conv_model(tmp_path / "m.onnx")
    doc = _calibrated(loaded, _biased_inputs(4), True).to_json()
    doc["version"] = 1
    with pytest.raises(DlakitError, match="needs version 2"):
        Scales.from_json(doc, "s.json")


def test_mean_count_that_does_not_fit_the_layer_is_named(tmp_path):
    loaded = _biased_conv_model(tmp_path / "m.onnx")
    scales = _calibrated(loaded, _biased_inputs(4), True)
    scales.bias_correction["conv"].mean = [0.0] * 3
    with pytest.raises(DlakitError, match="bias_correction 'conv': 3 input means"):
        quantize_model(loaded, scales, "nv_full")


def test_cli_writes_the_table_and_refuses_it_with_a_cache(tmp_path, capsys):
    from dlakit.cli import main

    model = tmp_path / "m.onnx"
    _biased_conv_model(model)
    samples = tmp_path / "x.npz"
    np.savez(samples, x=_biased_inputs(6))
    out = tmp_path / "m.scales.json"
    args = ["calibrate", str(model), "-d", str(samples), "-m", "max", "--bias-correction"]
    assert main([*args, "-o", str(out)]) == 0
    assert set(Scales.load(out).bias_correction) == {"conv"}
    capsys.readouterr()
    again = ["calibrate", str(model), "--from-cache", str(tmp_path / "m.trtcache")]
    assert main([*again, "--bias-correction", "-o", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--bias-correction needs calibration inputs" in err and "\n" not in err
