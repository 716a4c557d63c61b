"""GlobalPoolToAveragePoolPass and SplitMaxPoolPass: exact cascades within the 8-wide DLA window."""

import numpy as np
import pytest
from onnx import helper

from dlakit.rewrite.global_pool_to_avgpool import GlobalPoolToAveragePoolPass, window_factors
from dlakit.rewrite.split_maxpool import SplitMaxPoolPass


def kernels(applied, op):
    return [
        tuple(helper.get_attribute_value(a))
        for n in applied.nodes(op)
        for a in n.attribute
        if a.name == "kernel_shape"
    ]


@pytest.mark.parametrize(
    ("size", "factors"), [(7, [7]), (14, [7, 2]), (20, [5, 4]), (160, [8, 5, 4]), (1, [1])]
)
def test_window_factors_multiply_to_the_size(size, factors):
    assert window_factors(size, 8) == factors


def test_window_factors_refuse_a_large_prime():
    assert window_factors(13, 8) is None and window_factors(26, 8) is None


def test_global_average_pool_14x14_as_two_pools(apply_pass, build_model):
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")
    done = apply_pass(
        build_model([node], [("x", [1, 4, 14, 20])], ["y"]), GlobalPoolToAveragePoolPass
    )
    assert kernels(done, "AveragePool") == [(7, 5), (2, 4)]
    assert done.ops == {"AveragePool": 2} and done.error <= 1e-6


def test_reduce_mean_without_keepdims_as_pool_and_reshape(apply_pass, build_model):
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=0)
    model = build_model(
        [node], [("x", [2, 3, 7, 7])], ["y"], [("axes", np.array([-1, -2], np.int64))], opset=18
    )
    done = apply_pass(model, GlobalPoolToAveragePoolPass)
    assert done.ops == {"AveragePool": 1, "Reshape": 1} and kernels(done, "AveragePool") == [(7, 7)]
    assert done.error <= 1e-6


def test_reduce_mean_over_channels_is_not_the_pattern(apply_pass, build_model):
    node = helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[1])
    done = apply_pass(
        build_model([node], [("x", [1, 3, 4, 4])], ["y"], opset=13), GlobalPoolToAveragePoolPass
    )
    assert done.ops == {"ReduceMean": 1} and not done.refusals


def test_global_pool_refuses_prime_13(apply_pass, build_model):
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")
    done = apply_pass(
        build_model([node], [("x", [1, 4, 13, 13])], ["y"]), GlobalPoolToAveragePoolPass
    )
    assert done.ops == {"GlobalAveragePool": 1}
    assert "prime factor" in done.refusals[0].reason


def spp(build_model, windows=(5, 9, 13)):
    """YOLO's SPP block: parallel stride-1 'same' max pools on one tensor, concatenated."""
    nodes = [
        helper.make_node(
            "MaxPool", ["x"], [f"p{k}"], name=f"pool{k}", kernel_shape=[k, k], pads=[k // 2] * 4
        )
        for k in windows
    ]
    nodes.append(helper.make_node("Concat", ["x", *[f"p{k}" for k in windows]], ["y"], axis=1))
    return build_model(nodes, [("x", [1, 4, 13, 13])], ["y"])


def test_spp_becomes_a_chain_of_5x5_pools(apply_pass, build_model):
    done = apply_pass(spp(build_model), SplitMaxPoolPass)
    assert kernels(done, "MaxPool") == [(5, 5)] * 3
    chain = {n.input[0] for n in done.nodes("MaxPool")}
    assert chain == {"x", "p5", "p9"}  # 9 = 5 after 5, 13 = 5 after the 9
    assert done.error == 0.0


def test_lone_13x13_max_pool_splits_into_two_7x7(apply_pass, build_model):
    done = apply_pass(spp(build_model, windows=(13,)), SplitMaxPoolPass)
    assert kernels(done, "MaxPool") == [(7, 7), (7, 7)] and done.error == 0.0


@pytest.mark.parametrize(
    ("kernel", "pads", "shape"),
    [
        ([11, 3], [5, 1, 5, 1], [1, 2, 12, 9]),  # non-square
        ([9, 9], [0, 0, 0, 0], [1, 2, 13, 11]),  # no padding: the output shrinks
        ([10, 10], [6, 2, 3, 7], [1, 2, 15, 15]),  # asymmetric pads, even window
        ([17, 17], [8, 8, 8, 8], [1, 1, 20, 20]),  # three stages
    ],
)
def test_split_max_pool_is_exact(apply_pass, build_model, kernel, pads, shape):
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=kernel, pads=pads)
    done = apply_pass(build_model([node], [("x", shape)], ["y"]), SplitMaxPoolPass)
    assert all(max(k) <= 8 for k in kernels(done, "MaxPool"))
    assert len(done.nodes("MaxPool")) >= 2 and done.error == 0.0


def test_split_max_pool_refuses_stride_2(apply_pass, build_model):
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], name="pool", kernel_shape=[9, 9], pads=[4] * 4, strides=[2, 2]
    )
    done = apply_pass(build_model([node], [("x", [1, 2, 16, 16])], ["y"]), SplitMaxPoolPass)
    assert done.ops == {"MaxPool": 1} and "stride" in done.refusals[0].reason


def test_split_max_pool_refuses_dilation(apply_pass, build_model):
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], name="pool", kernel_shape=[9, 9], dilations=[2, 2]
    )
    done = apply_pass(build_model([node], [("x", [1, 2, 20, 20])], ["y"]), SplitMaxPoolPass)
    assert done.ops == {"MaxPool": 1} and "dilation" in done.refusals[0].reason
