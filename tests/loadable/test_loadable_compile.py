"""``dlakit compile --format loadable``: what it writes, and every written loadable run by dlakit's
loadable runner byte-equal to the ``.dla`` path (MNIST-size models here, the large zoo models
slow-marked; bench/results/loadable.md has the last run of those)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from loadable_cases import compare_with_dla, zoo_compiled

from dlakit.cli import main
from dlakit.errors import DlakitError
from dlakit.loadable.package import write_loadables
from dlakit.loadable.reader import MemoryFlags, read_loadable
from dlakit.loadable.serialize import FILE_IDENTIFIER, LOADABLE_VERSION


@pytest.mark.parametrize("target", ["nv_small", "nv_full"])
@pytest.mark.parametrize("model", ["mnist-cnn", "fmnist-cnn"])
def test_small_models_byte_equal_to_the_dla_path(model, target, tmp_path):
    comp, x = zoo_compiled(model, target)
    results = compare_with_dla(comp, x, tmp_path)
    assert len(results) == comp.stats["dla_segments"] >= 1
    for r in results:
        assert r.bytes_compared > 0 and r.bytes_differing == 0, r


@pytest.mark.slow
@pytest.mark.parametrize("target", ["nv_full", "nv_small"])
@pytest.mark.parametrize("model", ["mobilenetv2", "efficientnet-lite0", "resnet18", "resnet50"])
def test_zoo_models_byte_equal_to_the_dla_path(model, target, tmp_path):
    comp, x = zoo_compiled(model, target)
    results = compare_with_dla(comp, x, tmp_path)
    assert len(results) == comp.stats["dla_segments"]
    assert all(r.bytes_differing == 0 for r in results), results


@pytest.fixture(scope="module")
def mnist_scales(tmp_path_factory):
    from dlakit.zoo import resolve_model

    try:
        resolve_model("mnist-cnn")
    except DlakitError as exc:
        pytest.skip(f"mnist-cnn unavailable: {exc}")
    scales = tmp_path_factory.mktemp("mnist") / "s.json"
    argv = ["calibrate", "mnist-cnn", "-d", "foolbox-mnist", "-n", "4", "-m", "max", "-o",
            str(scales), "-q"]  # fmt: skip
    if main(argv) != 0:
        pytest.skip("foolbox-mnist unavailable")
    return scales


def _compile(scales, out, target="nv_small", *extra):
    return main(["compile", "mnist-cnn", "-t", target, "-s", str(scales), "--format", "loadable",
                 "-o", str(out), "-q", *extra])  # fmt: skip


def test_compile_writes_a_folder_of_loadables_and_host_pieces(mnist_scales, tmp_path, capsys):
    out = tmp_path / "mnist.nvdla"
    assert _compile(mnist_scales, out, "nv_small", "--json", str(tmp_path / "c.json")) == 0
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["format"] == "dlakit-nvdla-loadables" and doc["target"] == "nv_small"
    assert doc["loadable_version"] == list(LOADABLE_VERSION)
    kinds = [s["kind"] for s in doc["segments"]]
    assert kinds == ["fallback", "dla", "fallback", "dla"]  # input quantize, reshape on the host
    files = [s["file"] for s in doc["segments"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *files])
    for seg in doc["segments"]:
        path = out / seg["file"]
        if seg["kind"] == "fallback":
            import onnx

            onnx.checker.check_model(onnx.load(path))
            continue
        assert path.read_bytes()[4:8] == FILE_IDENTIFIER
        ld = read_loadable(path)
        (inp,) = ld.bound(MemoryFlags.INPUT)
        (outp,) = ld.bound(MemoryFlags.OUTPUT)
        assert ld.tensor_of(inp).data_type == ld.tensor_of(outp).data_type == 4  # INT8
        for b in seg["inputs"] + seg["outputs"]:
            assert doc["tensors"][b["tensor"]]["scale"] > 0  # what the host quantizes with
        assert main(["loadable", "inspect", str(path), "-q"]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["loadables"]["folder"] is True
    assert [s["segment"] for s in report["loadables"]["segments"]] == ["dla1", "dla3"]
    # Written again, the folder is replaced, with the same bytes.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert _compile(mnist_scales, out) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_compile_nv_full_int8_outputs(mnist_scales, tmp_path):
    out = tmp_path / "m"
    assert _compile(mnist_scales, out, "nv_full", "--output-precision", "int8") == 0
    doc = json.loads((out / "manifest.json").read_text())
    last = [s for s in doc["segments"] if s["kind"] == "dla"][-1]
    assert last["outputs"][0]["tensor"] == "output"  # the network output leaves the DLA
    assert read_loadable(out / last["file"]).tensors[-1].c == 10


@pytest.mark.parametrize("what", ["a file", "a foreign folder"])
def test_compile_refuses_to_replace_what_it_did_not_write(mnist_scales, tmp_path, capsys, what):
    out = tmp_path / "taken"
    if what == "a file":
        out.write_text("keep me")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert _compile(mnist_scales, out) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and str(out) in err[0], err
    kept = out if what == "a file" else out / "notes.txt"
    assert kept.read_text() == "keep me"


def test_one_segment_model_is_one_loadable_file(tmp_path):
    comp, _ = zoo_compiled("fmnist-cnn", "nv_small")
    dla = next(s for s in comp.segments if s.kind == "dla")
    one = dataclasses.replace(comp, segments=[dla])  # a model whose input arrives INT8
    written = write_loadables(one, tmp_path / "one.nvdla")
    assert not written.folder and written.path.is_file()
    assert written.path.read_bytes() == written.loadables[0].data
    assert read_loadable(written.path).version == LOADABLE_VERSION
    with pytest.raises(DlakitError, match="is a folder"):
        write_loadables(one, tmp_path)
