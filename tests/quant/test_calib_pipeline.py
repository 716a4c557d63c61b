"""Calibration of small hand-built models: observed ranges against numpy, scales-file checks,
bad input and the CLI."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dlakit.cli import main
from dlakit.errors import DlakitError
from dlakit.graph import load_model, save_model
from dlakit.quant.calibrate import calibrate
from dlakit.quant.formats import read_nvdla_table, read_trt_cache
from dlakit.quant.inputs import calibration_inputs
from dlakit.quant.scales import Scales

RNG = np.random.default_rng(7)
WEIGHT = RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)
GEMM_B = RNG.normal(size=(5, 64)).astype(np.float32)  # transB=1: (N, K)


def _model(path: Path, op: str = "Relu", width: int = 4) -> Path:
    """x[1,2,w,w] -> Mul(x, 3) -> Conv(4 out, pad 1) -> op -> Flatten -> Gemm(transB) -> y[1,5]."""
    nodes = [
        helper.make_node("Mul", ["x", "three"], ["scaled"], name="mul"),
        helper.make_node("Conv", ["scaled", "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["conv"], ["act"], name="act"),
        helper.make_node("Flatten", ["act"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "b"], ["y"], name="fc", transB=1),
    ]
    gemm_b = GEMM_B if width == 4 else RNG.normal(size=(5, 4 * width * width)).astype(np.float32)
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, width, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [
            numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three"),
            numpy_helper.from_array(WEIGHT, "w"),
            numpy_helper.from_array(gemm_b, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, path)


def _reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """The toy model in numpy (the oracle for observed ranges)."""
    scaled = x * np.float32(3.0)
    padded = np.pad(scaled, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    conv = np.einsum("nchwij,ocij->nohw", windows, WEIGHT)
    act = np.maximum(conv, 0)
    flat = act.reshape(len(x), -1)
    return {"x": x, "scaled": scaled, "conv": conv, "act": act, "flat": flat, "y": flat @ GEMM_B.T}


@pytest.fixture
def toy(tmp_path) -> Path:
    return _model(tmp_path / "toy.onnx")


@pytest.fixture
def samples(tmp_path) -> Path:
    data = RNG.normal(size=(12, 2, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=data)
    return tmp_path / "calib.npz"


def test_max_method_ranges_match_numpy(toy, samples):
    loaded = load_model(toy)
    run = calibrate(loaded, calibration_inputs(samples, None, loaded), "max")
    want = _reference(np.load(samples)["x"])
    scales = run.scales
    assert list(scales.activations) == ["x", "scaled", "conv", "act", "flat", "y"]
    for name, value in want.items():
        act = scales.activations[name]
        assert act.min == pytest.approx(float(value.min()), rel=1e-5)
        assert act.max == pytest.approx(float(value.max()), rel=1e-5)
        assert act.amax == pytest.approx(float(np.abs(value).max()), rel=1e-5)
        assert act.scale == act.amax / 127
    assert scales.num_inputs == 12 and run.passes == 1


def test_weights_are_per_output_channel(toy, samples):
    loaded = load_model(toy)
    scales = calibrate(loaded, calibration_inputs(samples, None, loaded), "max").scales
    assert scales.weights["w"].axis == 0
    np.testing.assert_allclose(scales.weights["w"].amax, np.abs(WEIGHT).max(axis=(1, 2, 3)))
    assert scales.weights["b"].axis == 0  # Gemm with transB=1 keeps outputs on rows
    np.testing.assert_allclose(scales.weights["b"].amax, np.abs(GEMM_B).max(axis=1))


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_stay_within_the_observed_range(toy, samples, method):
    loaded = load_model(toy)
    run = calibrate(loaded, calibration_inputs(samples, None, loaded), method)
    assert run.passes == 2
    for act in run.scales.activations.values():
        assert 0 < act.amax <= max(abs(act.min), abs(act.max)) * (1 + 1e-6)
    assert run.scales.percentile == (99.99 if method == "percentile" else None)


def test_percentile_method_matches_numpy_percentile(toy, samples):
    loaded = load_model(toy)
    run = calibrate(loaded, calibration_inputs(samples, None, loaded), "percentile", 90.0)
    want = _reference(np.load(samples)["x"])
    for name, value in want.items():
        magnitude = np.abs(value)
        bin_width = magnitude.max() / 2048
        # Few samples: the answer lies between the order statistics around the 90th percentile.
        low = np.percentile(magnitude, 90.0, method="lower") - bin_width
        high = np.percentile(magnitude, 90.0, method="higher") + bin_width
        assert low <= run.scales.activations[name].amax <= high


def test_scales_for_another_model_are_refused(toy, samples, tmp_path):
    loaded = load_model(toy)
    scales = calibrate(loaded, calibration_inputs(samples, None, loaded), "max").scales
    path = scales.save(tmp_path / "toy.scales.json")
    assert Scales.load(path).for_model(load_model(toy)) is not None
    other = load_model(_model(tmp_path / "other.onnx", op="Sigmoid"))
    with pytest.raises(DlakitError, match="made for model 'toy'"):
        Scales.load(path).for_model(other)
    wider = load_model(_model(tmp_path / "wide.onnx", width=6))
    with pytest.raises(DlakitError, match="not in it"):
        Scales.load(path).for_model(wider)


def test_nan_activation_names_the_tensor_and_the_input(tmp_path):
    path = _model(tmp_path / "log.onnx", op="Log")  # log of a negative conv output is NaN
    loaded = load_model(path)
    np.savez(tmp_path / "c.npz", x=RNG.normal(size=(3, 2, 4, 4)).astype(np.float32))
    with pytest.raises(
        DlakitError, match=r"tensor 'act' has NaN values on calibration input .*c\.npz\[0\]"
    ):
        calibrate(loaded, calibration_inputs(tmp_path / "c.npz", None, loaded), "max")


def test_infinite_input_is_refused(toy, tmp_path):
    data = RNG.normal(size=(3, 2, 4, 4)).astype(np.float32)
    data[1, 0, 0, 0] = np.inf
    np.savez(tmp_path / "inf.npz", x=data)
    loaded = load_model(toy)
    with pytest.raises(DlakitError, match=r"tensor 'x' has infinite values .*inf\.npz\[1\]"):
        calibrate(loaded, calibration_inputs(tmp_path / "inf.npz", None, loaded), "entropy")


def test_wrong_input_shape_is_an_error(toy, tmp_path):
    np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 3, 32, 32), np.float32))
    with pytest.raises(
        DlakitError, match=r"rgb\.npz: .*3x32x32 do not match the model input 2x4x4"
    ):
        calibration_inputs(tmp_path / "rgb.npz", None, load_model(toy))


def test_empty_folder_is_an_error(toy, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DlakitError, match="no image files"):
        calibration_inputs(tmp_path / "empty", None, load_model(toy))


def test_missing_data_is_an_error(toy, tmp_path):
    with pytest.raises(DlakitError, match=r"nowhere.* is neither a data set"):
        calibration_inputs(tmp_path / "nowhere", None, load_model(toy))


@pytest.mark.parametrize(("preset", "match"), [("mnist", "2 channels"), ("imagenet", "channels")])
def test_preprocess_that_does_not_fit_the_model_is_an_error(toy, tmp_path, preset, match):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    with pytest.raises(DlakitError, match=match):
        calibration_inputs(folder, preset, load_model(toy))


def test_images_without_preprocess_is_an_error(toy, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "a.png")
    with pytest.raises(DlakitError, match="preprocess"):
        calibration_inputs(folder, None, load_model(toy))


def test_cli_writes_all_three_files(toy, samples, tmp_path, capsys):
    out = tmp_path / "out" / "toy.scales.json"
    code = main(["calibrate", str(toy), "--data", str(samples), "--method", "max", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    scales = Scales.load(out)
    cache = read_trt_cache(tmp_path / "out" / "toy.trtcache")
    table = read_nvdla_table(tmp_path / "out" / "toy.nvdla.json")
    assert set(cache.scales) == set(table) == set(scales.activations)
    for name, act in scales.activations.items():
        assert cache.scales[name] == float(np.float32(act.scale))
        assert table[name] == act.scale
    assert "tensors calibrated" in capsys.readouterr().out


def test_cli_explicit_cache_paths(toy, samples, tmp_path):
    trt, nvdla = tmp_path / "a.cache", tmp_path / "b.json"
    out = tmp_path / "s.json"
    args = ["calibrate", str(toy), "-d", str(samples), "-o", str(out)]
    assert main([*args, "--trt-cache", str(trt), "--nvdla-table", str(nvdla)]) == 0
    assert trt.read_text().startswith("TRT-8600-EntropyCalibration2\n")
    assert json.loads(nvdla.read_text()).keys() == Scales.load(out).activations.keys()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "mse"], "--method 'mse'"),
        (["--method", "max", "--percentile", "99"], "--percentile applies"),
        (["--limit", "-1"], "--limit -1"),
    ],
)
def test_cli_bad_flags_exit_2(toy, samples, tmp_path, capsys, extra, message):
    args = ["calibrate", str(toy), "-d", str(samples), "-o", str(tmp_path / "s.json"), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_unreadable_image_names_the_file(toy, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    assert main(["calibrate", str(toy), "-d", str(folder), "-o", str(tmp_path / "s.json")]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_onnx_model_is_untouched(toy, samples):
    before = toy.read_bytes()
    loaded = load_model(toy)
    calibrate(loaded, calibration_inputs(samples, None, loaded), "max")
    assert toy.read_bytes() == before
    assert len(onnx.load(str(toy)).graph.output) == 1


@pytest.mark.parametrize("suffix", [".trtcache", ".nvdla.json"])
def test_cli_imports_a_cache_or_table_back_into_scales(toy, samples, tmp_path, suffix):
    out = tmp_path / "toy.scales.json"
    assert main(["calibrate", str(toy), "-d", str(samples), "-m", "max", "-o", str(out)]) == 0
    imported = tmp_path / "imported.scales.json"
    args = ["calibrate", str(toy), "--from-cache", str(tmp_path / f"toy{suffix}")]
    assert main([*args, "-o", str(imported)]) == 0
    original, back = Scales.load(out), Scales.load(imported).for_model(load_model(toy))
    assert back.method == "imported" and back.weights == original.weights
    for name, act in original.activations.items():
        want = float(np.float32(act.scale)) if suffix == ".trtcache" else act.scale
        assert back.activation_scale(name) == pytest.approx(want, rel=1e-15)


def test_cli_import_of_a_cache_missing_tensors_is_an_error(toy, tmp_path, capsys):
    cache = tmp_path / "partial.trtcache"
    cache.write_text("TRT-8600-EntropyCalibration2\nx: 3f800000\n")
    args = ["calibrate", str(toy), "--from-cache", str(cache), "-o", str(tmp_path / "s.json")]
    assert main(args) == 2
    assert "no scale for 5 of the 6 tensors" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["-d", "x.npz", "--from-cache", "c.trtcache"]])
def test_cli_needs_exactly_one_of_data_and_from_cache(toy, tmp_path, capsys, extra):
    assert main(["calibrate", str(toy), "-o", str(tmp_path / "s.json"), *extra]) == 2
    assert "--data" in capsys.readouterr().err


def test_limit_takes_the_first_inputs_of_an_npz(toy, samples):
    inputs = calibration_inputs(samples, None, load_model(toy), limit=5)
    assert len(inputs) == 5
    np.testing.assert_array_equal(inputs.array, np.load(samples)["x"][:5])
