"""Elementwise passes: HardSigmoid, HardSwish, Div by a constant, broadcast gates; and Resize."""

import numpy as np
import pytest
from onnx import helper

from dlakit.rewrite.broadcast_by_resize import BroadcastByResizePass
from dlakit.rewrite.div_to_mul import DivToMulPass
from dlakit.rewrite.hard_sigmoid import HardSigmoidPass
from dlakit.rewrite.hard_swish import HardSwishPass
from dlakit.rewrite.resize_sizes_to_scales import ResizeSizesToScalesPass


def test_hard_sigmoid_as_mul_add_clip(apply_pass, build_model):
    for opset in (10, 17):  # Clip bounds as attributes (opset <= 10) or inputs (opset >= 11)
        node = helper.make_node("HardSigmoid", ["x"], ["y"], name="hs", alpha=0.2, beta=0.5)
        done = apply_pass(
            build_model([node], [("x", [1, 4, 8, 8])], ["y"], opset=opset), HardSigmoidPass
        )
        assert done.ops == {"Mul": 1, "Add": 1, "Clip": 1} and done.error <= 1e-6
    dims = {t.name: list(t.dims) for t in done.model.graph.initializer}
    clip = done.nodes("Clip")[0]
    assert [dims[name] for name in clip.input[1:]] == [[], []]  # ONNX wants scalar bounds


def test_hard_swish_as_gate_and_product(apply_pass, build_model):
    node = helper.make_node("HardSwish", ["x"], ["y"], name="hswish")
    done = apply_pass(build_model([node], [("x", [1, 4, 8, 8])], ["y"]), HardSwishPass)
    assert done.ops == {"Mul": 2, "Add": 1, "Clip": 1} and done.error <= 1e-6


def resize(build_model, sizes, opset=13):
    inits = [("sizes", np.array(sizes, np.int64))]
    slots = ["", ""]
    if opset < 13:  # roi and scales are required inputs before opset 13: give empty tensors
        inits += [("roi", np.zeros(0, np.float32)), ("none", np.zeros(0, np.float32))]
        slots = ["roi", "none"]
    node = helper.make_node(
        "Resize",
        ["x", *slots, "sizes"],
        ["y"],
        name="up",
        mode="nearest",
        nearest_mode="floor",
        coordinate_transformation_mode="asymmetric",
    )
    return build_model([node], [("x", [1, 2, 4, 5])], ["y"], inits, opset=opset)


def test_resize_sizes_as_integer_scales(apply_pass, build_model):
    for opset in (11, 13):
        done = apply_pass(resize(build_model, [1, 2, 8, 15], opset), ResizeSizesToScalesPass)
        node = done.nodes("Resize")[0]
        assert len(node.input) == 3 and done.error == 0.0
        scales = {t.name: t for t in done.model.graph.initializer}[node.input[2]]
        assert list(np.frombuffer(scales.raw_data, np.float32)) == [1, 1, 2, 3]


def test_resize_refuses_fractional_ratio(apply_pass, build_model):
    done = apply_pass(resize(build_model, [1, 2, 6, 10]), ResizeSizesToScalesPass)
    assert len(done.nodes("Resize")[0].input) == 4 and "6/4" in done.refusals[0].reason


def test_div_by_constant_as_mul_by_reciprocal(apply_pass, build_model):
    node = helper.make_node("Div", ["x", "six"], ["y"], name="div")
    inits = [("six", np.array(6.0, np.float32))]
    done = apply_pass(build_model([node], [("x", [1, 4, 8, 8])], ["y"], inits), DivToMulPass)
    assert done.ops == {"Mul": 1} and done.error <= 1e-6


def test_div_to_mul_refuses_a_zero_divisor(apply_pass, build_model):
    node = helper.make_node("Div", ["x", "d"], ["y"], name="div")
    inits = [("d", np.array([1.0, 0.0], np.float32))]
    done = apply_pass(build_model([node], [("x", [3, 2])], ["y"], inits), DivToMulPass)
    assert done.ops == {"Div": 1} and "zero" in done.refusals[0].reason


def se_gate(build_model, h, w):
    """Squeeze-and-excitation: x * sigmoid(mean(x)), the gate broadcast over H x W."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["m"], name="squeeze"),
        helper.make_node("Sigmoid", ["m"], ["g"], name="gate"),
        helper.make_node("Mul", ["x", "g"], ["y"], name="excite"),
    ]
    return build_model(nodes, [("x", [1, 3, h, w])], ["y"])


@pytest.mark.parametrize(("h", "w", "resizes"), [(7, 7, 1), (160, 12, 2)])
def test_broadcast_gate_resized_to_the_feature_map(apply_pass, build_model, h, w, resizes):
    done = apply_pass(se_gate(build_model, h, w), BroadcastByResizePass)
    assert done.ops["Resize"] == resizes and done.error == 0.0
    mul = done.nodes("Mul")[0]
    assert mul.input[0] == "x" and mul.input[1] != "g"


def test_broadcast_by_resize_refuses_a_prime_above_the_scale_limit(apply_pass, build_model):
    done = apply_pass(se_gate(build_model, 37, 4), BroadcastByResizePass)
    assert "Resize" not in done.ops and "prime factor" in done.refusals[0].reason
