"""``pip install dlakit`` without extras: check, fix, calibrate, compile and profile work; what
needs torch or matplotlib ends in one line naming the extra, exit code 2.

The commands run in a subprocess whose import system cannot find torch or matplotlib (as in an
environment where they were never installed), on the real zoo model ``ppocr-cls`` (an ONNX file
from a pinned wheel, no PyTorch export needed).
"""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import dlakit
from dlakit.errors import DlakitError
from dlakit.extras import EXTRA_OF, missing_extra, require

SRC = Path(dlakit.__file__).parents[1]
PYPROJECT = SRC.parent / "pyproject.toml"

# The path finder of a subprocess, made blind to torch and matplotlib.
WITHOUT_EXTRAS = """
import importlib.machinery, sys

HIDDEN = {"torch", "matplotlib"}


class WithoutExtras(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [
    WithoutExtras if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
"""
# Runs each argv (JSON lists on the command line) through the CLI in one process and prints one
# JSON line per command.
RUNNER = (
    WITHOUT_EXTRAS
    + """
import contextlib, io, json
from dlakit.cli import main

for argv in map(json.loads, sys.argv[1:]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except BaseException as exc:  # a traceback is a failure of the test, shown as such
            rc, err = -1, io.StringIO(f"{type(exc).__name__}: {exc}")
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in HIDDEN)
    print(json.dumps({"argv": argv, "rc": rc, "stdout": out.getvalue(),
                      "stderr": err.getvalue(), "loaded": loaded}))
"""
)


def _without_extras(cwd: Path, *commands: list[str], cache: Path | None = None) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "100"}
    if cache is not None:
        env["DLAKIT_CACHE"] = str(cache)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, *map(json.dumps, commands)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _error_line(result: dict) -> str:
    lines = result["stderr"].strip().splitlines()
    assert result["rc"] == 2 and len(lines) == 1, result
    return lines[0]


def test_the_core_verbs_run_without_torch_or_matplotlib(tmp_path):
    results = _without_extras(
        tmp_path,
        ["check", "ppocr-cls", "--target", "orin", "--json", "check.json"],
        ["fix", "ppocr-cls", "--target", "orin", "-o", "fixed.onnx"],
        ["check", "fixed.onnx", "--target", "nv_full"],
        ["profile", "ppocr-cls", "--target", "orin", "--json", "profile.json"],
        ["calibrate", "ppocr-cls", "-d", "skimage-photos", "-n", "4", "-m", "max", "-o", "s.json"],
        ["compile", "ppocr-cls", "--target", "nv_full", "--scales", "s.json", "-o", "m.dla"],
        ["inspect", "m.dla"],
    )
    for result in results:
        assert result["rc"] == 0, result
        assert result["loaded"] == [], result  # nothing imported torch or matplotlib
    assert json.loads((tmp_path / "check.json").read_text())["nodes"]
    assert "verified with onnxruntime" in results[1]["stdout"]
    assert json.loads((tmp_path / "profile.json").read_text())["layers"]
    assert (tmp_path / "m.dla").stat().st_size > 0


def test_what_needs_torch_names_the_sim_extra(tmp_path, shared):
    pdp = shared / "nvdla-loadables" / "regression" / "flatbufs" / "kmd" / "PDP" / "PDP_L0_0_fbuf"
    compiled = _without_extras(
        tmp_path,
        ["calibrate", "ppocr-cls", "-d", "skimage-photos", "-n", "4", "-m", "max", "-o", "s.json"],
        ["compile", "ppocr-cls", "--target", "nv_full", "--scales", "s.json", "-o", "m.dla"],
        ["run", "m.dla", "--data", "skimage-photos"],
        ["accuracy", "ppocr-cls", "--scales", "s.json", "--data", "skimage-photos"],
        ["trace", "run", str(shared / "nvdla-traces" / "nv_small")],
        ["loadable", "run", str(pdp), "-o", "pdp.dimg"],
        ["loadable", "inspect", str(pdp)],
    )
    assert [r["rc"] for r in compiled[:2]] == [0, 0], compiled[:2]
    assert compiled[-1]["rc"] == 0 and compiled[-1]["loaded"] == [], compiled[-1]
    run, accuracy, trace, loadable = (_error_line(r) for r in compiled[2:-1])
    assert loadable == trace
    for line in (run, accuracy, trace):
        assert line.endswith("needs torch, from the 'sim' extra: pip install 'dlakit[sim]'")
    assert run.startswith("error: running a .dla artifact")
    assert accuracy.startswith("error: the integer reference")
    assert trace.startswith("error: the NVDLA simulator")


def test_zoo_models_exported_from_torch_name_the_sim_extra(tmp_path):
    """An empty cache: these zoo entries are built by PyTorch (the ONNX entries are not)."""
    results = _without_extras(
        tmp_path,
        ["zoo", "list"],
        ["check", "resnet18"],
        ["check", "mnist-cnn"],
        cache=tmp_path / "cache",
    )
    assert results[0]["rc"] == 0 and "resnet18" in results[0]["stdout"]
    assert _error_line(results[1]) == (
        "error: zoo architecture 'resnet18' (built and exported in PyTorch) needs torch, "
        "from the 'sim' extra: pip install 'dlakit[sim]'"
    )
    assert _error_line(results[2]).startswith("error: zoo model 'mnist-cnn' (exported from")
    assert not (tmp_path / "cache" / "wheels").exists()  # refused before any download


@pytest.mark.parametrize("module", ["torch", "torch.nn", "matplotlib.pyplot"])
def test_the_harness_hides_the_extras(module):
    probe = subprocess.run(
        [sys.executable, "-c", f"{WITHOUT_EXTRAS}\nimport {module}"], capture_output=True, text=True
    )
    assert probe.returncode == 1
    assert f"No module named '{module.partition('.')[0]}'" in probe.stderr


def test_the_extras_of_pyproject_install_the_modules_they_are_named_for():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    core = " ".join(project["dependencies"])
    for module, extra in EXTRA_OF.items():
        assert module not in core
        assert any(dep.startswith(module) for dep in project["optional-dependencies"][extra])


def test_require_refuses_what_is_not_an_extra_and_passes_other_missing_modules_on():
    with pytest.raises(ValueError, match="not an optional dependency"):
        require("numpy", "anything")
    other = ModuleNotFoundError("No module named 'foo'", name="foo")
    assert missing_extra(other, "x") is other
    error = missing_extra(ModuleNotFoundError(name="torch.nn"), "the simulator")
    assert isinstance(error, DlakitError)
    assert (
        str(error) == "the simulator needs torch, from the 'sim' extra: pip install 'dlakit[sim]'"
    )
    assert require("torch", "the simulator").__name__ == "torch"  # installed here: imported
