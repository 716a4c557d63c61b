"""The runner's memory plan bounds what a batch really takes, and a batch that does not fit is
refused by name.

Measured in a child process of its own (peak resident memory only grows): a warm batch of 2,
then a batch of 24; the peak's growth per extra image must stay within the runner's planned
bytes per image. The model is a residual block on nv_small, whose Add runs on the host in float
and float64 ops: the fallback segments ResNet-50 has 16 of.
"""

import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

from dlakit.errors import DlakitError
from dlakit.nvdla import write_artifact
from dlakit.run.runner import Runner
from nvdla_cases import compile_case, conv_model

RNG = np.random.default_rng(5)
SMALL, LARGE = 2, 24

_CHILD = """
import sys
import numpy as np
from dlakit.nvdla import read_artifact
from dlakit.run.runner import Runner
from dlakit.system import peak_resident
comp = read_artifact(sys.argv[1])
engine, small, large = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.random.default_rng(0).normal(size=(large, *comp.tensors["x"].shape[1:]))
x = x.astype(np.float32)
runner = Runner(comp, "cpu", engine, batch=large)
runner.run({"x": x[:small]})
before = peak_resident()
runner.run({"x": x})
print(before, peak_resident(), runner.memory_per_image())
"""


def _residual(tmp_path, c: int = 32, hw: int = 64):
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        mk("Relu", ["c1"], ["r1"], name="relu1"),
        mk("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        mk("Add", ["r1", "c2"], ["s1"], name="add1"),
        mk("Conv", ["s1", "w3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        mk("Add", ["s1", "c3"], ["s2"], name="add2"),
        mk("Conv", ["s2", "w4"], ["y"], name="conv4"),
    ]
    w = {
        "w1": (c, 4, 3, 3),
        "w2": (c, c, 3, 3),
        "w3": (c, c, 3, 3),
        "w4": (4, c, 1, 1),
    }
    inits = {k: (RNG.normal(size=s) * 0.2).astype(np.float32) for k, s in w.items()}
    path = conv_model(tmp_path / "res.onnx", nodes, inits, (1, 4, hw, hw), "y", (1, 4, hw, hw))
    x = RNG.normal(size=(4, 4, hw, hw)).astype(np.float32)
    _, _, comp = compile_case(path, x, "nv_small")
    assert sum(s.kind == "fallback" for s in comp.segments) >= 2
    return comp


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    return _residual(tmp_path_factory.mktemp("memory"))


@pytest.mark.parametrize("engine", ["torch", "ort"])
def test_peak_growth_per_image_is_within_the_plan(residual, tmp_path, engine):
    artifact = tmp_path / "res.dla"
    write_artifact(residual, artifact)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(artifact), engine, str(SMALL), str(LARGE)],
        capture_output=True,
        text=True,
        check=True,
    )
    before, peak, planned = map(int, child.stdout.split()[-3:])
    growth = (peak - before) / (LARGE - SMALL)
    # The model's host values are ~1 MiB an image (float64 maps of 32 x 64 x 64): a growth the
    # check could tell from noise.
    assert planned > 1 << 20
    # The child's own peak (not its parent's, which getrusage would report): 22 more images of
    # ~1 MiB host values each must show.
    assert growth > 0
    assert growth <= planned, f"{growth / 2**20:.2f} MiB an image, planned {planned / 2**20:.2f}"


def test_a_batch_that_does_not_fit_is_refused_by_name(residual, monkeypatch):
    from dlakit.run import runner as runner_module

    runner = Runner(residual, "cpu", batch=1)
    budget = runner.memory_needed(3)
    monkeypatch.setattr(runner_module, "memory_budget", lambda device: budget)
    with pytest.raises(DlakitError, match=r"--batch 8: needs about .* GiB.*use --batch 3"):
        Runner(residual, "cpu", batch=8)
    assert Runner(residual, "cpu").batch == 3


def test_run_says_when_memory_reduces_the_default_batch(residual, tmp_path, monkeypatch, capsys):
    from dlakit.cli import main
    from dlakit.run import runner as runner_module

    artifact = tmp_path / "res.dla"
    write_artifact(residual, artifact)
    data = tmp_path / "x.npy"
    np.save(data, RNG.normal(size=(6, 4, 64, 64)).astype(np.float32))
    budget = Runner(residual, "cpu", batch=1).memory_needed(2)
    monkeypatch.setattr(runner_module, "memory_budget", lambda device: budget)
    assert main(["run", str(artifact), "-d", str(data)]) == 0
    assert "batch 2 (not 32)" in capsys.readouterr().out
