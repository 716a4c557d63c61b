"""Element-wise fallback graphs with an integer output as one compiled pass: the same bytes as
the torch interpreter (the definition) on every graph of the supported ops, and a miss (None,
then torch decides) wherever a C cast or the sign of a zero would make the two differ."""

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from dlakit.run.elementwise import Program
from dlakit.run.torch_exec import TorchGraph

SHAPE = (3, 5, 7, 11)  # 1155 values: two blocks, the second partial
_BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min"]
_UNARY = ["Abs", "Neg", "Floor", "Sign", "Relu", "Identity"]
_INT = {TensorProto.INT8: 8, TensorProto.UINT8: 8, TensorProto.INT16: 16, TensorProto.INT32: 32}


def _model(steps, float_type: int, out_type: int, saturate: bool = True) -> onnx.ModelProto:
    nodes, inits, value = [], [], "x"
    nodes.append(helper.make_node("Cast", ["x"], ["v0"], to=float_type))
    value = "v0"
    np_type = np.float32 if float_type == TensorProto.FLOAT else np.float64
    for i, (op, constant, first) in enumerate(steps):
        out = f"v{i + 1}"
        if op in _BINARY:
            name = f"c{i}"
            inits.append(numpy_helper.from_array(np.array(constant, np_type), name))
            nodes.append(helper.make_node(op, [name, value] if first else [value, name], [out]))
        elif op == "Clip":
            lo, hi = f"lo{i}", f"hi{i}"
            inits.append(numpy_helper.from_array(np.array(-abs(constant), np_type), lo))
            inits.append(numpy_helper.from_array(np.array(abs(constant), np_type), hi))
            nodes.append(helper.make_node("Clip", [value, lo, hi], [out]))
        elif op == "Cast":
            other = TensorProto.DOUBLE if float_type == TensorProto.FLOAT else TensorProto.FLOAT
            nodes.append(helper.make_node("Cast", [value], [out + "c"], to=other))
            nodes.append(helper.make_node("Cast", [out + "c"], [out], to=float_type))
        else:
            nodes.append(helper.make_node(op, [value], [out]))
        value = out
    # saturate to the output type, then the integer cast
    bits = _INT[out_type]
    lo, hi = (
        (0.0, 255.0)
        if out_type == TensorProto.UINT8
        else (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    )
    inits += [numpy_helper.from_array(np.array(lo, np_type), "sat_lo"),
              numpy_helper.from_array(np.array(hi, np_type), "sat_hi")]  # fmt: skip
    if saturate:
        nodes.append(helper.make_node("Clip", [value, "sat_lo", "sat_hi"], ["sat"]))
        value = "sat"
    nodes.append(helper.make_node("Cast", [value], ["y"], to=out_type))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", out_type, SHAPE)], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _input(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.normal(0, 1, SHAPE) * 10.0 ** rng.integers(-3, 4, SHAPE)).astype(np.float32)
    flat = x.reshape(-1)
    flat[:40] = [0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, 1e-45, -1e-45, 3.4e38, -3.4e38] * 3 + [
        0.25
    ] * 7
    return x


def _torch(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    graph = TorchGraph(model)
    graph.program = None  # the definition
    return graph.run({"x": torch.from_numpy(x)})["y"].numpy()


_STEP = st.tuples(
    st.sampled_from(_BINARY + _UNARY + ["Clip", "Cast"]),
    st.sampled_from([0.5, -2.0, 3.0, 0.1, 1e-3, 255.5, 7.0, -0.0]),
    st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(_STEP, min_size=1, max_size=8),
    float_type=st.sampled_from([TensorProto.FLOAT, TensorProto.DOUBLE]),
    out_type=st.sampled_from(sorted(_INT)),
    seed=st.integers(0, 3),
)
def test_the_compiled_pass_gives_torchs_bytes_or_misses(steps, float_type, out_type, seed):
    model = _model(steps, float_type, out_type)
    program = Program.of(model)
    assert program is not None
    x = _input(seed)
    got = program.run(x)
    if got is None:
        return  # a miss: TorchGraph runs torch instead (tested below)
    np.testing.assert_array_equal(got, _torch(model, x))
    assert got.dtype == _torch(model, x).dtype


def test_nan_or_an_unsaturated_cast_misses_and_torch_decides():
    model = _model([("Mul", 3.0, False)], TensorProto.DOUBLE, TensorProto.INT8, saturate=False)
    program = Program.of(model)
    x = np.zeros(SHAPE, np.float32)
    assert program.run(x) is not None
    x.reshape(-1)[5] = 100.0  # 300: outside INT8, where a C cast is undefined
    assert program.run(x) is None
    x.reshape(-1)[5] = np.nan
    assert program.run(x) is None
    graph = TorchGraph(model)
    assert graph.program is not None
    y = graph.run({"x": torch.from_numpy(x)})["y"]  # torch's answer, whatever it is
    assert torch.equal(y, torch.from_numpy(_torch(model, x)))


def test_division_by_zero_misses():
    model = _model([("Div", 2.0, True)], TensorProto.DOUBLE, TensorProto.INT8)
    x = np.ones(SHAPE, np.float32)
    assert Program.of(model).run(x) is not None
    x.reshape(-1)[7] = -0.0  # 2 / -0 = -inf: the sign of a zero decides
    assert Program.of(model).run(x) is None


def test_a_value_of_another_type_misses():
    model = _model([("Add", 1.0, False)], TensorProto.DOUBLE, TensorProto.INT8)
    assert Program.of(model).run(np.zeros(SHAPE, np.float64)) is None


def _float_output(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.node[-1].attribute[0].i = TensorProto.FLOAT
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    return m


@pytest.mark.parametrize("change", ["float output", "wide constant", "vector constant"])
def test_graphs_it_cannot_take_stay_with_torch(change):
    model = _model([("Add", 1.0, False)], TensorProto.DOUBLE, TensorProto.INT8)
    if change == "float output":  # the sign of a zero would reach the bytes
        model = _float_output(model)
    else:
        shape = (1, 1, 1, 1, 1) if change == "wide constant" else (1, 5, 1, 1)
        init = model.graph.initializer[0]
        init.CopyFrom(numpy_helper.from_array(np.ones(shape, np.float64), init.name))
    assert Program.of(model) is None


def test_the_compilers_input_quantization_takes_the_compiled_pass():
    from dlakit.lower.qgraph import QQuantize
    from dlakit.nvdla.fallback import _quantize

    inits: list = []
    layer = QQuantize(name="q", inputs=["x"], outputs=["y"], scale=0.25)
    nodes = _quantize(layer, inits)
    graph = helper.make_graph(
        nodes, "fallback0", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.INT8, SHAPE)], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    torch_graph = TorchGraph(model)
    assert torch_graph.program is not None
    x = _input(1)
    ties = (np.arange(-300, 300) + 0.5).astype(np.float32) * np.float32(0.25)  # and saturation
    x.reshape(-1)[: ties.size] = ties
    got = torch_graph.run({"x": torch.from_numpy(x)})["y"].numpy()
    np.testing.assert_array_equal(got, _torch(model, x))
