"""dlakit compile / inspect / run end to end on a zoo model, and bad input."""

import json

import numpy as np
import pytest
from onnx import helper

from dlakit.accuracy.compare import agreement, float_run
from dlakit.cli import main
from dlakit.errors import DlakitError
from dlakit.graph import load_model
from dlakit.nvdla import read_artifact
from nvdla_cases import conv_model


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


def test_run_json_reports_speed_and_agreement(fmnist, tmp_path, capsys):
    _, _, art = fmnist
    doc_path = tmp_path / "run.json"
    rc = main(["run", str(art), "-d", "fashion-mnist", "-n", "5", "--batch", "2",
               "--compare", "fmnist-cnn", "--json", str(doc_path), "-q"])  # fmt: skip
    assert rc == 0
    doc = json.loads(doc_path.read_text())
    assert doc["schema"] == "dlakit.run" and doc["images"] == 5 and doc["batch"] == 2
    assert doc["images_per_second"] == pytest.approx(5 / doc["seconds"])
    assert doc["hardware_operations"] == read_artifact(art).stats["hardware_ops"]
    assert doc["operations"] == 5 * doc["hardware_operations"]
    assert doc["top1_agreement"] == doc["compare"]["agreement"] and 0 <= doc["top1_agreement"] <= 1


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ("0", "'--batch' / '-b': Input should be greater than or equal to 1"),
        ("100000000", "'--batch' / '-b': Input should be less than or equal to 65536"),
        ("64", "--batch 64: needs about"),
    ],
)
def test_run_refuses_a_batch_it_cannot_take(fmnist, capsys, monkeypatch, batch, message):
    _, _, art = fmnist
    # 1 MiB for the run: 64 fmnist-cnn images do not fit, and the refusal says what would.
    monkeypatch.setattr("dlakit.run.runner.memory_budget", lambda device=None: 1 << 20)
    assert main(["run", str(art), "-d", "fashion-mnist", "-n", "2", "--batch", batch]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert batch != "64" or "GiB is available to this run; use --batch" in err


@pytest.mark.parametrize(("field", "value", "message"), [
    ("version", 99, "version 99; this dlakit reads version"),
    ("hw_tree", "v9", "manifest hw.hw_tree: 'v9', but target nv_small has 'v2'"),
])  # fmt: skip
def test_run_refuses_an_artifact_for_another_simulator(fmnist, tmp_path, capsys, field, value,
                                                       message):  # fmt: skip
    import zipfile

    _, _, art = fmnist
    bad = tmp_path / "other.dla"
    with zipfile.ZipFile(art) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.json":
                doc = json.loads(data)
                if field == "version":
                    doc["version"] = value
                else:
                    doc["hw"]["hw_tree"] = value
                data = json.dumps(doc).encode()
            dst.writestr(item, data)
    assert main(["run", str(bad), "-d", "fashion-mnist", "-n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
