"""The verbs' tables at 80 columns: nothing cut with "…", no empty columns, cells on their row."""

import json
import re

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from rich.cells import cell_len
from rich.console import Console

from dlakit.cli import main
from dlakit.graph import save_model
from dlakit.report.console import Output
from dlakit.report.tables import Column, fit_table, fold_name, print_table

WIDTH = 80


@pytest.fixture(autouse=True)
def columns_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))


def _chain(path, convs=4, channels=8, size=16):
    """Conv+Relu blocks named like an exporter names them (long paths), then a Sigmoid head:
    nv_small has no LUT, so the head runs on the fallback device."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(convs):
        scope = f"/backbone/stages.{i}/blocks.{i}.0/conv{i}/conv{i}.0"
        w = rng.normal(0, 0.3, (channels, channels, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(
            helper.make_node(
                "Conv", [prev, f"w{i}"], [f"c{i}"], name=f"{scope}/Conv", pads=[1, 1, 1, 1]
            )
        )
        if i == 0:  # the longest op name, which a squeezed column used to cut
            for part, value in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)):
                inits.append(numpy_helper.from_array(np.full(channels, value, np.float32), part))
            bn = helper.make_node(
                "BatchNormalization", ["c0", "scale", "bias", "mean", "var"], ["b0"], name=scope
            )
            nodes.append(bn)
        source = "b0" if i == 0 else f"c{i}"
        nodes.append(helper.make_node("Relu", [source], [f"r{i}"], name=f"{scope}/Relu"))
        prev = f"r{i}"
    nodes.append(helper.make_node("Sigmoid", [prev], ["y"], name="/head/sigmoid_head/Sigmoid"))
    shape = [1, channels, size, size]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, path)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return _chain(tmp_path_factory.mktemp("chain") / "chain.onnx")


def _run(capsys, *argv):
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def _no_ellipsis(out):
    assert "…" not in out, "a cell was cut"


def _within(lines):
    wide = [line for line in lines if cell_len(line.rstrip()) > WIDTH]
    assert not wide, f"{len(wide)} line(s) wider than {WIDTH}: {wide[0]!r}"


def _whole(word, out):
    return re.search(rf"(?m)(^|[\s│]){re.escape(word)}($|[\s│])", out) is not None


def test_zoo_list_keeps_names_whole_and_every_column(capsys):
    from dlakit.zoo import entries

    out = _run(capsys, "zoo", "list")
    _no_ellipsis(out)
    _within(out.splitlines())
    for header in ("name", "task", "source", "input", "preprocess", "licence", "cached"):
        assert _whole(header, out), f"column {header!r} missing"
    for e in entries().values():
        assert _whole(e.name, out), f"zoo name {e.name!r} cut"
        assert _whole("x".join(map(str, e.input_shape)), out)
        assert e.source in out, f"source {e.source!r} cut"


def test_zoo_data_list_keeps_names_whole(capsys):
    from dlakit.data import datasets

    out = _run(capsys, "zoo", "data", "list")
    _no_ellipsis(out)
    _within(out.splitlines())
    for header in ("name", "description", "splits", "labels", "source", "licence", "cached"):
        assert _whole(header, out), f"column {header!r} missing"
    for name in datasets():
        assert _whole(name, out), f"data set name {name!r} cut"


def test_profile_keeps_each_layers_cells_on_its_row(chain, tmp_path, capsys):
    path = tmp_path / "p.json"
    out = _run(capsys, "profile", str(chain), "-t", "orin", "--json", str(path))
    _no_ellipsis(out)
    rows = [line for line in out.splitlines() if re.match(r"^\s*\d+\s", line)]
    _within(rows)
    layers = [r for r in json.loads(path.read_text())["layers"] if r["time_us"] > 0]
    assert len(rows) >= len(layers) > 0
    for layer in layers:
        row = next(line for line in rows if re.match(rf"^\s*{layer['index']}\s", line))
        for cell in (layer["engine"], layer["bound"], f"{layer['time_us']:.1f}"):
            assert _whole(cell, row), f"layer {layer['index']}: {cell!r} not on its row {row!r}"


def test_profile_wide_shows_every_column_and_whole_names(chain, capsys):
    out = _run(capsys, "profile", str(chain), "-t", "orin", "--wide")
    _no_ellipsis(out)
    for header in ("bytes", "cycles", "time µs"):
        assert header in out
    assert "/backbone/stages.3/blocks.3.0/conv3/conv3.0/Conv" in out


def test_check_lists_reasons_readably(chain, capsys):
    out = _run(capsys, "check", str(chain), "-t", "nv_small")
    _no_ellipsis(out)
    table = [line for line in out.splitlines() if "│" in line or "┃" in line]
    _within(table)
    assert _whole("engine.absent", out) or "engine.absent:" in out
    for op in ("Conv", "BatchNormalization", "Relu", "Sigmoid"):
        assert _whole(op, out)


def test_inspect_folds_operations_onto_a_second_line(chain, tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "c.npz", x=rng.normal(size=(2, 8, 16, 16)).astype(np.float32))
    scales, art = tmp_path / "s.json", tmp_path / "c.dla"
    args = ["-d", str(tmp_path / "c.npz"), "-m", "max", "-o", str(scales), "-q"]
    assert main(["calibrate", str(chain), *args]) == 0
    assert main(["compile", str(chain), "-t", "nv_small", "-s", str(scales), "-o", str(art)]) == 0
    capsys.readouterr()
    out = _run(capsys, "inspect", str(art))
    _no_ellipsis(out)
    firsts = [line for line in out.splitlines() if re.match(r"^(\d+|#| ) ", line)]
    _within([line for line in firsts if not line.startswith("    ")])
    from dlakit.nvdla.artifact import read_manifest

    names = [op["name"] for s in read_manifest(art)["segments"] for op in s.get("ops", [])]
    assert names and all(name in out for name in names)
    wide = _run(capsys, "inspect", str(art), "--wide")
    assert any(name in line and "0x" in line and "conv" in line for line in wide.splitlines()
               for name in names)  # fmt: skip


def test_fold_name_breaks_at_separators_and_loses_nothing():
    name = "/backbone/stages.3/blocks.3.0/conv3/conv3.0/Conv"
    folded = fold_name(name, 12)
    lines = folded.split("\n")
    assert "".join(lines) == name and all(cell_len(line) <= 12 for line in lines)
    assert lines[0] == "/backbone/"
    assert fold_name("x" * 30, 8).split("\n") == ["x" * 8] * 3 + ["x" * 6]


def test_fit_table_drops_ranked_columns_only_when_narrow():
    columns = [
        Column("name", fold=True, min_width=10),
        Column("a"),
        Column("extra", drop=1),
    ]
    rows = [("n" * 40, "a" * 40, "e" * 30)]
    narrow = fit_table(columns, rows, Console(width=WIDTH))
    assert narrow.dropped == ["extra"] and narrow.fits
    wide = fit_table(columns, rows, Console(width=200))
    assert wide.dropped == [] and wide.fits
    output = Output(Console(width=WIDTH, record=True))
    print_table(output, columns, rows)
    text = output.console.export_text()
    assert "…" not in text and "extra left out to fit 80 columns" in text and "n" * 10 in text


def test_host_timings_table_keeps_long_names_readable():
    # The renderer alone (the timings come from a CUDA GPU in use; here they are given).
    from dlakit.perf.host import HostTiming
    from dlakit.perf.layers import HwLayer
    from dlakit.report.profile import render_host

    name = "/backbone/stages.3/blocks.3.0/conv3/conv3.0/GlobalAveragePool"
    layers = [
        HwLayer(name=f"{name}{i}", kind="conv", ops=["Conv", "BatchNormalization", "Relu"],
                nodes=["n"], engine="gpu")
        for i in range(3)
    ]  # fmt: skip
    timings = [HostTiming(layer, 1e-5 * (i + 1), 20) for i, layer in enumerate(layers)]
    output = Output(Console(width=WIDTH, record=True))
    render_host(timings, "NVIDIA H200", 8, output)
    text = output.console.export_text()
    _no_ellipsis(text)
    _within([line for line in text.splitlines() if re.match(r"^\s*\d+\s", line)])
    assert "NVIDIA H200" in text and "sum of layer medians 0.060 ms" in text
    wide = Output(Console(width=WIDTH, record=True))
    render_host(timings, "NVIDIA H200", 8, wide, wide=True)
    assert f"{name}2" in wide.console.export_text()


@pytest.mark.parametrize(
    "args",
    [["resnet18", "-b", "4", "-v"], ["mobilenetv1", "-t", "xavier-nx", "-b", "4,16", "--strategy",
      "data-parallel"], ["resnet18", "mobilenetv1", "-b", "2", "--strategy", "layer-map"]],
)  # fmt: skip
def test_plan_tables_and_lines_fit_80_columns(args, capsys):
    out = _run(capsys, "plan", *args)
    _no_ellipsis(out)
    _within(out.splitlines())
    assert "modeled" in out
    for strategy in (a for a in args if a in ("data-parallel", "layer-map")):
        assert strategy in out, f"strategy {strategy!r} cut"
