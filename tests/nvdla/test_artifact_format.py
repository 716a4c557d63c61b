"""The .dla artifact: round trip, versioning, bad files."""

import json
import zipfile

import numpy as np
import pytest
from onnx import helper

from dlakit.errors import DlakitError
from dlakit.nvdla import read_artifact, write_artifact
from dlakit.nvdla.artifact import FORMAT, VERSION, read_manifest
from dlakit.run.runner import Runner
from nvdla_cases import compile_case, conv_model


@pytest.fixture
def compiled(tmp_path):
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "r"], ["y"], name="double"),  # host on nv_small
    ]
    path = conv_model(tmp_path / "m.onnx", nodes, {"w": rng.normal(size=(8, 3, 3, 3))},
                      (1, 3, 8, 8), "y", (1, 8, 8, 8))  # fmt: skip
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    comp = compile_case(path, x)[2]
    return comp, x, tmp_path


def test_round_trip_runs_identically(compiled):
    comp, x, tmp = compiled
    art = write_artifact(comp, tmp / "m.dla")
    back = read_artifact(art)
    assert back.constants == comp.constants and back.act_bytes == comp.act_bytes
    assert [op.writes for s in back.segments for op in s.ops] == [
        op.writes for s in comp.segments for op in s.ops
    ]
    a, _ = Runner(comp).run({"x": x})
    b, _ = Runner(back).run({"x": x})
    assert np.array_equal(a["y"], b["y"])
    with zipfile.ZipFile(art) as z:
        names = set(z.namelist())
    assert {"manifest.json", "constants.bin"} <= names
    assert any(n.startswith("fallback/") and n.endswith(".onnx") for n in names)


def test_manifest_states_format_memory_and_registers(compiled):
    comp, _, tmp = compiled
    doc = read_manifest(write_artifact(comp, tmp / "m.dla"))
    assert doc["format"] == FORMAT and doc["version"] == VERSION
    assert doc["memory"]["peak_bytes"] == doc["memory"]["constants"]["size"] + doc["memory"][
        "activations"]["size"]  # fmt: skip
    op = next(o for s in doc["segments"] if s["kind"] == "dla" for o in s["ops"])
    assert op["kind"] == "conv" and op["registers"][0].split(".")[0] in {"CDMA", "CSC"}


def test_other_version_and_bad_files_are_refused(compiled):
    comp, _, tmp = compiled
    art = write_artifact(comp, tmp / "m.dla")
    doc = read_manifest(art)
    doc["version"] = VERSION + 1
    other = tmp / "v2.dla"
    with zipfile.ZipFile(art) as src, zipfile.ZipFile(other, "w") as dst:
        for item in src.namelist():
            data = json.dumps(doc) if item == "manifest.json" else src.read(item)
            dst.writestr(item, data)
    with pytest.raises(DlakitError, match="version"):
        read_artifact(other)
    (tmp / "junk.dla").write_bytes(b"not a zip")
    with pytest.raises(DlakitError, match="not a dlakit"):
        read_artifact(tmp / "junk.dla")
    with pytest.raises(DlakitError, match="not found"):
        read_artifact(tmp / "missing.dla")
