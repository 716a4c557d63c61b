"""Passes that turn a layer into a (one-hot) convolution: Gemm/MatMul, DepthToSpace, SpaceToDepth,
channel Gather and strided Slice."""

import numpy as np
import pytest
from onnx import helper

from dlakit.rewrite.depth_to_space import DepthToSpaceToConvTransposePass
from dlakit.rewrite.gather_to_conv import GatherToConvPass
from dlakit.rewrite.gemm_to_conv import GemmToConvPass
from dlakit.rewrite.space_to_depth import SpaceToDepthToConvPass
from dlakit.rewrite.strided_slice_to_conv import StridedSliceToConvPass

RNG = np.random.default_rng(2)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_classifier_head_gemm_reads_the_pooled_tensor(apply_pass, build_model):
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w", "c"], ["y"], name="fc", transB=1, alpha=0.5, beta=2.0),
    ]
    model = build_model(nodes, [("x", [1, 16, 7, 7])], ["y"], [("w", f32(10, 16)), ("c", f32(10))])
    done = apply_pass(model, GemmToConvPass)
    assert done.ops == {"GlobalAveragePool": 1, "Conv": 1, "Reshape": 1}  # the Flatten is gone
    assert done.nodes("Conv")[0].input[0] == "g"
    assert done.error <= 1e-5


def test_matmul_and_bias_add_as_one_conv(apply_pass, build_model):
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["y"], name="bias"),
    ]
    model = build_model(nodes, [("x", [3, 12])], ["y"], [("w", f32(12, 5)), ("b", f32(5))])
    done = apply_pass(model, GemmToConvPass)
    assert done.ops == {"Reshape": 2, "Conv": 1} and len(done.nodes("Conv")[0].input) == 3
    assert done.error <= 1e-5


def test_gemm_on_a_flattened_map_as_a_full_map_conv(apply_pass, build_model):
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w"], ["y"], name="fc"),
    ]
    inits = [("shape", np.array([1, -1], np.int64)), ("w", f32(8 * 3 * 5, 6))]
    done = apply_pass(build_model(nodes, [("x", [1, 8, 3, 5])], ["y"], inits), GemmToConvPass)
    conv = done.nodes("Conv")[0]
    kernel = next(helper.get_attribute_value(a) for a in conv.attribute if a.name == "kernel_shape")
    assert conv.input[0] == "x" and kernel == [3, 5]
    assert done.ops == {"Conv": 1, "Reshape": 1} and done.error <= 1e-5


def test_gemm_to_conv_refuses_non_constant_weights(apply_pass, build_model):
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    done = apply_pass(build_model([node], [("x", [1, 8]), ("w", [8, 4])], ["y"]), GemmToConvPass)
    assert done.ops == {"MatMul": 1} and "not a constant" in done.refusals[0].reason


def test_gemm_to_conv_refuses_batched_matmul(apply_pass, build_model):
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    done = apply_pass(
        build_model([node], [("x", [2, 3, 8])], ["y"], [("w", f32(8, 4))]), GemmToConvPass
    )
    assert done.ops == {"MatMul": 1} and "2-D" in done.refusals[0].reason


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_as_one_hot_deconv(apply_pass, build_model, mode):
    node = helper.make_node("DepthToSpace", ["x"], ["y"], name="d2s", blocksize=2, mode=mode)
    done = apply_pass(
        build_model([node], [("x", [1, 12, 5, 6])], ["y"]), DepthToSpaceToConvTransposePass
    )
    assert done.ops == {"ConvTranspose": 1} and done.error == 0.0


def test_space_to_depth_as_one_hot_conv(apply_pass, build_model):
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], name="s2d", blocksize=2)
    done = apply_pass(build_model([node], [("x", [1, 3, 8, 6])], ["y"]), SpaceToDepthToConvPass)
    assert done.ops == {"Conv": 1} and done.error == 0.0


def test_space_to_depth_refuses_block_over_stride_limit(apply_pass, build_model):
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], name="s2d", blocksize=9)
    done = apply_pass(build_model([node], [("x", [1, 1, 18, 18])], ["y"]), SpaceToDepthToConvPass)
    assert done.ops == {"SpaceToDepth": 1} and "limit" in done.refusals[0].reason


def test_channel_gather_as_one_hot_conv(apply_pass, build_model):
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=1)
    inits = [("i", np.array([2, 0, 0, -1], np.int64))]  # repeats and a negative index
    done = apply_pass(build_model([node], [("x", [1, 5, 3, 3])], ["y"], inits), GatherToConvPass)
    assert done.ops == {"Conv": 1} and done.error == 0.0


def test_gather_to_conv_refuses_axis_2(apply_pass, build_model):
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=2)
    inits = [("i", np.array([1, 0], np.int64))]
    done = apply_pass(build_model([node], [("x", [1, 5, 3, 3])], ["y"], inits), GatherToConvPass)
    assert done.ops == {"Gather": 1} and "axis 2" in done.refusals[0].reason


def focus_slice(build_model, start, end=2**62):
    """x[:, :, start::2, 1::2] as one Slice, the YOLOv5 'Focus' pattern."""
    node = helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="focus")
    inits = [
        ("s", np.array([start, 1], np.int64)),
        ("e", np.array([end, 2**62], np.int64)),
        ("a", np.array([2, 3], np.int64)),
        ("st", np.array([2, 2], np.int64)),
    ]
    return build_model([node], [("x", [1, 3, 9, 8])], ["y"], inits)


@pytest.mark.parametrize("start", [0, 1, -3])
def test_strided_slice_as_depthwise_conv(apply_pass, build_model, start):
    done = apply_pass(focus_slice(build_model, start), StridedSliceToConvPass)
    assert done.ops == {"Conv": 1} and done.error == 0.0


def test_strided_slice_refuses_early_stop(apply_pass, build_model):
    done = apply_pass(focus_slice(build_model, 0, end=5), StridedSliceToConvPass)
    assert done.ops == {"Slice": 1} and "before the end" in done.refusals[0].reason


def test_an_activation_between_two_reshapes_runs_on_the_original_tensor(apply_pass, build_model):
    from dlakit.rewrite.reshape_round_trip import ReshapeRoundTripPass

    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["f"], name="to2d"),
        helper.make_node("Relu", ["f"], ["r"], name="relu"),
        helper.make_node("Clip", ["r", "lo", "hi"], ["c"], name="clip"),
        helper.make_node("Reshape", ["c", "back"], ["y"], name="to4d"),
    ]
    inits = [
        ("flat", np.array([2, 24], np.int64)),
        ("back", np.array([2, 24, 1, 1], np.int64)),
        ("lo", np.array(0.0, np.float32)),
        ("hi", np.array(0.5, np.float32)),
    ]
    model = build_model(nodes, [("x", [2, 24, 1, 1])], ["y"], inits)
    done = apply_pass(model, ReshapeRoundTripPass)
    assert done.ops == {"Relu": 1, "Clip": 1} and done.nodes("Relu")[0].input[0] == "x"
    assert done.error == 0.0


def test_a_reshape_to_another_shape_is_no_round_trip(apply_pass, build_model):
    from dlakit.rewrite.reshape_round_trip import ReshapeRoundTripPass

    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["f"], name="to2d"),
        helper.make_node("Relu", ["f"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "other"], ["y"], name="to3d"),
    ]
    inits = [("flat", np.array([2, 24], np.int64)), ("other", np.array([2, 4, 6], np.int64))]
    done = apply_pass(
        build_model(nodes, [("x", [2, 24, 1, 1])], ["y"], inits), ReshapeRoundTripPass
    )
    assert done.ops == {"Reshape": 2, "Relu": 1}
