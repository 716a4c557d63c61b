"""``dlakit compile --precision fp16`` (nv_full): FP16 hardware layers on the simulator.

The simulator's FP16 units are bit-exact to the NVDLA C model (tests/sim), so the compiled model
run on it is the definition of the FP16 result. Checked here on small synthetic graphs:

* every FP16 convolution layer's output equals the C model's FP16 primitives applied to its
  input, weights and operands directly (``fp16_conv.conv_fp16``, ``FpAdd``/``FpMin``/``FpRelu``,
  FP32 -> FP16; max pooling as FP16 maxima): the compiler's layouts, weight images, operand tables
  and registers add nothing;
* the result is FP16-close to onnxruntime FP32;
* the loadables (``--format loadable``) run by dlakit's loadable runner byte-equal to the ``.dla``
  path;
* one compiled 16-bit convolution's descriptors against the official regression loadable of the
  same layer (CONV_D_L0_0, INT16: no official FP16 loadable exists), field by field;
* nv_small and wrong flag combinations refused in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from loadable_cases import compare_with_dla
from onnx import TensorProto, helper, numpy_helper

from dlakit.cli import main
from dlakit.graph import load_model
from dlakit.lower.qgraph import QConv, XUnit
from dlakit.nvdla.api import compile_model
from dlakit.run.runner import Runner
from dlakit.sim import fp16_conv
from dlakit.sim.fp16 import FP32, fp16_to_fp32, fp32_to_fp16, fp_add, fp_max, fp_min, fp_relu


def _model(path: Path, add: bool = False, seed: int = 0) -> Path:
    """conv3x3+BN+ReLU -> maxpool (on the fly) -> conv1x1+ReLU6 [-> Add] -> avgpool -> FC."""
    rng = np.random.default_rng(seed)
    c, k = 20, 24
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 10, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)

    def init(name, value):
        return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

    inits = [
        init("w", rng.normal(size=(k, c, 3, 3)) * 0.2),
        init("b", rng.normal(size=k)),
        init("g", rng.uniform(0.5, 1.5, k)),
        init("be", rng.normal(size=k)),
        init("m", rng.normal(size=k) * 0.1),
        init("v", rng.uniform(0.5, 2, k)),
        init("w2", rng.normal(size=(k, k, 1, 1)) * 0.3),
        init("fc", rng.normal(size=(10, k * 2 * 2)) * 0.2),
        init("fcb", rng.normal(size=10)),
        init("lo", 0.0),
        init("hi", 6.0),
    ]
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w", "b"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3], name="conv1"),
        mk("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn"], name="bn"),
        mk("Relu", ["bn"], ["r1"], name="relu1"),
        mk("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        mk("Conv", ["p1", "w2"], ["c2"], kernel_shape=[1, 1], name="conv2"),
        mk("Clip", ["c2", "lo", "hi"], ["r2"], name="relu6"),
    ]
    # An Identity (a layout no-op) keeps conv2's output in memory, where the test reads it.
    nodes.append(mk("Identity", ["r2"], ["i2"], name="keep"))
    last = "i2"
    if add:
        nodes.append(mk("Add", ["i2", "p1"], ["a"], name="add"))
        last = "a"
    nodes += [
        mk("AveragePool", [last], ["p2"], kernel_shape=[3, 3], strides=[2, 2], name="pool2"),
        mk("Flatten", ["p2"], ["f"], name="flat"),
        mk("Gemm", ["f", "fc", "fcb"], ["y"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(nodes, "fp16", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _input(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(1, 20, 10, 10)).astype(np.float32)


def _bits(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, np.float16).view(np.uint16).astype(np.int64))


def _x_unit(acc: torch.Tensor, unit: XUnit | None) -> torch.Tensor:
    """One X unit on FP32 patterns with register/per-channel FP16 operands (ALU, ReLU)."""
    if unit is None:
        return acc
    assert unit.mul is None  # a convolution's chain: bias, ReLU, upper clip
    if unit.alu is not None:
        op = fp16_to_fp32(_bits(unit.alu_operand)).reshape(-1, 1, 1).expand_as(acc)
        acc = {"sum": fp_add, "max": fp_max, "min": fp_min}[unit.alu](acc, op, FP32)
    return fp_relu(acc, FP32) if unit.relu else acc


def _conv_reference(layer: QConv, x: np.ndarray) -> np.ndarray:
    """The C model's FP16 convolution and SDP primitives on the layer's own numbers."""
    top, left = layer.pads[0], layer.pads[1]
    oh = (x.shape[1] + layer.pads[0] + layer.pads[2] - layer.weight.shape[2]) // layer.stride[0]
    ow = (x.shape[2] + layer.pads[1] + layer.pads[3] - layer.weight.shape[3]) // layer.stride[1]
    acc = fp16_conv.conv_fp16(
        _bits(x), _bits(layer.weight), layer.stride, layer.dilation, (left, 0, top, 0),
        (oh + 1, ow + 1), 0,
    )  # fmt: skip
    acc = _x_unit(_x_unit(acc, layer.sdp.x1), layer.sdp.x2)
    out = fp32_to_fp16(acc).numpy().astype(np.uint16).view(np.float16)
    return out


def _maxpool(x: np.ndarray, k: int, s: int) -> np.ndarray:
    h, w = x.shape[1:]
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    win = [x[:, i : i + s * oh : s, j : j + s * ow : s] for i in range(k) for j in range(k)]
    return np.max(np.stack(win), axis=0)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = _model(tmp_path_factory.mktemp("fp16") / "fp16.onnx")
    loaded = load_model(path)
    return path, compile_model(loaded, {}, "nv_full", precision="fp16", via_firmware=True)


def test_every_layer_is_an_fp16_hardware_layer(compiled):
    _, comp = compiled
    # The Flatten changes the feature layout: the target's rule sends it to the host, as in INT8.
    assert {n: v["rule"] for n, v in comp.stats["fallback_nodes"].items()} == {
        "flat": "reshape.noop"
    }
    assert comp.stats["dla_segments"] == 2
    assert comp.stats["fp16_layers"] == 5  # conv1, pool1 (on the fly), conv2, pool2, fc
    assert {k: v for k, v in comp.stats["ops_by_kind"].items() if v} == {"conv": 3, "pdp": 1}
    assert comp.stats["pools_on_the_fly"] == 1
    for seg in comp.segments:
        if seg.kind == "dla":
            assert all(comp.tensors[n].precision == "fp16" for n in [*seg.inputs, *seg.outputs])
    # The replay engine decodes INT8 only: FP16 operations run the unit models, with the reason.
    assert Runner(comp).program.definition_reasons == {
        "FP16 data path: the fast decoder covers INT8 only": 4
    }


def test_convolutions_equal_the_c_model_primitives(compiled):
    _, comp = compiled
    from dlakit.lower.lowering_fp16 import lower_fp16

    graph = lower_fp16(load_model(compiled[0]), "nv_full")
    layers = {layer.name: layer for layer in graph.layers if isinstance(layer, QConv)}
    keep = {"x::fp16", "p1", "r2", "y"}
    _, stats = Runner(comp).run({"x": _input()}, keep=keep)
    kept = {k: np.asarray(v)[0].astype(np.float16) for k, v in stats.kept.items()}
    conv1 = _conv_reference(layers["conv1"], kept["x::fp16"])
    np.testing.assert_array_equal(_maxpool(conv1, 2, 2).view(np.uint16), kept["p1"].view(np.uint16))
    conv2 = _conv_reference(layers["conv2"], kept["p1"])
    np.testing.assert_array_equal(conv2.view(np.uint16), kept["r2"].view(np.uint16))


def test_close_to_onnxruntime_fp32(compiled):
    """Three images in one batch (the host pieces keep the batch dimension)."""
    path, comp = compiled
    x = np.concatenate([_input(seed) for seed in (1, 2, 3)])
    got, _ = Runner(comp).run({"x": x})
    session = ort.InferenceSession(str(path))
    want = np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(3)])
    err = np.abs(got["y"] - want).max()
    assert err <= 2e-3 * np.abs(want).max() + 1e-3, err


def test_loadables_byte_equal_to_the_dla_path(compiled, tmp_path):
    _, comp = compiled
    results = compare_with_dla(comp, _input(), tmp_path)
    assert len(results) == comp.stats["dla_segments"]
    for r in results:
        assert r.bytes_compared > 0 and r.bytes_differing == 0, r


def test_fp16_add_runs_on_the_host_with_its_reason(tmp_path):
    path = _model(tmp_path / "add.onnx", add=True)
    comp = compile_model(load_model(path), {}, "nv_full", precision="fp16")
    assert comp.stats["fallback_nodes"]["add"]["rule"] == "fp16.sdp_ew"
    x = _input()
    got, _ = Runner(comp).run({"x": x})
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert np.abs(got["y"] - want).max() <= 2e-3 * np.abs(want).max() + 1e-3
    results = compare_with_dla(comp, x, tmp_path)
    assert len(results) == comp.stats["dla_segments"] == 3, results
    assert all(r.bytes_compared > 0 and r.bytes_differing == 0 for r in results), results


def test_cli_compiles_fp16_and_refuses_nv_small(tmp_path, capsys):
    path = _model(tmp_path / "m.onnx")
    assert main(["compile", str(path), "-t", "nv_full", "--precision", "fp16",
                 "-o", str(tmp_path / "m.dla")]) == 0  # fmt: skip
    assert (tmp_path / "m.dla").is_file()
    assert main(["compile", str(path), "-t", "nv_full", "--precision", "fp16", "-f",
                 "loadable", "-o", str(tmp_path / "m.nvdla")]) == 0  # fmt: skip
    assert (tmp_path / "m.nvdla").stat().st_size > 0
    capsys.readouterr()
    cases = [
        (["-t", "nv_small", "--precision", "fp16"], "nv_small's DLA has no FP16"),
        (["-t", "nv_full"], "--scales is required"),
        (["-t", "nv_full", "--precision", "fp16", "-s", str(path)], "reads no scales"),
    ]
    for flags, message in cases:
        out = tmp_path / "x.dla"
        assert main(["compile", str(path), *flags, "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and not out.exists()


def _conv_model(path: Path, c: int, hw: int, k: int, r: int) -> Path:
    rng = np.random.default_rng(2)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array((rng.normal(size=(k, c, r, r)) / np.sqrt(c * r * r)).astype(
        np.float32), "w")  # fmt: skip
    b = numpy_helper.from_array(rng.normal(size=k).astype(np.float32), "b")
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], pads=[r // 2] * 4, kernel_shape=[r, r], name="conv"
        ),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "conv", [x], [y], [w, b]),
                              opset_imports=[helper.make_opsetid("", 13)])  # fmt: skip
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("c", "hw", "k", "r", "split"),
    [(16, 96, 16, 1, "rows"), (256, 1, 256, 3, "kernels")],
)
def test_tiled_convolutions_equal_the_c_model_primitives(c, hw, k, r, split, tmp_path):
    """A convolution whose FP16 input rows (or weights) do not fit CBUF runs in tiles; the
    tiles together equal the untiled C-model computation bit for bit."""
    from dlakit.lower.lowering_fp16 import lower_fp16

    loaded = load_model(_conv_model(tmp_path / "c.onnx", c, hw, k, r))
    comp = compile_model(loaded, {}, "nv_full", precision="fp16")
    ops = [op for seg in comp.segments for op in seg.ops]
    assert comp.stats["tiling"]["split_layers"] == 1 and len(ops) > 1
    tiles = {(op.info["tile"]["rows_from"], op.info["tile"]["kernels_from"]) for op in ops}
    assert len({t[0 if split == "rows" else 1] for t in tiles}) == len(ops)
    (layer,) = [la for la in lower_fp16(loaded, "nv_full").layers if isinstance(la, QConv)]
    x = np.random.default_rng(3).normal(size=(1, c, hw, hw)).astype(np.float32)
    got, _ = Runner(comp).run({"x": x})
    want = _conv_reference(layer, x[0].astype(np.float16))
    np.testing.assert_array_equal(got["y"][0].astype(np.float16).view(np.uint16),
                                  want.view(np.uint16))  # fmt: skip
