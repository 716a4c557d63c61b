"""Canonical form: static shapes, shape chains folded, shared-weight Identities aliased."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from dlakit.graph import load_model, save_model


def run(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_identity_of_a_shared_weight_is_aliased_and_function_kept(tmp_path):
    w = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(4, 4, 1, 1)).astype(np.float32), "w"
    )
    nodes = [
        helper.make_node("Identity", ["w"], ["w_a"], name="id_a"),
        helper.make_node("Identity", ["w"], ["w_b"], name="id_b"),
        helper.make_node("Conv", ["x", "w_a"], ["t"], name="c1"),
        helper.make_node("Conv", ["t", "w_b"], ["y"], name="c2"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    path = save_model(model, tmp_path / "m.onnx")
    loaded = load_model(path)
    assert [n.op_type for n in loaded.nodes] == ["Conv", "Conv"]
    assert loaded.nodes[0].input[1] == "w"
    x = np.random.default_rng(1).normal(size=(1, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(run(loaded.proto, x), run(model, x), rtol=1e-6)


def test_shape_chain_is_folded_and_every_tensor_has_a_static_shape(tmp_path):
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Reshape", ["x", "s"], ["y0"], name="reshape"),
        helper.make_node("Relu", ["y0"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    loaded = load_model(save_model(model, tmp_path / "m.onnx"), {"x": (2, 3, 4, 4)})
    assert "Shape" not in [n.op_type for n in loaded.nodes]
    assert all(loaded.shapes[o] == (2, 3, 4, 4) for n in loaded.nodes for o in n.output)
