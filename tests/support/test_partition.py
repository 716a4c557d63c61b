"""Partitioning rules, and the --emit round trip: segments run in order match the model."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from dlakit.graph import load_model, save_model
from dlakit.partition import check_model
from dlakit.partition.emit import emit, run_segments
from dlakit.targets import load_target

RNG = np.random.default_rng(0)


def conv(name, src, dst, c_in, c_out, k=3):
    w = RNG.normal(size=(c_out, c_in, k, k)).astype(np.float32) * 0.2
    node = helper.make_node(
        "Conv", [src, f"{name}_w"], [dst], name=name, kernel_shape=[k, k], pads=[k // 2] * 4
    )
    return node, numpy_helper.from_array(w, f"{name}_w")


def save(tmp_path, nodes, inits, shape=(1, 4, 16, 16), outputs=("y",)):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, tmp_path / "m.onnx")


def ort_run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_diamond_through_the_fallback_device_never_forms_a_cycle(tmp_path):
    # a -> b (Softplus: no DLA layer) -> d ; a -> c -> d: a, c, d cannot be one segment
    a, wa = conv("a", "x", "ta", 4, 8)
    b = helper.make_node("Softplus", ["ta"], ["tb"], name="b")
    c, wc = conv("c", "ta", "tc", 8, 8)
    d = helper.make_node("Add", ["tb", "tc"], ["td"], name="d")
    e, we = conv("e", "td", "y", 8, 4)
    path = save(tmp_path, [a, b, c, d, e], [wa, wc, we])
    model = load_model(path)
    result = check_model(model, load_target("nv_full"))
    seg_of = {v.name: v.segment for v in result.nodes}
    assert next(v for v in result.nodes if v.name == "b").engine == "fallback"
    assert seg_of["a"] == seg_of["c"] and seg_of["d"] == seg_of["e"]
    assert len({seg_of["a"], seg_of["b"], seg_of["d"]}) == 3
    x = RNG.normal(size=(1, 4, 16, 16)).astype(np.float32)
    manifest = emit(model, result.segments, tmp_path / "emit", "nv_full")
    np.testing.assert_allclose(
        run_segments(manifest, {"x": x})["y"], ort_run(path, x)[0], rtol=1e-5, atol=1e-5
    )


def test_segments_on_nv_small_split_at_the_lut_and_run_in_order(tmp_path):
    a, wa = conv("a", "x", "ta", 4, 8)
    b = helper.make_node("Sigmoid", ["ta"], ["tb"], name="b")
    c, wc = conv("c", "tb", "y", 8, 4)
    path = save(tmp_path, [a, b, c], [wa, wc])
    model = load_model(path)
    result = check_model(model, load_target("nv_small"))
    assert [s.engine for s in result.segments] == ["dla", "fallback", "dla"]
    assert result.summary["transitions"] == 2 and result.summary["dla_segments"] == 2
    x = RNG.normal(size=(1, 4, 16, 16)).astype(np.float32)
    manifest = emit(model, result.segments, tmp_path / "emit", "nv_small")
    assert len(list((tmp_path / "emit").glob("segment_*.onnx"))) == 3
    np.testing.assert_allclose(
        run_segments(manifest, {"x": x})["y"], ort_run(path, x)[0], rtol=1e-5, atol=1e-5
    )


def island_model(tmp_path):
    big = helper.make_node(
        "Conv", ["x", "wb"], ["t1"], name="big", kernel_shape=[33, 33], pads=[16] * 4
    )
    relu = helper.make_node("Relu", ["t1"], ["t2"], name="relu")
    big2 = helper.make_node(
        "Conv", ["t2", "wb2"], ["y"], name="big2", kernel_shape=[33, 33], pads=[16] * 4
    )
    inits = [
        numpy_helper.from_array(RNG.normal(size=(4, 4, 33, 33)).astype(np.float32), "wb"),
        numpy_helper.from_array(RNG.normal(size=(4, 4, 33, 33)).astype(np.float32), "wb2"),
    ]
    return load_model(save(tmp_path, [big, relu, big2], inits))


def test_tiny_island_stays_on_the_dla_in_the_prediction_and_is_recommended(tmp_path):
    result = check_model(island_model(tmp_path), load_target("orin"))
    relu_v = next(v for v in result.nodes if v.name == "relu")
    assert relu_v.engine == "dla" and relu_v.reasons == []  # TensorRT keeps it on the DLA
    assert result.summary["dla_segments"] == 1 and not result.policy_applied
    [rec] = result.recommendations
    assert rec.reason.rule == "partition.island" and rec.reason.kind == "policy"
    assert "handoff" in rec.reason.message and rec.handoffs == 2 and not rec.applied
    assert [result.nodes[i].name for i in rec.nodes] == ["relu"]
    doc = result.to_json()
    assert doc["recommendations"][0]["nodes"] == ["relu"]
    assert doc["recommendations"][0]["kind"] == "policy"
    assert doc["summary"]["recommendations"] == 1 and doc["summary"]["recommended_nodes"] == 1


def test_apply_policy_moves_the_island_with_a_policy_reason(tmp_path):
    result = check_model(island_model(tmp_path), load_target("orin"), apply_policy=True)
    relu_v = next(v for v in result.nodes if v.name == "relu")
    assert relu_v.engine == "fallback" and relu_v.hw_engine is None
    assert [(r.rule, r.kind) for r in relu_v.reasons] == [("partition.island", "policy")]
    assert result.summary["dla_segments"] == 0 and result.policy_applied
    assert result.recommendations[0].applied
    assert result.to_json()["nodes"][1]["reasons"][0]["kind"] == "policy"


def test_more_dla_segments_than_loadables_move_the_smallest(tmp_path):
    nodes, inits, src = [], [], "x"
    for i in range(20):  # 20 DLA convs, each large enough to be worth its handoffs, between GPU ops
        node, w = conv(f"c{i}", src, f"t{i}", 64 if i else 4, 64 if i < 19 else 4, k=3)
        nodes.append(node)
        inits.append(w)
        exp = helper.make_node("Softplus", [f"t{i}"], [f"u{i}" if i < 19 else "y"], name=f"s{i}")
        nodes.append(exp)
        src = f"u{i}"
    model = load_model(save(tmp_path, nodes, inits, shape=(1, 4, 256, 256)))

    def moved(result):
        rules = {"partition.loadables", "partition.island"}
        return {v.name: r.rule for v in result.nodes for r in v.reasons if r.rule in rules}

    # TensorRT's rule alone: the 4 smallest of 20 (c19 64->4, c0 4->64, then c1, c2) move
    predicted = check_model(model, load_target("orin"))
    assert predicted.summary["dla_segments"] == 16
    assert moved(predicted) == {n: "partition.loadables" for n in ("c0", "c1", "c2", "c19")}
    assert predicted.recommendations == []  # c19 went by the rule; nothing is left to advise
    # applying the policy changes nothing: TensorRT's own rule already moved the cheap c19
    applied = check_model(model, load_target("orin"), apply_policy=True)
    assert moved(applied) == moved(predicted) and applied.summary["dla_segments"] == 16
