"""The lowering follows the support verdicts: no node changes engine or precision without the
reason `check` gives it, and the lowered graph passes its invariants (lower/lint.py)."""

from dataclasses import replace

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.errors import DlakitError
from dlakit.graph import load_model, save_model
from dlakit.lower.lint import LintError, lint
from dlakit.lower.lowering import quantize_model
from dlakit.lower.qgraph import QConcat, QFloat, QLayer
from dlakit.partition import check_model
from dlakit.targets import load_target

RNG = np.random.default_rng(7)


def _conv(name, src, dst, cin, cout):
    w = RNG.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", [src, f"{name}_w"], [dst], name=name, pads=[1, 1, 1, 1])
    return node, numpy_helper.from_array(w, f"{name}_w")


def _model(tmp_path, nodes, inits, out_channels, cin=8, hw=8):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_channels, hw, hw])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return load_model(save_model(model, tmp_path / "m.onnx"))


def _unit_scales(loaded):
    return dict.fromkeys(loaded.shapes, 0.05)


def _by_node(graph) -> dict[str, QLayer]:
    return {n: layer for layer in graph.layers for n in layer.onnx_nodes}


def _every_layer_matches_its_verdict(graph):
    for layer in graph.layers:
        for node in layer.onnx_nodes:
            v = graph.verdicts[node]
            if layer.engine == "fallback" and v.engine == "fallback":
                assert v.reasons, f"{node} fell back without a reason"
            if layer.engine == "dla":
                assert v.engine == "dla" and v.modeled_fp32 is None


def test_mul_of_two_tensors_is_int8_on_nv_full_and_a_constant_operand_falls_back(tmp_path):
    a, wa = _conv("a", "x", "ta", 8, 8)
    b, wb = _conv("b", "x", "tb", 8, 8)
    mul = helper.make_node("Mul", ["ta", "tb"], ["tm"], name="mul")
    c, wc = _conv("c", "tm", "y", 8, 8)
    loaded = _model(tmp_path, [a, b, mul, c], [wa, wb, wc], 8)
    verdict = {v.name: v for v in check_model(loaded, load_target("nv_full")).nodes}["mul"]
    assert verdict.engine == "dla"
    graph = quantize_model(loaded, _unit_scales(loaded), "nv_full")
    layer = _by_node(graph)["mul"]
    assert layer.engine == "dla" and layer.sdp.y is not None and layer.sdp.y.stage == "mul"
    _every_layer_matches_its_verdict(graph)

    k = numpy_helper.from_array(RNG.normal(size=(1, 8, 1, 1)).astype(np.float32), "k")
    mul = helper.make_node("Mul", ["ta", "k"], ["tm"], name="mul")
    c, wc = _conv("c", "tm", "y", 8, 8)
    loaded = _model(tmp_path, [a, mul, c], [wa, k, wc], 8)
    verdict = {v.name: v for v in check_model(loaded, load_target("nv_full")).nodes}["mul"]
    assert verdict.engine == "fallback" and verdict.reasons[0].rule == "lower.mul.two_tensors"
    graph = quantize_model(loaded, _unit_scales(loaded), "nv_full")
    assert (
        isinstance(_by_node(graph)["mul"], QFloat) and _by_node(graph)["mul"].engine == "fallback"
    )
    _every_layer_matches_its_verdict(graph)


def test_on_orin_the_node_stays_on_the_dla_and_the_reference_says_why_it_is_fp32(tmp_path):
    a, wa = _conv("a", "x", "ta", 8, 8)
    leaky = helper.make_node("LeakyRelu", ["ta"], ["tl"], name="leaky", alpha=0.1)
    c, wc = _conv("c", "tl", "y", 8, 8)
    loaded = _model(tmp_path, [a, leaky, c], [wa, wc], 8)
    verdict = {v.name: v for v in check_model(loaded, load_target("orin")).nodes}["leaky"]
    assert verdict.engine == "dla" and verdict.modeled_fp32 is not None
    assert verdict.modeled_fp32.rule == "lower.op"
    assert any("FP32" in note for note in verdict.notes)
    graph = quantize_model(loaded, _unit_scales(loaded), "orin")
    assert _by_node(graph)["leaky"].engine == "fallback"
    _every_layer_matches_its_verdict(graph)


def test_an_unaligned_concat_falls_back_in_int8_with_its_rule(tmp_path):
    a, wa = _conv("a", "x", "ta", 8, 4)  # 4 channels: not a whole 32-channel atom on nv_full
    b, wb = _conv("b", "x", "tb", 8, 4)
    cat = helper.make_node("Concat", ["ta", "tb"], ["y"], name="cat", axis=1)
    loaded = _model(tmp_path, [a, b, cat], [wa, wb], 8)
    verdict = {v.name: v for v in check_model(loaded, load_target("nv_full")).nodes}["cat"]
    assert verdict.engine == "fallback" and verdict.reasons[0].rule == "concat.aligned"
    assert verdict.fallback_int8
    layer = _by_node(quantize_model(loaded, _unit_scales(loaded), "nv_full"))["cat"]
    assert isinstance(layer, QConcat) and layer.engine == "fallback"
    # nv_small's atom is 8 channels: 4 + 4 still does not align there; 8 + 8 does on both.


def test_user_placements_are_reasons(tmp_path):
    a, wa = _conv("a", "x", "ta", 8, 8)
    c, wc = _conv("c", "ta", "y", 8, 8)
    loaded = _model(tmp_path, [a, c], [wa, wc], 8)
    result = check_model(loaded, load_target("nv_small"), fallback_layers=["a"], fp16_layers=["c"])
    v = {n.name: n for n in result.nodes}
    assert v["a"].reasons[0].rule == "user.fallback_layers"
    assert v["c"].engine == "fallback" and v["c"].reasons[0].rule == "precision.int8_only"
    on_full = {
        n.name: n for n in check_model(loaded, load_target("nv_full"), fp16_layers=["c"]).nodes
    }
    assert on_full["c"].engine == "dla" and on_full["c"].precision == "fp16"
    with pytest.raises(DlakitError, match="both"):
        check_model(loaded, load_target("nv_full"), fallback_layers=["a"], fp16_layers=["a"])
    with pytest.raises(DlakitError, match="unknown node"):
        check_model(loaded, load_target("nv_full"), fallback_layers=["nope"])


def test_lint_names_the_broken_invariant(tmp_path):
    a, wa = _conv("a", "x", "ta", 8, 8)
    c, wc = _conv("c", "ta", "y", 8, 8)
    loaded = _model(tmp_path, [a, c], [wa, wc], 8)
    graph = quantize_model(loaded, _unit_scales(loaded), "nv_full")
    lint(graph)
    graph.layers.reverse()  # consumers before producers
    with pytest.raises(LintError, match="not produced by an earlier layer"):
        lint(graph)
    graph.layers.reverse()
    conv = next(layer for layer in graph.layers if layer.name == "c")
    conv.sdp.c.shift = 99  # CVT_SHIFT is a 6-bit field
    with pytest.raises(LintError, match="CVT_SHIFT"):
        lint(graph)
    conv.sdp.c.shift = 0
    x1 = conv.sdp.x1
    conv.sdp.x1 = replace(x1, alu="sum", alu_operand=np.zeros(8, np.int64), prelu=True)
    with pytest.raises(LintError, match="PReLU with its ALU enabled"):
        lint(graph)
    conv.sdp.x1 = replace(x1, prelu=True)  # ALU bypassed: allowed
    lint(graph)
    conv.sdp.x1 = x1
    graph.tensors["ta"].scale = 0.0
    with pytest.raises(LintError, match="scale"):
        lint(graph)
