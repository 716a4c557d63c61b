"""``dlakit profile`` on an open NVDLA target costs exactly the compiler's hardware layers.

Oracle: the compiler itself (``dlakit.nvdla.compile_graph``) on the model lowered with real
(max-calibrated) scales. Its operations, grouped by the layer they belong to (CBUF tiling makes
several operations of one layer), must be the DLA layers ``profile --json`` lists, in the same
order, with the same ONNX nodes and engine kind; its fallback segments' layers must be the
profile's fallback layers. Concatenations by placement and no-op reshapes are no operation in
either; channel views on a surface are no operation, other views a copy (a convolution), and a
deconvolution a convolution and a RUBIK contract in both. The one allowed difference: the
compiler requantizes a Concat input that two concatenations want at different calibrated scales,
and the profile, which has no scales, does not (the lowering makes every other input at its
concatenation's scale, so none of these models has one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.accuracy.compare import float_run
from dlakit.cli import main
from dlakit.graph import LoadedModel, load_model, save_model
from dlakit.lower.lowering import quantize_model
from dlakit.lower.qgraph import QConcat
from dlakit.nvdla import compile_graph, nvdla_target
from dlakit.zoo.arch import export_onnx

KIND = {"conv": "conv", "fc": "conv", "sdp": "sdp", "pdp": "pdp", "cdp": "cdp", "rubik": "rubik"}


def _max_scales(loaded: LoadedModel) -> dict[str, float]:
    """Per-tensor max calibration on one random input (onnxruntime)."""
    name = loaded.input_names[0]
    x = np.random.default_rng(0).standard_normal(loaded.input_shapes[name]).astype(np.float32)
    names = [n for n in loaded.shapes if n not in loaded.initializers]
    values = float_run(loaded, x, extra=names)
    return {n: max(float(np.abs(v).max()), 1e-6) / 127.0 for n, v in values.items()}


def _compiled_layers(loaded: LoadedModel, target: str):
    """(DLA layers as (name, kind, nodes), fallback layer names, requantizing layer names)."""
    graph = quantize_model(loaded, _max_scales(loaded), target)
    comp = compile_graph(graph, nvdla_target(target))
    concat_inputs = {n for x in graph.layers if isinstance(x, QConcat) for n in x.inputs}
    requant = {
        layer.name
        for layer in graph.layers
        if layer.name.startswith("requant:") and layer.outputs[0] in concat_inputs
    }
    dla: list[tuple[str, str, list[str]]] = []
    fallback: list[str] = []
    for segment in comp.segments:
        if segment.kind == "fallback":
            fallback += segment.layers
            continue
        for op in segment.ops:
            if op.layer in requant or (dla and dla[-1][0] == op.layer):
                continue
            dla.append((op.layer, op.kind, sorted(op.onnx_nodes)))
    return dla, fallback, requant


def _profiled_layers(path: Path, target: str, tmp_path: Path):
    out = tmp_path / f"{path.stem}-{target}.json"
    assert main(["profile", str(path), "--target", target, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["layers"]
    dla = [
        (row["name"], KIND[row["kind"]], sorted(row["nodes"]))
        for row in rows
        if row["engine"] == "dla" and row["kind"] not in ("view", "concat")
    ]
    fallback = [row["name"] for row in rows if row["engine"] != "dla"]
    return dla, fallback


def _assert_same_layers(path: Path, target: str, tmp_path: Path) -> set[str]:
    """Asserts the profile's layers are the compiler's; returns the requantizing layers."""
    return _compare(path, target, tmp_path)[0]


def _compare(path: Path, target: str, tmp_path: Path):
    loaded = load_model(path)
    want_dla, want_fallback, requant = _compiled_layers(loaded, target)
    got_dla, got_fallback = _profiled_layers(path, target, tmp_path)
    assert want_dla, "the compiler made no DLA operation: nothing compared"
    assert [name for name, _, _ in got_dla] == [name for name, _, _ in want_dla]
    assert got_dla == want_dla
    assert got_fallback == want_fallback
    return requant, want_dla


def _model(path: Path, nodes, inits, shape, outputs=("y",)) -> Path:
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [
            numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
            for k, v in inits.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, path)


def _w(rng, k: int, c: int, r: int = 3) -> np.ndarray:
    return rng.standard_normal((k, c, r, r)) * 0.2


def _conv(name: str, x: str, w: str, y: str, pad: int = 1, **attrs):
    return helper.make_node("Conv", [x, w], [y], name=name, pads=[pad] * 4, **attrs)


def _pool(op: str, name: str, x: str, y: str, k: int, pad: int = 0):
    return helper.make_node(op, [x], [y], name=name, kernel_shape=[k, k], strides=[2, 2],
                            pads=[pad] * 4)  # fmt: skip


def _bn_inits(rng, prefix: str, c: int) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_g": rng.uniform(0.5, 1.5, c),
        f"{prefix}_b": rng.standard_normal(c) * 0.1,
        f"{prefix}_m": rng.standard_normal(c) * 0.1,
        f"{prefix}_v": rng.uniform(0.5, 1.5, c),
    }


def _bn(name: str, x: str, y: str, prefix: str):
    ins = [x, f"{prefix}_g", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"]
    return helper.make_node("BatchNormalization", ins, [y], name=name)


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fusion")
    rng = np.random.default_rng(0)
    models = {}
    # Conv + BN + ReLU: one layer, its MaxPool on the fly where it fits CBUF; a BN and a ReLU
    # after the pooling: SDP passes.
    models["conv_bn_relu"] = _model(
        d / "conv_bn_relu.onnx",
        [
            _conv("c1", "x", "w1", "a"),
            _bn("bn1", "a", "b", "bn1"),
            helper.make_node("Relu", ["b"], ["c"], name="r1"),
            _pool("MaxPool", "mp", "c", "p", 2),
            _bn("bn2", "p", "q", "bn2"),
            helper.make_node("Relu", ["q"], ["y"], name="r2"),
        ],
        {"w1": _w(rng, 16, 8), **_bn_inits(rng, "bn1", 16), **_bn_inits(rng, "bn2", 16)},
        (1, 8, 16, 16),
    )
    # A conv CBUF splits by rows, then its average pool (a PDP pass of its own); a conv that
    # fits, then its MaxPool (on the fly on nv_full: one operation); global average pool,
    # Flatten and Gemm.
    models["conv_pool"] = _model(
        d / "conv_pool.onnx",
        [
            _conv("c1", "x", "w1", "a"),
            helper.make_node("Relu", ["a"], ["b"], name="r1"),
            _pool("AveragePool", "ap", "b", "c", 2),
            _conv("c2", "c", "w2", "e"),
            _pool("MaxPool", "mp", "e", "f", 3, pad=1),
            helper.make_node("GlobalAveragePool", ["f"], ["g"], name="gap"),
            helper.make_node("Flatten", ["g"], ["h"], name="flat"),
            helper.make_node("Gemm", ["h", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
        ],
        {"w1": _w(rng, 64, 3), "w2": _w(rng, 32, 64), "fc_w": rng.standard_normal((10, 32)),
         "fc_b": rng.standard_normal(10)},
        (1, 3, 128, 128),
    )  # fmt: skip
    # Residual: conv -> relu -> conv -> Add(block input) -> relu, twice.
    models["residual"] = _model(
        d / "residual.onnx",
        [
            _conv("stem", "x", "w0", "s0"),
            helper.make_node("Relu", ["s0"], ["s"], name="stem_relu"),
            _conv("c1", "s", "w1", "a"),
            helper.make_node("Relu", ["a"], ["b"], name="r1"),
            _conv("c2", "b", "w2", "c"),
            helper.make_node("Add", ["c", "s"], ["d"], name="add1"),
            helper.make_node("Relu", ["d"], ["e"], name="r2"),
            _conv("c3", "e", "w3", "f"),
            helper.make_node("Add", ["e", "f"], ["g"], name="add2"),
            helper.make_node("Relu", ["g"], ["y"], name="r3"),
        ],
        {k: _w(rng, 32, 16 if k == "w0" else 32) for k in ("w0", "w1", "w2", "w3")},
        (1, 16, 24, 24),
    )
    # Concat along C: aligned (placement, no operation) and not (a fallback operation); a
    # Reshape that keeps the feature layout (no operation) and a Flatten that does not (fallback).
    models["concat"] = _model(
        d / "concat.onnx",
        [
            _conv("a", "x", "wa", "ya"),
            _conv("b", "x", "wb", "yb"),
            helper.make_node("Concat", ["ya", "yb"], ["cat"], name="cat", axis=1),
            _conv("c", "cat", "wc", "yc"),
            _conv("d", "x", "wd", "yd"),
            helper.make_node("Concat", ["yd", "yc"], ["cat2"], name="cat2", axis=1),
            helper.make_node("Relu", ["cat2"], ["r"], name="relu"),
            helper.make_node("Reshape", ["r", "shape"], ["s"], name="same_layout"),
            # A convolution after the reshape keeps relu/same_layout from being a DLA island
            # between the fallback concatenation and the fallback Flatten.
            _conv("e", "s", "we", "ye"),
            helper.make_node("Flatten", ["ye"], ["y"], name="flatten"),
        ],
        {
            "wa": _w(rng, 32, 8),
            "wb": _w(rng, 32, 8),
            "wc": _w(rng, 20, 64),
            "wd": _w(rng, 12, 8),
            "we": _w(rng, 32, 32),
            "shape": np.array([1, 32, 16, 16]),
        },
        (1, 8, 16, 16),
    )
    # LRN on CDP between two convs.
    models["lrn"] = _model(
        d / "lrn.onnx",
        [
            _conv("c1", "x", "w1", "a"),
            helper.make_node("Relu", ["a"], ["b"], name="r1"),
            helper.make_node("LRN", ["b"], ["c"], name="lrn", size=5, alpha=1e-4, beta=0.75),
            _conv("c2", "c", "w2", "y"),
        ],
        {"w1": _w(rng, 16, 3), "w2": _w(rng, 16, 16)},
        (1, 3, 20, 20),
    )  # fmt: skip
    return models


@pytest.mark.parametrize("target", ["nv_full", "nv_small"])
@pytest.mark.parametrize("name", ["conv_bn_relu", "conv_pool", "residual", "concat", "lrn"])
def test_profile_layers_are_the_compilers(hand_built, name, target, tmp_path):
    assert not _assert_same_layers(hand_built[name], target, tmp_path)


def test_the_hand_built_cases_exercise_each_fusion(hand_built):
    """Controls: each case contains the fusion it is meant to test, as the compiler sees it."""
    from dlakit.nvdla.compiler import layer_engines, pools_on_the_fly

    target = nvdla_target("nv_full")
    loaded = load_model(hand_built["conv_pool"])
    graph = quantize_model(loaded, _max_scales(loaded), "nv_full")
    assert compile_graph(graph, target).stats["pools_on_the_fly"] == 1
    engines = layer_engines(graph, target.nvdla)
    assert set(pools_on_the_fly(graph, target, engines)) == {"c2"}
    concat = load_model(hand_built["concat"])
    comp = compile_graph(
        quantize_model(concat, _max_scales(concat), "nv_full"), nvdla_target("nv_full")
    )
    fallback = [n for s in comp.segments if s.kind == "fallback" for n in s.layers]
    assert "cat2" in fallback and "cat" not in fallback  # 12 channels do not end on a surface
    assert "flatten" in fallback and "same_layout" not in fallback
    assert not [op for s in comp.segments for op in s.ops if op.layer in ("cat", "same_layout")]


@pytest.mark.parametrize("target", ["nv_full", "nv_small"])
def test_resnet18_profile_layers_are_the_compilers(target, tmp_path, monkeypatch):
    monkeypatch.setenv("DLAKIT_CACHE", str(tmp_path / "cache"))
    path = export_onnx("resnet18", tmp_path / "resnet18.onnx")
    assert not _assert_same_layers(path, target, tmp_path)


@pytest.mark.parametrize("target", ["nv_full", "nv_small"])
@pytest.mark.parametrize("model", ["mobilenetv2", "yolov8n"])
def test_zoo_profile_layers_are_the_compilers(model, target, tmp_path):
    """Real zoo models: inverted residuals (MobileNetV2); YOLOv8n's concatenations, SiLU,
    Resize (a phase convolution and a RUBIK contract on nv_full), Split (views and copies)."""
    from dlakit.errors import DlakitError
    from dlakit.zoo import resolve_model

    try:
        path = resolve_model(model)
    except DlakitError as exc:
        pytest.skip(f"{model} unavailable: {exc}")
    requant, dla = _compare(path, target, tmp_path)
    assert not requant
    if model == "yolov8n" and target == "nv_full":  # control: the new operations are compared
        assert any(kind == "rubik" for _, kind, _ in dla)
        assert any(kind == "conv" and name.endswith("Split:1") for name, kind, _ in dla)
