"""FoldBatchNormPass, FoldPadPass and FlattenToReshapePass on hand-built models."""

import numpy as np
from onnx import helper

from dlakit.rewrite.flatten_to_reshape import FlattenToReshapePass
from dlakit.rewrite.fold_batchnorm import FoldBatchNormPass
from dlakit.rewrite.fold_pad import FoldPadPass

RNG = np.random.default_rng(1)


def f32(*shape, positive=False):
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.1 if positive else x


def bn_inits(c):
    return [("g", f32(c)), ("b", f32(c)), ("m", f32(c)), ("v", f32(c, positive=True))]


def conv_bn(build_model, with_bias=True, extra_reader=False):
    conv_in = ["x", "w", "cb"] if with_bias else ["x", "w"]
    nodes = [
        helper.make_node("Conv", conv_in, ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn"),
        helper.make_node("Relu", ["y"], ["out"], name="relu"),
    ]
    outputs = ["out"]
    if extra_reader:
        nodes.append(helper.make_node("Sigmoid", ["c"], ["side"], name="side"))
        outputs.append("side")
    inits = [("w", f32(8, 4, 3, 3)), ("cb", f32(8)), *bn_inits(8)]
    return build_model(nodes, [("x", [1, 4, 10, 10])], outputs, inits)


def test_fold_batchnorm_into_conv(apply_pass, build_model):
    for with_bias in (True, False):
        done = apply_pass(conv_bn(build_model, with_bias), FoldBatchNormPass)
        assert done.ops == {"Conv": 1, "Relu": 1}
        assert [r.pass_name for r in done.rewrites] == ["fold-batchnorm"]
        assert done.error <= 1e-5


def test_fold_batchnorm_refuses_conv_with_two_readers(apply_pass, build_model):
    done = apply_pass(conv_bn(build_model, extra_reader=True), FoldBatchNormPass)
    assert done.ops["BatchNormalization"] == 1 and not done.rewrites
    assert "also read by other nodes" in done.refusals[0].reason


def test_fold_batchnorm_leaves_batchnorm_without_conv(apply_pass, build_model):
    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn")
    done = apply_pass(
        build_model([node], [("x", [1, 8, 4, 4])], ["y"], bn_inits(8)), FoldBatchNormPass
    )
    assert done.ops == {"BatchNormalization": 1} and not done.rewrites and not done.refusals


def pad_then(build_model, op, pad_value=0.0, mode="constant", **attrs):
    pads = np.array([0, 0, 0, 1, 0, 0, 2, 1], np.int64)  # asymmetric, as TF "same" exports
    nodes = [
        helper.make_node("Pad", ["x", "pads", "val"], ["p"], name="pad", mode=mode),
        helper.make_node(op, ["p", "w"] if op == "Conv" else ["p"], ["y"], name="op", **attrs),
    ]
    inits = [("pads", pads), ("val", np.array(pad_value, np.float32))]
    if op == "Conv":
        inits.append(("w", f32(6, 3, 3, 3)))
    return build_model(nodes, [("x", [1, 3, 9, 9])], ["y"], inits)


def test_fold_pad_into_conv(apply_pass, build_model):
    done = apply_pass(
        pad_then(build_model, "Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), FoldPadPass
    )
    assert done.ops == {"Conv": 1}
    conv = done.nodes("Conv")[0]
    pads = next(helper.get_attribute_value(a) for a in conv.attribute if a.name == "pads")
    assert pads == [1, 2, 3, 2]  # Conv's 1 plus the Pad's [0, 1] begin and [2, 1] end
    assert done.error <= 1e-5


def test_fold_pad_into_average_pool_counts_the_padding(apply_pass, build_model):
    done = apply_pass(pad_then(build_model, "AveragePool", kernel_shape=[3, 3]), FoldPadPass)
    assert done.ops == {"AveragePool": 1}
    assert done.error <= 1e-6


def test_fold_minus_inf_pad_into_max_pool(apply_pass, build_model):
    model = pad_then(build_model, "MaxPool", pad_value=-np.inf, kernel_shape=[3, 3])
    done = apply_pass(model, FoldPadPass)
    assert done.ops == {"MaxPool": 1} and done.error == 0.0


def test_fold_pad_refuses_zero_pad_before_max_pool(apply_pass, build_model):
    done = apply_pass(pad_then(build_model, "MaxPool", kernel_shape=[3, 3]), FoldPadPass)
    assert done.ops["Pad"] == 1 and "-inf" in done.refusals[0].reason


def test_fold_pad_refuses_reflect_mode(apply_pass, build_model):
    model = pad_then(build_model, "Conv", mode="reflect", kernel_shape=[3, 3])
    done = apply_pass(model, FoldPadPass)
    assert done.ops["Pad"] == 1 and "reflect" in done.refusals[0].reason


def test_flatten_to_reshape(apply_pass, build_model):
    node = helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=2)
    done = apply_pass(build_model([node], [("x", [2, 3, 4, 5])], ["y"]), FlattenToReshapePass)
    assert done.ops == {"Reshape": 1} and done.error == 0.0
