"""`check` and `--emit` on every zoo model, with the verdicts the sources state.

Every model: the check runs, its JSON follows the schema, and the emitted segments, run in
order with onnxruntime, reproduce the original model's outputs.
"""

import numpy as np
import onnxruntime as ort
import pytest

from dlakit.graph import load_model
from dlakit.partition import check_model
from dlakit.partition.emit import emit, run_segments
from dlakit.targets import load_target
from dlakit.zoo import entries, fetch

# Large random-weight detectors take long to export and run; they are covered by `make test-all`.
BIG = {
    "resnet34-backbone", "retinanet-resnet34", "ssd-resnet34", "retinanet-resnext50", "vgg16",
    "vgg19", "alexnet", "inception-v4", "resnet101", "resnet152",
}  # fmt: skip
MODELS = [
    pytest.param(name, marks=[pytest.mark.network] + ([pytest.mark.slow] if name in BIG else []))
    for name in entries()
]


def loaded(name):
    entry = entries()[name]
    return load_model(fetch(name), {"": entry.input_shape})


def ort_outputs(model, feeds):
    session = ort.InferenceSession(
        model.proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return dict(zip(model.output_names, session.run(model.output_names, feeds), strict=True))


@pytest.mark.parametrize("name", MODELS)
def test_check_and_emit_reproduce_the_model(name, tmp_path):
    model = loaded(name)
    result = check_model(model, load_target("orin"))
    doc = result.to_json()
    assert len(doc["nodes"]) == len(model.nodes)
    assert all(n["engine"] in ("dla", "fallback") for n in doc["nodes"])
    assert all(n["reasons"] for n in doc["nodes"] if n["engine"] == "fallback")
    assert sum(len(s["nodes"]) for s in doc["segments"]) == len(model.nodes)
    rng = np.random.default_rng(0)
    feeds = {
        n: rng.normal(size=model.input_shapes[n]).astype(np.float32) for n in model.input_names
    }
    manifest = emit(model, result.segments, tmp_path, "orin")
    got = run_segments(manifest, feeds)
    want = ort_outputs(model, feeds)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5)


@pytest.mark.network
def test_ddddocr_spp_pools_break_the_window_rule():
    result = check_model(loaded("ddddocr-det"), load_target("orin"), trt="8.6")
    pools = [v for v in result.nodes if v.op == "MaxPool"]
    windows = {}
    for v in pools:
        node = next(n for n in result.model.nodes if n.name == v.name)
        windows[v.name] = next(a.ints[0] for a in node.attribute if a.name == "kernel_shape")
    flagged = {windows[v.name] for v in pools if any(r.rule == "pool.window" for r in v.reasons)}
    assert flagged == {9, 13}
    assert all(v.engine == "dla" for v in pools if windows[v.name] == 5)
    fix = {r.fix for v in pools for r in v.reasons if r.rule == "pool.window"}
    assert fix == {"split-maxpool"}


@pytest.mark.network
def test_nv_small_rejects_what_needs_the_lut():
    result = check_model(loaded("yolov8n"), load_target("nv_small"))
    sigmoids = [v for v in result.nodes if v.op == "Sigmoid"]
    assert sigmoids and all(v.engine == "fallback" for v in sigmoids)
    assert all(
        v.reasons[0].rule == "engine.absent" and v.reasons[0].value == "sdp_lut" for v in sigmoids
    )
    assert result.summary["fallback_device"] == "cpu"


@pytest.mark.network
def test_mnist_cnn_flatten_is_the_only_node_off_the_orin_dla():
    # The 4-D -> 2-D Reshape before the classifier is a rank-changing Shuffle (shuffle.rank);
    # TensorRT splits the model there. Everything else runs on the DLA.
    result = check_model(loaded("mnist-cnn"), load_target("orin"))
    off = [(v.op, [r.rule for r in v.reasons]) for v in result.nodes if v.engine == "fallback"]
    assert off == [("Reshape", ["shuffle.rank"])]
    assert result.summary["dla_segments"] == 2 and result.summary["transitions"] == 2
    assert result.recommendations == []  # the classifier holds 10% of the MACs: no island


@pytest.mark.parametrize("name", MODELS)
def test_fix_preserves_function_and_never_loses_dla_nodes(name, tmp_path):
    from dlakit.graph import save_model
    from dlakit.rewrite import TOLERANCE, fix_model
    from dlakit.rewrite.inputs import real_inputs

    model = loaded(name)
    target = load_target("orin")
    before = check_model(model, target).summary["nodes_on_dla"]
    preset = entries()[name].preprocess  # real photos where the model has a preset, as the CLI
    fixed = fix_model(model, target, real_inputs(model, None, preset) if preset else None)
    assert fixed.verification.max_rel_error <= TOLERANCE
    after_model = load_model(save_model(fixed.model, tmp_path / "fixed.onnx"))
    after = check_model(after_model, target).summary
    assert after["nodes_on_dla"] >= before
    # Fallback nodes left after fix are only those no rewrite applies to.
    assert after["fixable_nodes"] == 0 or not fixed.rewrites


@pytest.mark.network
def test_efficientnet_lite0_after_fix_runs_wholly_on_the_orin_dla(tmp_path):
    from dlakit.graph import save_model
    from dlakit.rewrite import fix_model

    target = load_target("orin")
    fixed = fix_model(loaded("efficientnet-lite0"), target)
    result = check_model(
        load_model(save_model(fixed.model, tmp_path / "f.onnx")), target, trt="8.6"
    )
    off = [v.op for v in result.nodes if v.engine == "fallback"]
    assert set(off) <= {"Reshape", "Flatten"} and len(off) <= 1
    assert result.summary["dla_segments"] == 1


@pytest.mark.network
def test_ddddocr_spp_pools_move_onto_the_dla_after_fix(tmp_path):
    from dlakit.graph import save_model
    from dlakit.rewrite import fix_model

    target = load_target("orin")
    fixed = fix_model(loaded("ddddocr-det"), target)
    result = check_model(
        load_model(save_model(fixed.model, tmp_path / "f.onnx")), target, trt="8.6"
    )
    pools = [v for v in result.nodes if v.op == "MaxPool"]
    assert pools and all(v.engine == "dla" for v in pools)
    assert "split-maxpool" in {r.pass_name for r in fixed.rewrites}
