"""dlakit compile / inspect / run end to end on a zoo model, and bad input."""

import json

import numpy as np
import pytest
from nvdla_cases import conv_model
from onnx import helper

from dlakit.accuracy.compare import agreement, float_run
from dlakit.cli import main
from dlakit.errors import DlakitError
from dlakit.graph import load_model
from dlakit.nvdla import read_artifact


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory):
    """fmnist-cnn, max scales from 8 real images, compiled for nv_small."""
    from dlakit.zoo import resolve_model

    try:
        resolve_model("fmnist-cnn")
    except DlakitError as exc:
        pytest.skip(f"fmnist-cnn unavailable: {exc}")
    d = tmp_path_factory.mktemp("fmnist")
    scales = d / "s.json"
    assert main(["calibrate", "fmnist-cnn", "-d", "fashion-mnist", "-n", "8", "-m", "max",
                 "-o", str(scales)]) == 0  # fmt: skip
    out = d / "fmnist.dla"
    assert main(["compile", "fmnist-cnn", "-t", "nv_small", "-s", str(scales), "-o", str(out)]) == 0
    return d, scales, out


def test_compile_inspect_run_compare(fmnist, capsys):
    d, _, art = fmnist
    capsys.readouterr()
    assert main(["inspect", str(art)]) == 0
    text = capsys.readouterr().out
    assert "nv_small" in text and "conv" in text and "peak" in text
    comp = read_artifact(art)
    first = comp.segments[1].ops[0].name
    assert main(["inspect", str(art), "--registers", first]) == 0
    regs = capsys.readouterr().out.split()
    assert regs[-1].startswith("CDMA.D_OP_ENABLE=0x00000001")  # the data reader starts last
    out = d / "y.npz"
    rc = main(["run", str(art), "-d", "fashion-mnist", "-n", "6", "-o", str(out),
               "--compare", "fmnist-cnn"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "top-1 agreement with FP32" in text
    y = np.load(out)[comp.outputs[0]]
    # The FP32 model on the same six images: INT8 must agree on most of them.
    from dlakit.data import load_inputs
    from dlakit.zoo import resolve_model

    loaded = load_model(resolve_model("fmnist-cnn"))
    x = load_inputs("fashion-mnist", "fmnist", loaded.input_shapes[loaded.input_names[0]], 6)
    ref = float_run(loaded, x)[loaded.output_names[0]]
    assert y.shape == ref.shape and agreement(ref, y) >= 5 / 6


def test_missing_scale_is_named(fmnist, tmp_path, capsys):
    _, scales, _ = fmnist
    doc = json.loads(scales.read_text())
    dropped = sorted(doc["activations"])[-1]
    del doc["activations"][dropped]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["compile", "fmnist-cnn", "-t", "nv_small", "-s", str(bad), "-o",
                 str(tmp_path / "x.dla")]) == 2  # fmt: skip
    assert "scales" in capsys.readouterr().err


def _calibrated(tmp_path, path, shape):
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).normal(size=shape).astype(np.float32))
    scales = tmp_path / "s.json"
    assert main(["calibrate", str(path), "-d", str(tmp_path / "c.npz"), "-m", "max",
                 "-o", str(scales)]) == 0  # fmt: skip
    return scales


def test_model_with_nothing_for_the_dla(tmp_path, capsys):
    path = conv_model(tmp_path / "sig.onnx", [helper.make_node("Sigmoid", ["x"], ["y"], name="s")],
                      {}, (1, 4, 4, 4), "y", (1, 4, 4, 4))  # fmt: skip
    scales = _calibrated(tmp_path, path, (2, 4, 4, 4))
    rc = main(["compile", str(path), "-t", "nv_small", "-s", str(scales), "-o",
               str(tmp_path / "x.dla")])  # fmt: skip
    assert rc == 2 and "no layer runs on the nv_small DLA" in capsys.readouterr().err


def test_layer_too_big_for_the_target(tmp_path, capsys):
    w = np.random.default_rng(1).normal(size=(8, 4096, 3, 3))
    path = conv_model(tmp_path / "wide.onnx",
                      [helper.make_node("Conv", ["x", "w"], ["y"], name="wide", pads=[1, 1, 1, 1])],
                      {"w": w}, (1, 4096, 2, 64), "y", (1, 8, 2, 64))  # fmt: skip
    scales = _calibrated(tmp_path, path, (1, 4096, 2, 64))
    rc = main(["compile", str(path), "-t", "nv_small", "-s", str(scales), "-o",
               str(tmp_path / "x.dla")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "layer wide" in err and "convolution buffer" in err


def test_not_an_nvdla_target(fmnist, tmp_path, capsys):
    _, scales, _ = fmnist
    rc = main(["compile", "fmnist-cnn", "-t", "orin", "-s", str(scales), "-o",
               str(tmp_path / "x.dla")])  # fmt: skip
    assert rc == 2 and "nv_small or nv_full" in capsys.readouterr().err


def test_inspect_json_and_unknown_operation(fmnist, capsys):
    _, _, art = fmnist
    capsys.readouterr()
    assert main(["inspect", str(art), "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ops = [op for s in doc["segments"] for op in s.get("ops", [])]
    assert ops and all(isinstance(op["registers"], int) for op in ops)  # counts, not the writes
    assert main(["inspect", str(art), "--registers", "no-such-op"]) == 2
    assert "no operation named" in capsys.readouterr().err


def test_run_on_cuda_without_a_gpu_is_refused(fmnist, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    _, _, art = fmnist
    assert main(["run", str(art), "-d", "fashion-mnist", "-n", "1", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
