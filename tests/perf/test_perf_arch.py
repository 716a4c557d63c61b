"""The random-weight architectures: ONNX export equals the torch module, and the layer counts
and MACs match the published architecture figures."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dlakit.graph import load_model
from dlakit.perf import build_layers
from dlakit.zoo.arch import ARCHS, export_onnx
from dlakit.zoo.arch.export import SEED


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DLAKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _macs(name, shape=None):
    model = load_model(export_onnx(name, input_shape=shape))
    return sum(layer.macs for layer in build_layers(model, "orin")), model


@pytest.mark.parametrize(
    ("name", "published_gmacs"),
    [
        ("resnet18", 1.82),  # He et al. 2015, Table 1: 1.8 GFLOPs (multiply-adds)
        ("resnet50", 4.11),  # Table 1: 3.8 GFLOPs; 4.1 with the fc and torchvision's stride 2
        ("mobilenetv1", 0.569),  # Howard et al. 2017, Table 8: 569 M mult-adds
    ],
)
def test_macs_match_the_papers(name, published_gmacs):
    macs, _ = _macs(name)
    assert macs / 1e9 == pytest.approx(published_gmacs, rel=0.03)


def test_onnx_export_equals_the_torch_module(tmp_path):
    shape = (1, 3, 96, 96)
    path = export_onnx("ssd-mobilenetv1", tmp_path / "ssd.onnx", input_shape=shape)
    torch.manual_seed(SEED)
    module = ARCHS["ssd-mobilenetv1"].build().eval()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in module(torch.from_numpy(x))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})
    assert len(got) == len(want) == 12
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3)


def test_ssd_resnet34_heads_have_mlperf_shapes():
    # MLPerf SSD-ResNet-34 1200x1200 outputs: loc 16/24/24/24/16/16 and conf 324/486/486/486/324/324
    # channels on 50, 25, 13, 7, 3, 3 maps (furiosa-models docs of the MLCommons ONNX).
    model = load_model(export_onnx("ssd-resnet34"))
    shapes = [model.shapes[o] for o in model.output_names]
    sizes = [50, 25, 13, 7, 3, 3]
    assert shapes[:6] == [
        (1, c, s, s) for c, s in zip([16, 24, 24, 24, 16, 16], sizes, strict=True)
    ]
    conf = [324, 486, 486, 486, 324, 324]
    assert shapes[6:] == [(1, c, s, s) for c, s in zip(conf, sizes, strict=True)]


def test_unknown_architecture_is_a_clear_error():
    from dlakit.errors import DlakitError

    with pytest.raises(DlakitError, match="unknown architecture 'resnet9'"):
        export_onnx("resnet9")
