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
