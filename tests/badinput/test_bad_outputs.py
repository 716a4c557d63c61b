"""No verb writes over its inputs (by path, symlink or hard link), and every write is atomic."""

import hashlib
import os
from pathlib import Path

import pytest
from badinput_cases import refused

from dlakit.cli import main
from dlakit.errors import DlakitError
from dlakit.files import atomic_write, check_not_input

CAL = ["calibrate", "model.onnx", "-d", "data.npz", "-m", "max", "-q"]
# (verb arguments with OUT where the output goes, the input OUT stands for)
WRITERS = [
    (["check", "model.onnx", "--json", "OUT", "-q"], "model.onnx"),
    (["profile", "model.onnx", "--json", "OUT", "-q"], "model.onnx"),
    (["fix", "model.onnx", "-o", "o.onnx", "--random", "--json", "OUT", "-q"], "model.onnx"),
    (["fix", "model.onnx", "-o", "OUT", "--random", "-q"], "model.onnx"),
    (["compile", "model.onnx", "-t", "nv_small", "-s", "scales.json", "-o", "OUT"], "model.onnx"),
    (["compile", "model.onnx", "-t", "nv_small", "-s", "scales.json", "-o", "OUT"], "scales.json"),
    ([*CAL, "-o", "OUT"], "model.onnx"),
    ([*CAL, "-o", "s.json", "--trt-cache", "OUT"], "model.onnx"),
    ([*CAL, "-o", "s.json", "--nvdla-table", "OUT"], "model.onnx"),
    ([*CAL, "-o", "OUT"], "data.npz"),
    (["calibrate", "model.onnx", "--from-cache", "cache.trtcache", "-o", "OUT"], "cache.trtcache"),
    (["calibrate", "model.onnx", "--from-cache", "table.nvdla.json", "-o", "s.json",
      "--nvdla-table", "OUT"], "table.nvdla.json"),
    (["accuracy", "model.onnx", "-s", "scales.json", "-d", "data.npz", "--json", "OUT"],
     "scales.json"),
    (["inspect", "art.dla", "--json", "OUT"], "art.dla"),
    (["run", "art.dla", "-d", "data.npz", "-o", "OUT", "-q"], "art.dla"),
    (["run", "art.dla", "-d", "data.npz", "--json", "OUT", "-q"], "data.npz"),
    (["trace", "run", "trace/t.cfg", "--json", "OUT"], "trace/t.cfg"),
]  # fmt: skip


def _digests(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino)
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize("how", ["path", "symlink", "hardlink"])
@pytest.mark.parametrize(
    ("argv", "victim"), WRITERS, ids=lambda v: v if isinstance(v, str) else v[0]
)
def test_no_verb_writes_over_its_input(work, capsys, argv, victim, how):
    out = victim
    if how == "symlink":
        os.symlink(victim, work / "link")
        out = "link"
    elif how == "hardlink":
        os.link(work / victim, work / "link")
        out = "link"
    before = _digests(work)
    refused([a if a != "OUT" else out for a in argv], capsys, "refusing to overwrite")
    assert _digests(work) == before


def test_two_outputs_at_one_path_are_refused(work, capsys):
    refused([*CAL, "-o", "a.json", "--trt-cache", "a.json"], capsys, "name the same file")


def test_emit_does_not_write_over_the_model(work, capsys):
    (work / "segments.json").write_bytes((work / "model.onnx").read_bytes())
    before = _digests(work)
    refused(["check", "segments.json", "--emit", ".", "-q"], capsys, "segments.json")
    assert _digests(work) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "model.onnx", "--json", "model.onnx/x.json"],
        ["run", "art.dla", "-d", "data.npz", "-o", "scales.json/y.npz"],
        ["compile", "model.onnx", "-t", "nv_small", "-s", "scales.json", "-o", "trace"],
    ],
)
def test_an_output_whose_folder_is_a_file_or_that_is_a_folder_is_refused(work, capsys, argv):
    before = _digests(work)
    refused(argv, capsys)
    assert _digests(work) == before


def test_missing_output_folders_are_made(work, capsys):
    assert main(["check", "model.onnx", "--json", "new/deep/c.json", "-q"]) == 0
    assert (work / "new" / "deep" / "c.json").is_file()


def test_a_failing_writer_leaves_the_existing_file_as_it_was(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"precious")

    def writer(file):
        file.write(b"half a fi")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, writer)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary file left


def test_atomic_write_breaks_a_hard_link_and_keeps_the_mode(tmp_path):
    path = tmp_path / "a"
    path.write_text("old")
    path.chmod(0o640)
    os.link(path, tmp_path / "b")
    atomic_write(path, "new")
    assert path.read_text() == "new" and (tmp_path / "b").read_text() == "old"
    assert path.stat().st_mode & 0o777 == 0o640


def test_check_not_input_names_the_flag_and_the_input(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_text("x")
    with pytest.raises(DlakitError, match=r"--json .* the input"):
        check_not_input({"--json": model}, [model])
    check_not_input({"--json": tmp_path / "other.json", "--output": "-"}, [model, None])
