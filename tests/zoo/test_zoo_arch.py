"""The random-weight architectures issue 10's planner needs: each exports at its published input
size, loads, has the published parameter count and MACs, and `dlakit check` runs on it for orin.

Parameters are the float initializers of the exported graph: batch norm folds into the conv
biases, so a batch-normed net counts one number per channel less than its PyTorch module (under
0.3% here). MACs are dlakit.graph.stats' Conv/Gemm multiply-accumulates.
"""

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dlakit.cli import main
from dlakit.errors import DlakitError
from dlakit.graph import load_model
from dlakit.graph.stats import model_macs
from dlakit.zoo import entries
from dlakit.zoo.arch import ARCHS, export_onnx
from dlakit.zoo.arch.export import SEED

# name: input, (params in M, tolerance), (G MACs, tolerance), (Conv, Gemm) nodes, source
PUBLISHED = {
    "mobilenetv1": (
        224, (4.2, 0.01), (0.569, 0.01), (27, 1),
        "Howard et al. 2017, Table 8: 569 M mult-adds, 4.2 M parameters",
    ),
    "googlenet": (
        224, (6.8, 0.03), (1.586, 0.01), (57, 1),
        "Szegedy et al. 2014, Table 1: params column sums to 6.8 M (its per-layer counts run a "
        "little under the layer sizes it lists: conv1, 7x7x3x64, is 9.4 K, not 2.7 K), ops "
        "column to 1.586 G (the text rounds to 1.5 billion multiply-adds); 22 layers with "
        "parameters = 57 convs in depth order + FC",
    ),
    "yolov3-tiny": (
        416, (8.9, 0.01), (2.78, 0.01), (13, 0),
        "darknet: 5.56 BFLOPs at 416 (pjreddie.com/darknet/yolo; 2 FLOPs per MAC); 8.9 M "
        "parameters in yolov3-tiny.weights (33.8 MB); 13 [convolutional] sections in the cfg",
    ),
    "yolov5s": (
        672, (7.2, 0.01), (8.25 * (672 / 640) ** 2, 0.01), (60, 0),
        "ultralytics/yolov5 v6.0 README: 7.2 M params, 16.5 GFLOPs (2 per MAC) at 640, scaled "
        "by area to 672",
    ),
    "alexnet": (
        224, (60.0, 0.02), (0.724, 0.01), (5, 3),
        "Krizhevsky et al. 2012: 60 million parameters, five conv and three FC layers; Sze et "
        "al. 2017 (Proc. IEEE), Table IV: 724 M MACs",
    ),
    "inception-v4": (
        299, (42.7, 0.01), (12.3, 0.01), (149, 1),
        "timm inception_v4.tf_in1k model card (the paper's TF weights): 42.7 M params, 12.3 "
        "GMACs at 299; Szegedy et al. 2016 Figs. 3-9 give 149 convs",
    ),
    "resnet101": (
        224, (44.5, 0.01), (7.6, 0.03), (104, 1),
        "He et al. 2015, Table 1: 7.6 G FLOPs (multiply-adds; the stride in the 3x3, as built "
        "here, adds 2.6%); torchvision: 44.5 M params; 100 convs + 4 projections",
    ),
    "resnet152": (
        224, (60.2, 0.01), (11.3, 0.03), (155, 1),
        "He et al. 2015, Table 1: 11.3 G FLOPs (multiply-adds); torchvision: 60.2 M params",
    ),
    "vgg19": (
        224, (144.0, 0.01), (19.6, 0.01), (16, 3),
        "Simonyan & Zisserman 2014, Table 2: 144 M params (configuration E: 16 conv + 3 FC); "
        "19.6 G multiply-adds (torchvision: 19.63)",
    ),
}  # fmt: skip
SMALL = {"mobilenetv1", "googlenet", "yolov3-tiny", "yolov5s"}
MODELS = [
    pytest.param(name, marks=[] if name in SMALL else [pytest.mark.slow]) for name in PUBLISHED
]


def _params(model) -> int:
    floats = onnx.TensorProto.FLOAT
    return sum(int(np.prod(t.dims)) for t in model.proto.graph.initializer if t.data_type == floats)


@pytest.mark.parametrize("name", MODELS)
def test_published_size_and_check_on_orin(name, tmp_path):
    size, (params, params_tol), (gmacs, macs_tol), (convs, gemms), _source = PUBLISHED[name]
    assert ARCHS[name].default_input == (1, 3, size, size)
    path = export_onnx(name)
    model = load_model(path)
    assert model.input_shapes == {"input": (1, 3, size, size)}
    assert _params(model) / 1e6 == pytest.approx(params, rel=params_tol)
    assert model_macs(model) / 1e9 == pytest.approx(gmacs, rel=macs_tol)
    ops = Counter(n.op_type for n in model.nodes)
    assert (ops["Conv"], ops["Gemm"]) == (convs, gemms)
    report = tmp_path / "check.json"
    assert main(["check", name, "--target", "orin", "--json", str(report), "-q"]) == 0
    doc = json.loads(report.read_text())
    assert doc["model"]["inputs"] == {"input": [1, 3, size, size]}
    assert len(doc["nodes"]) == len(model.nodes)
    assert all(n["reasons"] for n in doc["nodes"] if n["engine"] == "fallback")


def test_yolo_heads_have_the_published_grids():
    # 3 anchors x (80 COCO classes + 4 box + 1 objectness) = 255 channels per scale: darknet's
    # two [yolo] layers at strides 32 and 16, YOLOv5's Detect on P3/8, P4/16, P5/32.
    tiny = load_model(export_onnx("yolov3-tiny"))
    assert [tiny.shapes[o] for o in tiny.output_names] == [(1, 255, 13, 13), (1, 255, 26, 26)]
    v5 = load_model(export_onnx("yolov5s"))
    grids = [(1, 255, s, s) for s in (84, 42, 21)]
    assert [v5.shapes[o] for o in v5.output_names] == grids
    ops = Counter(n.op_type for n in v5.nodes)
    assert ops["Sigmoid"] == ops["Mul"] == 57  # SiLU after every conv but the 3 Detect convs


@pytest.mark.parametrize(("name", "single_ops"), [("googlenet", "LRN"), ("yolov3-tiny", "MaxPool")])
def test_single_node_layers_compute_what_torch_computes(name, single_ops, tmp_path):
    """LRN and darknet's end-padded max pool export through their own ONNX symbolic; onnxruntime
    must compute what the PyTorch layers compute."""
    shape = (1, 3, 64, 64)
    path = export_onnx(name, tmp_path / f"{name}.onnx", input_shape=shape)
    nodes = onnx.load(path).graph.node
    if name == "yolov3-tiny":
        pads = [list(a.ints) for n in nodes if n.op_type == "MaxPool" for a in n.attribute]
        assert [0, 0, 1, 1] in pads  # the stride-1 pool of layer 11
    else:
        assert Counter(n.op_type for n in nodes)[single_ops] == 2
    torch.manual_seed(SEED)
    module = ARCHS[name].build().eval()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x))
    want = [t.numpy() for t in (want if isinstance(want, tuple) else (want,))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for got, ref in zip(session.run(None, {"input": x}), want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "shape", "reason"),
    [
        ("vgg19", (1, 3, 256, 256), "classifier takes the feature map of a 224x224 input only"),
        ("alexnet", (1, 3, 227, 227), "224x224 input only"),
        ("yolov5s", (1, 3, 650, 650), "multiples of 32"),
        ("yolov3-tiny", (1, 3, 400, 416), "multiples of 32"),
        ("inception-v4", (1, 3, 64, 64), "cannot take 1x3x64x64: .*too small"),
        ("googlenet", (1, 1, 224, 224), "must be N x 3 x H x W"),
    ],
)
def test_sizes_an_architecture_cannot_take_are_refused_with_the_reason(name, shape, reason):
    with pytest.raises(DlakitError, match=reason):
        export_onnx(name, input_shape=shape)


def test_zoo_names_are_kebab_case():
    from dlakit.data import datasets

    names = [*entries(), *datasets()]
    bad = [n for n in names if not all(part.isalnum() and part.islower() for part in n.split("-"))]
    assert not bad, f"zoo names not in kebab case: {bad}"
    assert set(PUBLISHED) <= set(entries())
