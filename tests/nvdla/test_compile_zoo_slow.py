"""The larger zoo models on nv_small, byte-exact against the integer reference (minutes)."""

import pytest

from nvdla_cases import check_bitexact, zoo_case


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenetv2", "efficientnet-lite0"])
def test_imagenet_models_nv_full(model):
    """nv_full adds in the SDP Y unit: the whole network is one DLA segment."""
    _, graph, comp, x = zoo_case(model, "foolbox-imagenet", 1, "nv_full")
    assert comp.stats["dla_segments"] == 1
    assert check_bitexact(graph, comp, x) == 1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenetv2", "efficientnet-lite0"])
def test_imagenet_models_nv_small(model):
    _, graph, comp, x = zoo_case(model, "foolbox-imagenet", 1, "nv_small")
    # nv_small has no SDP EW unit: residual adds run on the host between DLA segments.
    assert comp.stats["fallback_segments"] > 1
    assert comp.stats["tiling"]["split_layers"] > 10
    assert check_bitexact(graph, comp, x) >= comp.stats["dla_segments"]


@pytest.mark.slow
def test_yolov8n_host_heavy_nv_small():
    """Many fallback segments (fallback convs, SiLU, Resize, Split, Slice, Concat) between DLA ones:
    the onnxruntime host engine mirrors the reference node by node, so the model output is
    byte-exact; with the torch engine the DLA segments are byte-exact on the reference's inputs."""
    import numpy as np

    from dlakit.graph import load_model
    from dlakit.zoo import resolve_model
    from nvdla_cases import compile_case

    path = resolve_model("yolov8n")
    shape = load_model(path).input_shapes["images"]
    x = np.random.default_rng(0).normal(size=(1, *shape[1:])).astype(np.float32)
    _, graph, comp = compile_case(path, x)
    assert comp.stats["fallback_segments"] > 5
    assert check_bitexact(graph, comp, x, engine="ort") > 0
    check_bitexact(graph, comp, x, engine="torch", isolate=True)


@pytest.mark.slow
def test_yolov8n_nv_full_backbone_and_neck_in_one_dla_segment():
    """C2f splits, SiLU in the SDP LUT and the neck's nearest Resize (deconvolution + RUBIK)
    keep the backbone and neck in one DLA segment; the box decoding stays on the host; the model
    output on real photos equals the integer reference's byte for byte."""
    loaded, graph, comp, x = zoo_case("yolov8n", "skimage-photos", 2, "nv_full")
    assert comp.stats["dla_segments"] <= 3
    assert comp.stats["ops_by_kind"]["rubik"] == 2
    nodes_of = {layer.name: layer.onnx_nodes for layer in graph.layers}
    first = next(s for s in comp.segments if s.kind == "dla")
    inside = {n for name in first.layers for n in nodes_of[name]}
    body = [n.name for n in loaded.nodes if int(n.name.split("/")[1].split(".")[1]) <= 21]
    assert body and all(n in inside for n in body)
    assert check_bitexact(graph, comp, x[:1], engine="ort") > 0
