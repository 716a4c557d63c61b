"""`dlakit check` end to end, and every kind of bad input ending in one clear line and exit 2."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.cli import main
from dlakit.graph import save_model


def make_model(path, dynamic=False, op="Relu", domain="", external=False):
    dims = ["batch", 3, 8, 8] if dynamic else [1, 3, 8, 8]
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node(op, ["c"], ["y"], name="act", domain=domain),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[w],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    if external:
        onnx.save(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.bin",
            size_threshold=0,
        )
        return path
    return save_model(model, path)


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_prints_table_and_writes_json_and_segments(tmp_path, capsys):
    model = make_model(tmp_path / "m.onnx", op="Sigmoid")
    code, out, _ = run_cli(
        capsys,
        "check",
        str(model),
        "-t",
        "nv_small",
        "--json",
        str(tmp_path / "r.json"),
        "--emit",
        str(tmp_path / "seg"),
    )
    assert code == 0
    assert "engine.absent" in out and "Summary" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [n["engine"] for n in doc["nodes"]] == ["dla", "fallback"]
    assert (tmp_path / "seg" / "segments.json").is_file()


def test_dynamic_input_is_pinned_with_input_shape(tmp_path, capsys):
    model = make_model(tmp_path / "m.onnx", dynamic=True)
    code, out, _ = run_cli(capsys, "check", str(model), "--input-shape", "x:2x3x8x8")
    assert code == 0 and "Summary" in out


def one_line_error(capsys, *args):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    text = " ".join(err.split())
    assert "Traceback" not in err and text.startswith("error:")
    return text


def test_missing_file(tmp_path, capsys):
    assert "not found" in one_line_error(capsys, "check", str(tmp_path / "nope.onnx"))


def test_not_onnx(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not a protobuf at all, just text\n" * 10)
    assert "not a readable ONNX model" in one_line_error(capsys, "check", str(bad))


def test_truncated_model(tmp_path, capsys):
    good = make_model(tmp_path / "m.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good[: len(good) // 2])
    assert "cut.onnx" in one_line_error(capsys, "check", str(cut))


def test_missing_external_data(tmp_path, capsys):
    model = make_model(tmp_path / "ext.onnx", external=True)
    (tmp_path / "weights.bin").unlink()
    assert "weights.bin" in one_line_error(capsys, "check", str(model))


def test_unknown_op_and_domain(tmp_path, capsys):
    model = make_model(tmp_path / "u.onnx", op="FancyAct", domain="com.example")
    text = one_line_error(capsys, "check", str(model))
    assert "FancyAct" in text and "com.example" in text and "act" in text


def test_dynamic_shape_without_input_shape(tmp_path, capsys):
    model = make_model(tmp_path / "d.onnx", dynamic=True)
    text = one_line_error(capsys, "check", str(model))
    assert "'x'" in text and "--input-shape" in text


@pytest.mark.parametrize(
    ("flag", "value", "expect"),
    [
        ("-t", "tx2", "unknown target 'tx2'"),
        ("--trt", "11.1", "no DLA"),
        ("--trt", "x.y", "not a TensorRT version"),
    ],
)
def test_unknown_target_or_trt_version(tmp_path, capsys, flag, value, expect):
    model = make_model(tmp_path / "m.onnx")
    assert expect in one_line_error(capsys, "check", str(model), flag, value)


def test_bad_input_shape_spec(tmp_path, capsys):
    model = make_model(tmp_path / "m.onnx", dynamic=True)
    assert "--input-shape" in one_line_error(capsys, "check", str(model), "--input-shape", "x:1by3")


def island_model(path):
    """Two convolutions the DLA refuses (kernel 33) around a lone Relu: a DLA island."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 4, 33, 33)).astype(np.float32), name)
        for name in ("wa", "wb")
    ]
    nodes = [
        helper.make_node(
            "Conv", ["x", "wa"], ["a"], name="big", kernel_shape=[33, 33], pads=[16] * 4
        ),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node(
            "Conv", ["r", "wb"], ["y"], name="big2", kernel_shape=[33, 33], pads=[16] * 4
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_check_lists_recommendations_apart_and_applies_them_on_request(tmp_path, capsys):
    model = island_model(tmp_path / "m.onnx")
    code, out, _ = run_cli(
        capsys, "check", str(model), "--wide", "--json", str(tmp_path / "p.json")
    )
    assert code == 0 and "recommendations" in out and "--apply-policy" in out
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["schema_version"] == 3 and doc["policy_applied"] is False
    relu = next(n for n in doc["nodes"] if n["name"] == "relu")
    assert relu["engine"] == "dla" and relu["reasons"] == []  # TensorRT's placement
    [rec] = doc["recommendations"]
    assert rec["kind"] == "policy" and rec["nodes"] == ["relu"] and not rec["applied"]
    # priced by the performance model: the switches it removes outweigh the Relu's GPU time
    parts = rec["saving"]
    assert rec["saving_ms"] > 0 and parts["handoffs_ms"] == pytest.approx(0.12)
    assert rec["saving_ms"] == pytest.approx(
        parts["dla_ms"] + parts["conversions_ms"] + parts["handoffs_ms"] - parts["fallback_ms"],
        abs=1e-3,
    )
    assert doc["summary"]["recommended_saving_ms"] == rec["saving_ms"]
    code, out, _ = run_cli(
        capsys, "check", str(model), "--apply-policy", "--json", str(tmp_path / "a.json")
    )
    doc = json.loads((tmp_path / "a.json").read_text())
    relu = next(n for n in doc["nodes"] if n["name"] == "relu")
    assert relu["engine"] == "fallback" and relu["reasons"][0]["kind"] == "policy"
    assert doc["policy_applied"] is True and doc["recommendations"][0]["applied"] is True
    assert doc["summary"]["dla_segments"] == 0 and "applied" in out


def test_recommendations_on_open_nvdla_are_not_priced(tmp_path, capsys):
    # the host CPU beside an open NVDLA is not modeled: the saving says so instead of guessing
    model = island_model(tmp_path / "m.onnx")
    code, out, _ = run_cli(capsys, "check", str(model), "-t", "nv_full", "--json", "-")
    assert code == 0
    doc = json.loads(out)
    [rec] = doc["recommendations"]
    assert rec["saving_ms"] is None and "not modeled" in rec["saving_note"]
    assert doc["summary"]["recommended_saving_ms"] is None


def test_fix_applies_the_policy_and_lists_the_placement(tmp_path, capsys):
    model = island_model(tmp_path / "m.onnx")
    report = tmp_path / "fix.json"
    args = ["fix", str(model), "-o", str(tmp_path / "o.onnx"), "--random", "--json", str(report)]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "--fallback-layers relu" in out
    doc = json.loads(report.read_text())
    assert doc["schema"] == "dlakit.fix" and doc["schema_version"] == 2
    placed = doc["placement"]
    assert placed["after"]["nodes_on_dla"] == 1 and placed["after_policy"]["nodes_on_dla"] == 0
    assert placed["fallback_layers"] == ["relu"] and placed["saving_ms"] > 0
