"""Invariants of the performance model on hand-built graphs (no exports, fast).

Each test states a physical property and checks it on layers built to sit on the side of the
roofline the property is about, with a control that shows the property can fail.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.cli import main
from dlakit.errors import DlakitError
from dlakit.graph import load_model, save_model
from dlakit.perf import build_layers, load_params, model_version, profile_model
from dlakit.perf.cost import conv_dram_bytes, dla_layer_cost
from dlakit.perf.hw import dla_config
from dlakit.targets import load_target


def _conv_model(path: Path, c: int, k: int, hw: int, kernel: int = 3, batch: int = 1) -> Path:
    """Conv(C->K, kernel, pad same) + Relu on a C x hw x hw input."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((k, c, kernel, kernel), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[kernel // 2] * 4, name="conv"),
        helper.make_node("Relu", ["y"], ["z"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, hw, hw])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("perf")
    return {
        # 256->256 3x3 at 56x56: 1.85 GMAC on 1.6 MB of data, math-bound.
        "math": load_model(_conv_model(d / "math.onnx", 256, 256, 56)),
        # 1024->2048 1x1 at 4x4: 2 MB of weights for 34 MMAC, DRAM-bound.
        "memory": load_model(_conv_model(d / "memory.onnx", 1024, 2048, 4, kernel=1)),
        # 64->256 3x3: math-bound but C = 64, not eligible for 2:4 sparsity.
        "c64": load_model(_conv_model(d / "c64.onnx", 64, 256, 56)),
        "dynamic": d / "math.onnx",
    }


def _conv_cost(model, **hw_changes):
    target = load_target("orin")
    hw = replace(dla_config(target, "MAXN"), **hw_changes)
    layers = build_layers(model, "orin")
    conv = next(layer for layer in layers if layer.kind == "conv")
    return dla_layer_cost(conv, hw, load_params(), set())


def test_fusion_makes_one_layer_of_conv_and_relu(models):
    layers = build_layers(models["math"], "orin")
    assert [layer.label for layer in layers] == ["Conv+Relu"]
    assert layers[0].macs == 256 * 256 * 9 * 56 * 56


def test_the_two_test_layers_sit_on_the_sides_they_are_meant_to(models):
    assert _conv_cost(models["math"]).bound == "compute"
    assert _conv_cost(models["memory"]).bound == "memory"


def test_time_grows_linearly_with_dla_batch(models):
    times = [profile_model(models["math"], "orin", batch=b).latency_s for b in (1, 2, 3, 8)]
    assert times[0] > 0
    for b, t in zip((1, 2, 3, 8), times, strict=True):
        assert t == pytest.approx(b * times[0], rel=1e-9)


def test_time_falls_with_dla_clock(models):
    by_mode = {
        mode: profile_model(models["math"], "orin", mode).latency_s
        for mode in ("MAXN", "30W", "15W")
    }
    assert by_mode["MAXN"] < by_mode["30W"] < by_mode["15W"]
    slow, fast = _conv_cost(models["math"], clock_mhz=800.0), _conv_cost(models["math"])
    assert fast.time_s < slow.time_s


def test_memory_bound_layer_does_not_speed_up_with_macs(models):
    base = _conv_cost(models["memory"])
    wide = _conv_cost(models["memory"], macs_per_clk=4 * 8192)
    assert wide.time_s == pytest.approx(base.time_s, rel=1e-12)
    # Control: a math-bound layer does speed up with a bigger MAC array.
    assert (
        _conv_cost(models["math"], macs_per_clk=4 * 8192).time_s < _conv_cost(models["math"]).time_s
    )


def test_sparsity_helps_only_math_bound_convs_with_more_than_64_channels(models):
    math_dense, math_sparse = _conv_cost(models["math"]), _conv_cost(models["math"], sparse=True)
    assert math_sparse.time_s < 0.8 * math_dense.time_s
    for name in ("memory", "c64"):
        dense, sparse = _conv_cost(models[name]), _conv_cost(models[name], sparse=True)
        assert sparse.time_s == pytest.approx(dense.time_s, rel=1e-12), name


def test_weights_that_miss_the_cbuf_are_refetched(models):
    layer = next(x for x in build_layers(models["math"], "orin") if x.kind == "conv")
    hw = dla_config(load_target("orin"), "MAXN")
    once = (layer.in_elems + layer.weights + layer.out_elems) * hw.bytes_per_elem
    assert conv_dram_bytes(layer, replace(hw, cbuf_bytes=1 << 30), set()) == once
    assert conv_dram_bytes(layer, replace(hw, cbuf_bytes=256 * 1024), set()) > once


def test_two_cores_share_dram_so_memory_bound_layers_slow_down(models):
    one, two = _conv_cost(models["memory"]), _conv_cost(models["memory"], cores=2)
    assert two.memory_s == pytest.approx(2 * one.memory_s)
    assert two.time_s > 1.5 * one.time_s
    assert _conv_cost(models["math"], cores=2).time_s == _conv_cost(models["math"]).time_s


def test_every_profile_states_the_model_version(models, tmp_path):
    out = tmp_path / "p.json"
    assert main(["profile", str(models["math"].path), "--json", str(out)]) == 0
    import json

    doc = json.loads(out.read_text())
    assert doc["model_version"] == model_version()
    assert doc["modeled"] is True
    assert doc["totals"]["images_per_second"] > 0
    assert doc["layers"][0]["hw_layer"] == "Conv+Relu"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--power-mode", "20W"], "no power mode '20W'"),
        (["--batch", "5000"], "at most 4096"),
        (["--cores", "3"], "2 DLA core"),
        (["--target", "xavier", "--sparse"], "structured-sparsity"),
    ],
)
def test_bad_flags_are_one_line_errors(models, capsys, argv, message):
    assert main(["profile", str(models["math"].path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_model_with_dynamic_shapes_is_refused(tmp_path, capsys):
    model = onnx.load(str(_conv_model(tmp_path / "d.onnx", 8, 8, 16)))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"
    path = save_model(model, tmp_path / "dyn.onnx")
    assert main(["profile", str(path)]) == 2
    assert "dynamic shape" in capsys.readouterr().err
    with pytest.raises(DlakitError):
        load_model(path)


def test_gpu_roofline_falls_with_gpu_clock_and_caps_at_bandwidth(models):
    from dlakit.perf.cost import gpu_layer_cost
    from dlakit.perf.hw import gpu_config

    target = load_target("orin")
    conv = next(x for x in build_layers(models["math"], "orin") if x.kind == "conv")
    fast = gpu_layer_cost(conv, gpu_config(target, "MAXN"))
    slow = gpu_layer_cost(conv, gpu_config(target, "15W"))
    assert fast.bound == "compute" and slow.time_s > 2 * fast.time_s
    heavy = next(x for x in build_layers(models["memory"], "orin") if x.kind == "conv")
    base = gpu_config(target, "MAXN")
    assert gpu_layer_cost(heavy, base).bound == "memory"
    wider = replace(base, sms=4 * base.sms)
    assert gpu_layer_cost(heavy, wider).time_s == pytest.approx(gpu_layer_cost(heavy, base).time_s)
