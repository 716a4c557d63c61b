"""fix_model end to end: pinned shapes, verification, undoing a wrong rewrite, limits as data."""

import dataclasses

import numpy as np
import onnx
from onnx import helper

from dlakit.graph import load_model, parse_input_shapes, save_model
from dlakit.rewrite import fix_model, rewrite_limits
from dlakit.rewrite.base import Change, RewritePass
from dlakit.rewrite.driver import rewrite
from dlakit.rewrite.split_maxpool import SplitMaxPoolPass
from dlakit.rewrite.verify import compare, random_inputs, run_model
from dlakit.targets import load_target

RNG = np.random.default_rng(3)


def f32(*shape, positive=False):
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.5 if positive else x


def mobile_head(build_model):
    """Conv-BN-HardSwish, SE-style HardSigmoid gate, global pool, Flatten, Gemm; dynamic batch."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("HardSwish", ["bn"], ["hs"], name="hswish"),
        helper.make_node("GlobalAveragePool", ["hs"], ["gap"], name="gap"),
        helper.make_node("HardSigmoid", ["gap"], ["gate"], name="gate", alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["hs", "gate"], ["se"], name="se"),
        helper.make_node("GlobalAveragePool", ["se"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [
        ("w", f32(16, 3, 3, 3)),
        ("g", f32(16)),
        ("b", f32(16)),
        ("m", f32(16)),
        ("v", f32(16, positive=True)),
        ("fw", f32(10, 16)),
        ("fb", f32(10)),
    ]
    return build_model(nodes, [("x", ["batch", 3, 14, 14])], ["y"], inits)


def test_fix_model_rewrites_a_mobile_head_and_verifies_it(tmp_path, build_model):
    path = save_model(mobile_head(build_model), tmp_path / "head.onnx")
    loaded = load_model(path, parse_input_shapes(["x:1x3x14x14"]))
    result = fix_model(loaded, load_target("orin"))
    passes = {r.pass_name for r in result.rewrites}
    assert passes == {
        "pin-input-shapes",
        "flatten-to-reshape",
        "fold-batchnorm",
        "hard-swish",
        "hard-sigmoid",
        "global-pool-to-avgpool",
        "gemm-to-conv",
        "broadcast-by-resize",
    }
    ops = {n.op_type for n in result.model.graph.node}
    assert ops == {"Conv", "Mul", "Add", "Clip", "AveragePool", "Reshape", "Resize"}
    assert result.verification.ok and result.verification.source.startswith("random normal")
    # independent check on other inputs than the driver's
    inputs = random_inputs(loaded.proto, loaded.input_shapes, seed=7)
    ours = compare(run_model(loaded.proto, inputs), run_model(result.model, inputs), "seed 7")
    assert ours.max_rel_error <= 1e-5
    onnx.checker.check_model(result.model)


class WrongReluPass(RewritePass):
    """Relu(X) -> Sigmoid(X) for the node named 'bad'; Relu(Relu(X)) -> Identity for 'good'."""

    name = "wrong-relu"
    op_types = ("Relu",)

    def match(self, graph, node):
        op = {"bad": "Sigmoid", "good": "Identity"}[node.name]
        new = helper.make_node(op, list(node.input), list(node.output), name=node.name)
        return Change(remove=[node], add=[new], description=f"Relu as {op}")


def test_a_rewrite_that_changes_the_function_is_undone_and_refused(tmp_path, build_model):
    nodes = [
        helper.make_node("Abs", ["x"], ["r"], name="first"),
        helper.make_node("Relu", ["r"], ["y"], name="good"),  # Relu(Abs(x)) = Abs(x)
        helper.make_node("Relu", ["x"], ["z"], name="bad"),
    ]
    model = build_model(nodes, [("x", [1, 4])], ["y", "z"])
    loaded = load_model(save_model(model, tmp_path / "relu.onnx"))
    inputs = random_inputs(loaded.proto, loaded.input_shapes)
    reference = run_model(loaded.proto, inputs)

    def check(candidate):
        return compare(reference, run_model(candidate, inputs), inputs.source)

    fixed, rewrites, refusals = rewrite(loaded.proto, [WrongReluPass({})], check)
    assert [r.before for r in rewrites] == [("good (Relu)",)]
    assert [(r.node, r.reason.split(":")[0]) for r in refusals] == [("bad", "undone")]
    assert {n.name: n.op_type for n in fixed.graph.node}["bad"] == "Relu"


def test_limits_come_from_the_rule_set_and_the_target_overrides_them(build_model):
    assert rewrite_limits(load_target("orin"))["pool_window_max"] == 8
    assert rewrite_limits(load_target("nv_small"))["pool_window_max"] == 8
    orin = load_target("orin")
    narrow = dataclasses.replace(orin, rewrite_limits={"pool_window_max": 4})
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[9, 9], pads=[4] * 4)  # unnamed
    relu = helper.make_node("Relu", ["y"], ["z"])
    model = build_model([node, relu], [("x", [1, 2, 12, 12])], ["z"])
    passes = [SplitMaxPoolPass(rewrite_limits(narrow))]
    fixed, _, _ = rewrite(onnx.shape_inference.infer_shapes(model), passes)
    windows = [a.ints[0] for n in fixed.graph.node for a in n.attribute if a.name == "kernel_shape"]
    assert windows == [4, 4, 3]
    assert [n.op_type for n in fixed.graph.node] == ["MaxPool"] * 3 + ["Relu"]


def test_fix_is_a_fixed_point(tmp_path, build_model):
    path = save_model(mobile_head(build_model), tmp_path / "head.onnx")
    first = fix_model(load_model(path, parse_input_shapes(["x:1x3x14x14"])), load_target("orin"))
    again_path = save_model(first.model, tmp_path / "fixed.onnx")
    second = fix_model(load_model(again_path), load_target("orin"))
    assert second.rewrites == [] and second.nodes_after == first.nodes_after
