"""`dlakit check` predicts what public TensorRT DLA build logs show (trt_log_facts.toml)."""

import tomllib
from pathlib import Path

import pytest
from yolo_graphs import c2psa_attention, detect_head

from dlakit.graph import load_model
from dlakit.partition import check_model
from dlakit.targets import load_target
from dlakit.zoo import entries, fetch

FACTS = tomllib.loads((Path(__file__).parent / "trt_log_facts.toml").read_text())
LOGS = FACTS["logs"]


def fact_id(fact):
    return f"{fact['log']}:{fact['layer']}"


def graph_of(fact, tmp_path):
    if fact["graph"] == "c2psa":
        return c2psa_attention(tmp_path)
    return detect_head(tmp_path, fact["head"])


def verdict_of(result, layer):
    return next(v for v in result.nodes if v.name == layer)


def test_every_fact_names_a_log_and_a_rule_dlakit_has():
    from dlakit.support.rules import load_rule_set

    rules = load_rule_set("trt")
    ids = {c["id"] for op in rules.ops.values() for c in op.get("checks", [])}
    ids |= {r["id"] for r in rules.data["subgraph"]} | {"op.version", "op.unsupported"}
    for fact in FACTS["facts"]:
        assert fact["log"] in LOGS and LOGS[fact["log"]]["source"].startswith("https://")
        assert fact["rule"] in ids, fact_id(fact)


@pytest.mark.parametrize("fact", FACTS["facts"], ids=fact_id)
def test_check_predicts_the_logged_verdict(fact, tmp_path):
    log = LOGS[fact["log"]]
    result = check_model(graph_of(fact, tmp_path), load_target(log["target"]), trt=log["trt"])
    v = verdict_of(result, fact["layer"])
    assert v.engine == fact["verdict"]
    # TensorRT logs one reason per layer: it is dlakit's first, and it is TensorRT's rule
    assert v.reasons[0].rule == fact["rule"] and v.reasons[0].kind == "rule"


@pytest.mark.network
@pytest.mark.parametrize("fact", [f for f in FACTS["facts"] if "zoo" in f], ids=fact_id)
def test_the_zoo_model_with_the_logged_layer_agrees(fact):
    log = LOGS[fact["log"]]
    entry = entries()[fact["zoo"]]
    model = load_model(fetch(fact["zoo"]), {"": entry.input_shape})
    v = verdict_of(check_model(model, load_target(log["target"]), trt=log["trt"]), fact["layer"])
    assert v.engine == fact["verdict"] and v.reasons[0].rule == fact["rule"]


def test_the_attention_view_passes_its_own_checks_and_fails_only_next_to_the_split(tmp_path):
    # The log validates the 4-D -> 4-D view on the DLA (it passed the layer checks) and splits
    # the subgraph there under 8.5; the subgraph rule is 8.5's, so 8.6 keeps it on the DLA.
    model = c2psa_attention(tmp_path)
    under_85 = check_model(model, load_target("orin"), trt="8.5")
    view = verdict_of(under_85, "/model.10/m/m.0/attn/Reshape")
    assert [r.rule for r in view.reasons] == ["shuffle.next_to_slice_concat"]
    assert "Split" in view.reasons[0].value
    # v's view reads the Split too; the view after the GPU MatMul has no Slice/Concat beside it
    assert verdict_of(under_85, "/model.10/m/m.0/attn/Reshape_2").engine == "fallback"
    assert verdict_of(under_85, "/model.10/m/m.0/attn/Reshape_1").engine == "dla"
    assert verdict_of(under_85, "/model.10/m/m.0/attn/Split").engine == "dla"
    under_86 = check_model(model, load_target("orin"), trt="8.6")
    assert verdict_of(under_86, "/model.10/m/m.0/attn/Reshape").engine == "dla"


def test_conv_reshape_split_concat_leaves_the_dla_under_8_5_only(tmp_path):
    # The minimal case: Conv -> Reshape (4-D -> 4-D) -> Split -> Concat.
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from dlakit.graph import save_model

    w = numpy_helper.from_array(np.ones((16, 8, 1, 1), np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 8, 2, 64]), "shape")
    sizes = numpy_helper.from_array(np.array([4, 4]), "sizes")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
        helper.make_node("Split", ["r", "sizes"], ["a", "b"], name="split", axis=1),
        helper.make_node("Concat", ["b", "a"], ["y"], name="concat", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[w, shape, sizes],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model = load_model(save_model(proto, tmp_path / "m.onnx"))
    under_85 = check_model(model, load_target("orin"), trt="8.5")
    assert [v.name for v in under_85.nodes if v.engine == "fallback"] == ["reshape"]
    assert under_85.summary["dla_segments"] == 2
    for trt in ("8.6", "10.7"):
        assert check_model(model, load_target("orin"), trt=trt).summary["nodes_on_dla"] == 4
