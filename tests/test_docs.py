"""The docs cannot drift: every ``dlakit`` command in a fenced block of README.md and docs/*.md
parses against the CLI, and every one that names no placeholder runs and exits 0; the imports of
their Python blocks import, and the files they name exist.

A line may hold ``[optional]`` groups and placeholders (``MODEL``, ``PATH``, ...): the whole
line, placeholders filled in, is parsed by the verb's own option parser (unknown flags, a flag
given a value, a value of the wrong type fail); the line without its optional groups, if no
placeholder is left, is run through the CLI in a work folder shared by the docs' commands, so
files one command writes (``-o mnist.scales.json``) are there for the next. A command reading
such a file runs its producer first when it has not run. Files the docs leave to the reader
(``model.onnx``, a folder of images) are made by :data:`READER_FILES`. Heavy commands are
listed in :data:`SLOW` and run with the slow tests.
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import typer
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dlakit.cli import app, main
from dlakit.graph import save_model
from dlakit.paths import shared_dir

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Placeholder -> a value of the type the option or argument takes, for parsing a synopsis.
PLACEHOLDERS = {
    "MODEL": "model.onnx",
    "OUT": "out.onnx",
    "PATH": "out.json",
    "DIR": "out",
    "SOURCE": "opencv-photos",
    "PRESET": "imagenet",
    "N": "1",
}
# Options whose value is a file the command writes (the work folder keeps it for later ones).
OUTPUT_FLAGS = {"-o", "--output", "--json", "--trt-cache", "--nvdla-table", "--auto-fp16-out"}
# Commands run only with the slow tests; seconds in this test on the shared 2-core machine.
SLOW = {
    # 60 s: 5,000 digits through the integer reference
    "dlakit accuracy mnist-cnn --scales mnist.scales.json --data opencv-digits --target nv_small",
    # 350 s: per-layer SQNR, the FP16 search and onnxruntime's INT8 on MobileNetV2
    "dlakit accuracy mobilenetv2 --scales mnv2.scales.json --data eval-photos --per-layer "
    "--suggest-fp16 2 --ort-int8 skimage-photos --json report.json",
    # minutes: the tensor-level FP16 search on 133 photos, and the compile that reads its list
    "dlakit accuracy mobilenetv2 -s mnv2.scales.json -d eval-photos -t nv_full --auto-fp16 0.1 "
    "--auto-fp16-out mobilenetv2.fp16-layers.txt",
    "dlakit compile mobilenetv2 -t nv_full -s mnv2.scales.json "
    "--fp16-layers @mobilenetv2.fp16-layers.txt -o m.dla",
    # 25 s: entropy calibration of MobileNetV2
    "dlakit calibrate mobilenetv2 --data opencv-photos -o mnv2.scales.json",
    # 35 s: 20 photos through the simulator
    "dlakit run mb2.dla --data foolbox-imagenet --compare mobilenetv2",
    # ~150 MB of wheels on a fresh cache (the fast tests leave the 76 MB ddddocr wheel out)
    "dlakit zoo fetch --all",
}


@dataclass(frozen=True)
class Command:
    doc: str  # e.g. docs/zoo.md:8
    line: str  # as written, continuation lines joined, without its comment and "$ "
    runnable: str | None  # the line without its optional groups, if no placeholder is left

    @property
    def outputs(self) -> set[str]:
        words = shlex.split(self.runnable or "")
        return {value for flag, value in itertools.pairwise(words) if flag in OUTPUT_FLAGS}


def _commands() -> list[Command]:
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        fenced = False
        i = 0
        while i < len(lines):
            text, number = lines[i].strip(), i + 1
            if text.startswith("```"):
                fenced = not fenced
            elif fenced and re.match(r"(\$ )?dlakit ", text):
                while text.endswith("\\"):
                    i += 1
                    text = text[:-1].rstrip() + " " + lines[i].strip()
                text = text.removeprefix("$ ").split(" # ")[0].strip()
                bare = " ".join(re.sub(r"\[[^\]]*\]", " ", text).split())
                has_placeholder = any(w in PLACEHOLDERS for w in bare.split())
                runnable = None if has_placeholder else bare
                found.append(Command(f"{doc.relative_to(ROOT)}:{number}", text, runnable))
            i += 1
    return found


COMMANDS = _commands()
RUNNABLE = [c for c in COMMANDS if c.runnable]


def _doc_model(path: Path) -> None:
    """A small convolutional model for the docs' ``model.onnx``: an RGB input cropped to 192."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], "relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], "conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["output"], "relu2"),
    ]
    graph = helper.make_graph(
        nodes,
        "docs_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 192, 192])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 96, 96])],
        [w1, w2],
    )
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _calib_images(path: Path) -> None:
    from dlakit.data import load_dataset

    path.mkdir()
    photos = load_dataset("opencv-photos", limit=4)
    for image, name in zip(photos.images, photos.names, strict=True):
        Image.fromarray(np.asarray(image)).save(path / (Path(name).stem + ".png"))


def _trt_cache(path: Path) -> None:
    """A TensorRT calibration cache of ``model.onnx``, as dlakit writes one."""
    for name in ("model.onnx", "calib_images/"):
        _reader_file(path.parent, name)
    args = ["calibrate", "model.onnx", "-d", "calib_images/", "-p", "imagenet,crop=192"]
    assert main([*args, "-o", "trtcache.scales.json", "--trt-cache", path.name]) == 0


# Files the docs leave to the reader, by the name a command gives them.
READER_FILES: dict[str, Callable[[Path], None]] = {
    "model.onnx": _doc_model,
    "calib_images/": _calib_images,
    "model.trtcache": _trt_cache,
}


def _reader_file(workdir: Path, name: str) -> None:
    if name in READER_FILES and not (workdir / name).exists():
        READER_FILES[name](workdir / name)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docs")


def _argv(command: str) -> list[str]:
    """The CLI arguments of a command; ``../shared`` is wherever the shared folder is."""
    shared = "../shared/"
    words = shlex.split(command)[1:]
    return [str(shared_dir() / w[len(shared) :]) if w.startswith(shared) else w for w in words]


def _run(command: Command, workdir: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workdir)
    for arg in _argv(command.runnable or ""):
        word = arg.removeprefix("@")  # a list file (--fp16-layers @FILE) is a file too
        _reader_file(workdir, word)
        producer = next((c for c in RUNNABLE if word in c.outputs and c is not command), None)
        if producer is not None and word not in command.outputs and not (workdir / word).exists():
            _run(producer, workdir, monkeypatch, capsys)
    rc = main(_argv(command.runnable or ""))
    out = capsys.readouterr()
    assert rc == 0, f"{command.doc}: `{command.runnable}` exited {rc}\n{out.out[-3000:]}{out.err}"


@pytest.mark.parametrize(
    "command",
    [pytest.param(c, marks=[pytest.mark.slow] if c.runnable in SLOW else []) for c in RUNNABLE],
    ids=[c.doc for c in RUNNABLE],
)
def test_documented_command_runs(command, workdir, monkeypatch, capsys, request):
    if "../shared/" in command.runnable:
        request.getfixturevalue("shared")  # skips, or fails under CI, when it is missing
    _run(command, workdir, monkeypatch, capsys)


def _alternatives(line: str) -> list[list[str]]:
    """The argv of a synopsis, once per alternative of its ``a|b|c`` values, placeholders filled."""
    words = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
    choices = [[PLACEHOLDERS.get(p, p) for p in w.split("|")] for w in words]
    widest = max(len(c) for c in choices)
    return [[c[min(i, len(c) - 1)] for c in choices] for i in range(widest)]


@pytest.mark.parametrize("command", COMMANDS, ids=[c.doc for c in COMMANDS])
def test_documented_command_parses(command):
    """Every flag of the line exists on its verb and takes the kind of value the line gives it."""
    for argv in _alternatives(command.line):
        group = typer.main.get_command(app)
        ctx = group.make_context("dlakit", list(argv), resilient_parsing=True)
        cmd, rest = group, list(argv)
        while hasattr(cmd, "get_command") and rest and not rest[0].startswith("-"):
            sub = cmd.get_command(ctx, rest[0])
            assert sub is not None, f"{command.doc}: no command {rest[0]!r} in `{command.line}`"
            cmd, rest = sub, rest[1:]
        try:
            cmd.make_context(cmd.name, rest, parent=ctx)
        except Exception as exc:
            message = exc.format_message() if hasattr(exc, "format_message") else exc
            pytest.fail(f"{command.doc}: `{' '.join(argv)}`: {message}")


def test_the_docs_have_commands_and_the_slow_table_names_only_them():
    assert len(RUNNABLE) >= 15, [c.doc for c in COMMANDS]
    documented = {c.runnable for c in RUNNABLE}
    assert not SLOW - documented, SLOW - documented


def _python_imports() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        block = None
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                block = line.strip()[3:] if block is None else None
            elif block == "python" and re.match(r"(from|import) dlakit", line):
                found.append((f"{doc.relative_to(ROOT)}:{number}", line.split("#")[0].strip()))
    return found


@pytest.mark.parametrize(("doc", "statement"), _python_imports(), ids=lambda v: v)
def test_documented_python_imports_import(doc, statement):
    exec(statement, {})


def test_documented_files_exist():
    pattern = r"(?:src/)?dlakit/[\w/]+\.(?:py|toml)|(?:tests|bench|scripts)/[\w/]+\.(?:py|md)"
    missing = [
        f"{doc.relative_to(ROOT)}: {path}"
        for doc in DOCS
        for path in re.findall(pattern, doc.read_text())
        if not (ROOT / path).exists() and not (ROOT / "src" / path).exists()
    ]
    assert not missing
