"""`dlakit fix` end to end on a small file, and bad input ending in one clear line and exit 2."""

import json

import numpy as np
import onnx
from onnx import helper

from dlakit.cli import main
from dlakit.graph import save_model


def hardswish_pool(build_model, tmp_path, batch="batch"):
    nodes = [
        helper.make_node("HardSwish", ["x"], ["h"], name="hswish"),
        helper.make_node("MaxPool", ["h"], ["y"], name="pool", kernel_shape=[9, 9], pads=[4] * 4),
    ]
    model = build_model(nodes, [("x", [batch, 3, 12, 12])], ["y"])
    return save_model(model, tmp_path / "in.onnx")


def test_fix_writes_a_verified_model(build_model, tmp_path, capsys):
    source = hardswish_pool(build_model, tmp_path)
    out = tmp_path / "out.onnx"
    report = tmp_path / "fix.json"
    args = [
        "fix",
        str(source),
        "-o",
        str(out),
        "--input-shape",
        "x:1x3x12x12",
        "--json",
        str(report),
    ]
    code = main(args)
    text = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "random normal" in text and "verified with onnxruntime" in text
    assert "split-maxpool" in text and "hard-swish" in text and "pin-input-shapes" in text
    data = json.loads(report.read_text())
    assert data["schema"] == "dlakit.fix" and data["verification"]["max_rel_error"] <= 1e-5
    assert {r["pass"] for r in data["rewrites"]} == {
        "pin-input-shapes",
        "split-maxpool",
        "hard-swish",
    }
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "HardSwish" not in ops and ops.count("MaxPool") == 2
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    import onnxruntime as ort

    ref = ort.InferenceSession(str(source)).run(None, {"x": x})[0]
    new = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
    assert np.max(np.abs(ref - new)) <= 1e-5 * np.max(np.abs(ref))


def test_fix_missing_model_is_one_line_exit_2(tmp_path, capsys):
    code = main(["fix", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "Traceback" not in err


def test_fix_refuses_to_overwrite_its_input(build_model, tmp_path, capsys):
    source = hardswish_pool(build_model, tmp_path, batch=1)
    code = main(["fix", str(source), "-o", str(source), "--random"])
    assert code == 2 and "overwrite" in capsys.readouterr().err


def test_fix_unknown_target_is_exit_2(build_model, tmp_path, capsys):
    source = hardswish_pool(build_model, tmp_path, batch=1)
    code = main(["fix", str(source), "-o", str(tmp_path / "o.onnx"), "--target", "tpu"])
    assert code == 2 and "unknown target" in capsys.readouterr().err


def test_fix_verifies_on_given_npz_inputs(build_model, tmp_path, capsys):
    source = hardswish_pool(build_model, tmp_path, batch=1)
    data = tmp_path / "inputs.npz"
    rng = np.random.default_rng(4)
    np.savez(data, x=rng.uniform(-4, 4, (3, 3, 12, 12)).astype(np.float32))
    out = str(tmp_path / "o.onnx")
    code = main(["fix", str(source), "-o", out, "--data", str(data), "--limit", "3"])
    text = capsys.readouterr().out
    assert code == 0 and "3 run(s)" in text and "inputs.npz (3 inputs" in text


def test_fix_with_nothing_to_rewrite_says_so(build_model, tmp_path, capsys):
    relu = helper.make_node("Relu", ["x"], ["y"], name="relu")
    source = save_model(build_model([relu], [("x", [1, 3, 4, 4])], ["y"]), tmp_path / "r.onnx")
    code = main(["fix", str(source), "-o", str(tmp_path / "o.onnx"), "--random"])
    assert code == 0 and "no rewrite applied" in capsys.readouterr().out
