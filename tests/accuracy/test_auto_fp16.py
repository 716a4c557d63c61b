"""``accuracy --auto-fp16``: tensors move to FP16 with their producer and consumers, each step
within the MAC budget, the curve with the modeled DLA latency, the list calibrate/compile read."""

import json

import numpy as np
import pytest

from dlakit.accuracy.mixed import layer_macs, search_fp16, tensor_layers
from dlakit.graph import load_model
from dlakit.lower.lowering import quantize_model

zoo = pytest.importorskip("dlakit.zoo")
data = pytest.importorskip("dlakit.data")


@pytest.fixture(scope="module")
def fmnist():
    from dlakit.quant.calibrate import calibrate
    from dlakit.quant.inputs import calibration_inputs

    try:
        loaded = load_model(zoo.resolve_model("fmnist-cnn"))
        preset = zoo.get_entry("fmnist-cnn").preprocess
        inputs = calibration_inputs("fashion-mnist:train", preset, loaded, 64)
        ds = data.load_labelled("fashion-mnist", preset, loaded.input_shapes["input"], 24)
    except Exception as exc:
        pytest.skip(f"fmnist-cnn or fashion-mnist unavailable: {exc}")
    scales = calibrate(loaded, inputs, "entropy").scales
    return loaded, scales, np.asarray(ds.images, np.float32)


def test_a_tensor_moves_with_its_producer_and_consumers(fmnist):
    loaded, scales, _ = fmnist
    graph = quantize_model(loaded, scales, "nv_full")
    moves = tensor_layers(graph)
    writers, readers = graph.writers(), graph.readers()
    for tensor, nodes in moves.items():
        producer = graph.layers[writers[tensor]].onnx_nodes
        assert set(producer) <= set(nodes)
        for i in readers.get(tensor, []):
            if graph.layers[i].engine == "dla":
                assert set(graph.layers[i].onnx_nodes) <= set(nodes)
    moved = quantize_model(loaded, scales, "nv_full", fp16_layers=next(iter(moves.values())))
    tensor = next(iter(moves))
    assert moved.tensors[tensor].precision == "fp16"  # it never exists in INT8


def test_search_stays_within_budget_and_gains(fmnist):
    loaded, scales, x = fmnist
    macs = layer_macs(quantize_model(loaded, scales, "nv_full"))
    assert sum(macs.values()) > 0
    seen: list[frozenset] = []

    def latency(nodes: frozenset[str]) -> float:
        seen.append(nodes)
        return 1e-3 + 1e-4 * len(nodes)

    mix = search_fp16(loaded, scales, "nv_full", x, 0.5, latency=latency, candidates=2,
                      max_steps=3)  # fmt: skip
    assert mix.steps[0].tensor is None and mix.steps[0].fp16_mac_share == 0.0
    assert len(mix.steps) >= 2 and all(s.fp16_mac_share <= 0.5 for s in mix.steps)
    sqnr = [s.sqnr_db for s in mix.steps]
    assert sqnr == sorted(sqnr) and sqnr[-1] > sqnr[0]  # each step gains
    assert all(s.latency_cost_s == pytest.approx(s.latency_s - p.latency_s)
               for p, s in zip(mix.steps, mix.steps[1:], strict=False))  # fmt: skip
    assert mix.chosen is mix.steps[-1] and frozenset(mix.chosen.layers) in seen
    with pytest.raises(Exception, match="budget"):
        search_fp16(loaded, scales, "nv_full", x, 1.5)


def test_cli_curve_json_and_layer_list(fmnist, tmp_path, capsys):
    from dlakit.cli import main

    _, scales, _ = fmnist
    path = scales.save(tmp_path / "f.scales.json")
    listing, report = tmp_path / "f.fp16.txt", tmp_path / "r.json"
    code = main(["accuracy", "fmnist-cnn", "-s", str(path), "-d", "fashion-mnist", "-n", "16",
                 "-t", "nv_full", "--auto-fp16", "0.6", "--per-layer-inputs", "16",
                 "--auto-fp16-out", str(listing), "--json", str(report)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "modeled" in text and "DLA ms" in text
    doc = json.loads(report.read_text())
    assert doc["schema"] == "dlakit.accuracy" and doc["schema_version"] == 2
    steps = doc["auto_fp16"]["steps"]
    chosen = doc["auto_fp16"]["chosen_layers"]
    assert steps[0]["latency_s"] > 0 and chosen == max(steps, key=lambda s: s["sqnr_db"])["layers"]
    assert len(doc["inputs"]) == 16 and {"fp32_top1", "fp32_prob", "dla_top1", "sqnr_db"} <= set(
        doc["inputs"][0]
    )
    names = [ln for ln in listing.read_text().splitlines() if not ln.startswith("#")]
    assert names == chosen
    # calibrate records the list, and accuracy then uses it without --fp16-layers.
    scales2 = tmp_path / "f2.scales.json"
    assert main(["calibrate", "fmnist-cnn", "-d", "fashion-mnist:train", "-n", "16", "-o",
                 str(scales2), "--fp16-layers", f"@{listing}", "-q"]) == 0  # fmt: skip
    assert json.loads(scales2.read_text())["fp16_layers"] == chosen
    assert main(["calibrate", "fmnist-cnn", "-d", "fashion-mnist:train", "-n", "4", "-o",
                 str(tmp_path / "x.json"), "--fp16-layers", "nope", "-q"]) == 2  # fmt: skip
