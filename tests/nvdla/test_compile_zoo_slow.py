"""The larger zoo models on nv_small, byte-exact against the integer reference (minutes)."""

import pytest
from nvdla_cases import check_bitexact, zoo_case


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenetv2", "efficientnet-lite0"])
def test_imagenet_models_nv_small(model):
    _, graph, comp, x = zoo_case(model, "foolbox-imagenet", 1, "nv_small")
    # nv_small has no SDP EW unit: residual adds run on the host between DLA segments.
    assert comp.stats["host_segments"] > 1
    assert comp.stats["tiling"]["split_layers"] > 10
    assert check_bitexact(graph, comp, x) >= comp.stats["dla_segments"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torch", "ort"])
def test_yolov8n_host_heavy_nv_small(engine):
    """73 host segments (SiLU, Resize, Split, Slice, Concat) between 72 DLA segments."""
    import numpy as np
    from nvdla_cases import max_scales, segment_outputs

    from dlakit.graph import load_model
    from dlakit.nvdla import compile_graph, hw_config
    from dlakit.nvdla.runner import Runner
    from dlakit.quant.intref import IntReference
    from dlakit.quant.lower import quantize_model
    from dlakit.zoo import resolve_model

    loaded = load_model(resolve_model("yolov8n"))
    shape = loaded.input_shapes[loaded.input_names[0]]
    x = np.random.default_rng(0).normal(size=(1, *shape[1:])).astype(np.float32)
    graph = quantize_model(loaded, max_scales(loaded, x), "nv_small")
    comp = compile_graph(graph, hw_config("nv_small"))
    keep = set(segment_outputs(comp))
    ref = IntReference(graph).run({graph.inputs[0]: x}, keep=keep)
    out, stats = Runner(comp, "cpu", engine).run({graph.inputs[0]: x}, keep=keep)
    for name in graph.outputs:
        assert np.array_equal(out[name], ref[name])
    for name in keep:
        mine = stats.kept[name].astype(np.float32) * np.float32(graph.tensors[name].scale)
        assert np.array_equal(mine, ref[name].reshape(mine.shape)), name
