"""With calibrate --bias-correction the corrected biases are in the lowering, so the compiled
loadable on the simulator stays byte-equal to the integer reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from dlakit.graph import load_model
from dlakit.lower.lowering import quantize_model
from dlakit.nvdla import compile_graph, nvdla_target
from dlakit.quant.calibrate import calibrate
from dlakit.quant.inputs import ArrayInputs
from nvdla_cases import check_bitexact, conv_model


@pytest.mark.parametrize("target", ["nv_small", "nv_full"])
def test_corrected_biases_stay_bitexact(tmp_path, target):
    rng = np.random.default_rng(11)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="c2", pads=[1, 1, 1, 1],
                         group=16),
        helper.make_node("Relu", ["c2"], ["r2"], name="r2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="g"),
        helper.make_node("Flatten", ["g"], ["f"], name="f"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1),
    ]  # fmt: skip
    inits = {
        "w1": rng.normal(0, 0.2, (16, 8, 3, 3)), "b1": rng.normal(0, 0.1, 16),
        "w2": rng.normal(0, 0.3, (16, 1, 3, 3)), "b2": rng.normal(0, 0.1, 16),
        "w3": rng.normal(0, 0.3, (10, 16)), "b3": rng.normal(0, 0.1, 10),
    }  # fmt: skip
    path = conv_model(tmp_path / "m.onnx", nodes, inits, (1, 8, 8, 8), "y", (1, 10))
    loaded = load_model(path)
    x = (rng.uniform(0, 1, (12, 8, 8, 8)) + 0.5).astype(np.float32)
    inputs = ArrayInputs("arrays", "x", (1, 8, 8, 8), x, [str(i) for i in range(len(x))])
    scales = calibrate(loaded, inputs, "max", bias_correction=True).scales
    assert set(scales.bias_correction) == {"c1", "c2", "fc"}
    graph = quantize_model(loaded, scales, target, output_precision="int8")
    plain = quantize_model(loaded, calibrate(loaded, inputs, "max").scales, target,
                           output_precision="int8")  # fmt: skip
    # The correction reached the biases the hardware adds.
    assert any(
        repr(a.sdp) != repr(b.sdp)
        for a, b in zip(graph.layers, plain.layers, strict=True)
        if a.name == "c1"
    )
    assert check_bitexact(graph, compile_graph(graph, nvdla_target(target)), x[:2]) > 0
