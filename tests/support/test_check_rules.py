"""Verdicts and reasons on hand-built single-op models, against the rule sources."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.errors import TargetError
from dlakit.graph import load_model, save_model
from dlakit.partition import check_model
from dlakit.targets import load_target


def build(tmp_path, nodes, inputs, outputs, inits=(), opset=17, name="m.onnx"):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    return load_model(save_model(model, tmp_path / name))


def conv_model(tmp_path, k, pad=0, stride=1, c=8):
    w = np.random.default_rng(0).normal(size=(c, 3, k, k))
    node = helper.make_node(
        "Conv",
        ["x", "w"],
        ["y"],
        name="conv",
        kernel_shape=[k, k],
        pads=[pad] * 4,
        strides=[stride] * 2,
    )
    return build(tmp_path, [node], [("x", [1, 3, 40, 40])], ["y"], [("w", w)])


def verdict(result, name):
    return next(v for v in result.nodes if v.name == name)


def test_conv_within_limits_runs_on_dla(tmp_path):
    result = check_model(conv_model(tmp_path, 3, pad=1), load_target("orin"))
    v = verdict(result, "conv")
    assert v.engine == "dla" and v.reasons == [] and v.hw_engine == "conv"
    assert v.macs == 8 * 40 * 40 * 3 * 3 * 3


def test_conv_kernel_above_32_names_attribute_value_limit_and_source(tmp_path):
    result = check_model(conv_model(tmp_path, 33), load_target("orin"), trt="8.6")
    v = verdict(result, "conv")
    assert v.engine == "fallback"
    reason = next(r for r in v.reasons if r.rule == "conv.kernel")
    assert reason.attribute == "kernel_shape" and reason.value == [33, 33]
    assert reason.limit == "[1, 32]" and "dla_rules.md" in reason.source


def test_conv_kernel_limit_was_16_before_trt_7_1(tmp_path):
    model = conv_model(tmp_path, 17)
    assert verdict(check_model(model, load_target("orin"), trt="8.6"), "conv").engine == "dla"


def test_conv_stride_and_pad_limits(tmp_path):
    v = verdict(check_model(conv_model(tmp_path, 9, stride=9), load_target("orin")), "conv")
    assert "conv.stride" in [r.rule for r in v.reasons]
    v = verdict(check_model(conv_model(tmp_path, 3, pad=3), load_target("orin")), "conv")
    assert "conv.pad_lt_kernel" in [r.rule for r in v.reasons]


def pool_model(tmp_path, op, k, pad, **attrs):
    node = helper.make_node(
        op, ["x"], ["y"], name="pool", kernel_shape=[k, k], pads=[pad] * 4, **attrs
    )
    return build(tmp_path, [node], [("x", [1, 8, 20, 20])], ["y"])


def test_maxpool_window_over_8_is_flagged_with_its_fix(tmp_path):
    v = verdict(check_model(pool_model(tmp_path, "MaxPool", 9, 4), load_target("orin")), "pool")
    reason = next(r for r in v.reasons if r.rule == "pool.window")
    assert v.engine == "fallback" and reason.value == [9, 9] and reason.fix == "split-maxpool"


def test_xavier_refuses_exclusive_average_padding_orin_accepts_it(tmp_path):
    model = pool_model(tmp_path, "AveragePool", 3, 1, count_include_pad=0)
    assert verdict(check_model(model, load_target("orin")), "pool").engine == "dla"
    v = verdict(check_model(model, load_target("xavier")), "pool")
    assert [r.rule for r in v.reasons] == ["pool.exclusive_pad"]


def unary_model(tmp_path, op, shape=(1, 8, 4, 4), **attrs):
    node = helper.make_node(op, ["x"], ["y"], name="op", **attrs)
    return build(tmp_path, [node], [("x", list(shape))], ["y"])


def test_sigmoid_needs_the_lut_nv_small_lacks_it(tmp_path):
    model = unary_model(tmp_path, "Sigmoid")
    v = verdict(check_model(model, load_target("nv_small")), "op")
    assert v.engine == "fallback" and v.reasons[0].rule == "engine.absent"
    assert v.reasons[0].value == "sdp_lut"
    assert verdict(check_model(model, load_target("nv_full")), "op").engine == "dla"
    on_orin = verdict(check_model(model, load_target("orin")), "op")
    assert on_orin.engine == "dla" and on_orin.precision == "fp16"


def test_softmax_is_orin_only(tmp_path):
    model = unary_model(tmp_path, "Softmax", axis=1)
    assert verdict(check_model(model, load_target("orin")), "op").engine == "dla"
    v = verdict(check_model(model, load_target("xavier")), "op")
    assert [r.rule for r in v.reasons] == ["softmax.xavier"]


def binary_model(tmp_path, op):
    node = helper.make_node(op, ["a", "b"], ["y"], name="op")
    return build(tmp_path, [node], [("a", [1, 8, 4, 4]), ("b", [1, 8, 4, 4])], ["y"])


def test_div_reaches_the_dla_in_trt_8_6_12(tmp_path):
    model = binary_model(tmp_path, "Div")
    v = verdict(check_model(model, load_target("orin"), trt="8.6"), "op")
    assert v.engine == "fallback" and v.reasons[0].rule == "op.version"
    assert verdict(check_model(model, load_target("orin"), trt="8.6.12"), "op").engine == "dla"


def test_elementwise_of_two_tensors_needs_sdp_ew(tmp_path):
    model = binary_model(tmp_path, "Add")
    v = verdict(check_model(model, load_target("nv_small")), "op")
    assert v.engine == "fallback" and v.reasons[0].value == "sdp_ew"
    assert verdict(check_model(model, load_target("nv_full")), "op").engine == "dla"


def test_unlisted_op_falls_back_with_the_matrix_as_source(tmp_path):
    v = verdict(check_model(unary_model(tmp_path, "Exp"), load_target("orin")), "op")
    assert v.engine == "fallback" and "RFE" in v.reasons[0].message


def test_trt_versions_without_dla_are_refused(tmp_path):
    model = unary_model(tmp_path, "Relu")
    with pytest.raises(TargetError, match="no DLA"):
        check_model(model, load_target("orin"), trt="11.2")
    with pytest.raises(TargetError, match="Xavier"):
        check_model(model, load_target("xavier"), trt="10.7")
    with pytest.raises(TargetError, match="not a TensorRT version"):
        check_model(model, load_target("orin"), trt="eight")


def test_dims_above_8192_fall_back(tmp_path):
    v = verdict(
        check_model(unary_model(tmp_path, "Relu", (1, 1, 1, 9000)), load_target("orin")), "op"
    )
    assert [r.rule for r in v.reasons] == ["general.dims"]


def test_json_has_the_documented_fields(tmp_path):
    doc = check_model(conv_model(tmp_path, 33), load_target("orin")).to_json()
    assert doc["schema"] == "dlakit.check" and doc["schema_version"] == 3
    node = doc["nodes"][0]
    assert {"name", "op", "engine", "reasons"} <= node.keys()
    assert {"rule", "kind", "message", "source"} <= node["reasons"][0].keys()
    assert node["reasons"][0]["kind"] == "rule"
    assert {"segments", "summary", "recommendations", "policy_applied"} <= doc.keys()
    assert doc["policy_applied"] is False and doc["recommendations"] == []
    onnx.checker.check_model(load_model(tmp_path / "m.onnx").proto)


def test_every_fix_named_by_a_rule_is_a_rewrite_pass():
    from dlakit.rewrite import PASSES
    from dlakit.support.rules import load_rule_set

    names = {p.name for p in PASSES}
    for rule_set in ("trt", "nvdla"):
        for op, entry in load_rule_set(rule_set).ops.items():
            fixes = [entry.get("fix"), entry.get("since_fix")]
            fixes += [c.get("fix") for c in entry.get("checks", [])]
            for fix in filter(None, fixes):
                assert fix in names, f"{rule_set}:{op} names unknown rewrite {fix}"


def shuffle_model(tmp_path, op, shape, target_shape=None, **attrs):
    """One Shuffle-type node; Reshape/Unsqueeze/Squeeze take their shape or axes as a constant."""
    inputs, inits = ["x"], []
    if op == "Reshape":
        inputs.append("shape")
        inits = [numpy_helper.from_array(np.array(target_shape, np.int64), "shape")]
    if op in ("Unsqueeze", "Squeeze"):
        inputs.append("axes")
        inits = [numpy_helper.from_array(np.array(attrs.pop("axes"), np.int64), "axes")]
    node = helper.make_node(op, inputs, ["y"], name="op", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return load_model(save_model(model, tmp_path / f"{op}.onnx"))


@pytest.mark.parametrize(
    ("op", "shape", "kwargs", "ranks"),
    [
        ("Reshape", (1, 64, 20, 20), {"target_shape": [1, 64, 400]}, "4-D -> 3-D"),
        ("Reshape", (1, 64, 400), {"target_shape": [1, 4, 16, 400]}, "3-D -> 4-D"),
        ("Reshape", (1, 64, 7, 7), {"target_shape": [1, 3136]}, "4-D -> 2-D"),
        ("Flatten", (1, 64, 7, 7), {"axis": 1}, "4-D -> 2-D"),
        ("Unsqueeze", (1, 4, 400), {"axes": [1]}, "3-D -> 4-D"),
        ("Squeeze", (1, 1, 4, 400), {"axes": [1]}, "4-D -> 3-D"),
        ("Transpose", (1, 4, 400), {"perm": [0, 2, 1]}, "3-D -> 3-D"),
    ],
)
def test_shuffles_that_are_not_4d_to_4d_fall_back_on_every_trt_version(
    tmp_path, op, shape, kwargs, ranks
):
    model = shuffle_model(tmp_path, op, shape, **kwargs)
    for trt in ("8.5", "8.6", "10.7"):
        v = verdict(check_model(model, load_target("orin"), trt=trt), "op")
        assert v.engine == "fallback", trt
        assert v.reasons[0].rule == "shuffle.rank" and v.reasons[0].value == ranks
    on_xavier = verdict(check_model(model, load_target("xavier"), trt="8.5"), "op")
    assert on_xavier.reasons[0].rule == "shuffle.rank"


def test_4d_shuffles_run_on_the_dla_unless_they_move_the_batch(tmp_path):
    view = shuffle_model(tmp_path, "Reshape", (1, 64, 20, 20), target_shape=[1, 4, 16, 400])
    assert verdict(check_model(view, load_target("orin")), "op").engine == "dla"
    nhwc = shuffle_model(tmp_path, "Transpose", (1, 64, 20, 20), perm=[0, 2, 3, 1])
    assert verdict(check_model(nhwc, load_target("orin")), "op").engine == "dla"
    batch = shuffle_model(tmp_path, "Reshape", (2, 32, 20, 20), target_shape=[1, 64, 20, 20])
    v = verdict(check_model(batch, load_target("orin")), "op")
    assert [r.rule for r in v.reasons] == ["shuffle.batch"]
    flatten = shuffle_model(tmp_path, "Flatten", (1, 64, 7, 7), axis=1)
    assert verdict(check_model(flatten, load_target("orin")), "op").reasons[0].fix == (
        "flatten-to-reshape"
    )
