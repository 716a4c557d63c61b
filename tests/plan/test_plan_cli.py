"""dlakit plan from the command line: tables, JSON schema, plots, emit, and bad input."""

import json

import pytest

from dlakit.cli import main

SCHEMA_KEYS = {"schema", "schema_version", "modeled", "target", "power_mode", "precision",
               "batch", "models", "gpu_only", "candidates", "chosen"}  # fmt: skip
CANDIDATE_KEYS = {"strategy", "images_per_second", "latency_ms", "speedup_vs_gpu_only", "devices"}


def test_plan_json_follows_the_schema(tmp_path, capsys):
    path = tmp_path / "plan.json"
    assert main(["plan", "mobilenetv1", "-t", "xavier-nx", "-b", "8", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert set(doc) >= SCHEMA_KEYS
    assert doc["schema"] == "dlakit.plan" and doc["schema_version"] == 1 and doc["modeled"]
    assert set(doc["gpu_only"]) == {"images_per_second", "latency_ms"}
    for c in [*doc["candidates"], doc["chosen"]]:
        assert set(c) >= CANDIDATE_KEYS
        assert set(c["devices"]) <= {"gpu", "dla0", "dla1", "cpu"}
        for stats in c["devices"].values():
            assert set(stats) == {"batch", "busy_ms", "utilization", "dram_gbps"}
        assert c["watts"] > 0 and c["images_per_joule"] > 0
    best = max(c["images_per_second"] for c in doc["candidates"])
    assert doc["chosen"]["images_per_second"] == best
    assert doc["chosen"]["images_per_second"] >= doc["gpu_only"]["images_per_second"]
    out = capsys.readouterr().out
    assert "modeled" in out and "chosen (throughput)" in out


def test_strategy_flag_picks_that_strategy(tmp_path):
    path = tmp_path / "p.json"
    args = ["plan", "resnet18", "-b", "4", "--strategy", "pipeline", "--json", str(path)]
    assert main(args) == 0
    doc = json.loads(path.read_text())
    assert doc["chosen"]["strategy"] == "pipeline"
    assert [c["strategy"] for c in doc["candidates"]] == ["pipeline"]


def test_batch_list_writes_a_curve_and_plots(tmp_path, capsys):
    path = tmp_path / "curve.json"
    args = ["plan", "mobilenetv1", "-t", "xavier-nx", "-b", "4,32", "--strategy", "data-parallel",
            "--json", str(path), "--plot", str(tmp_path / "plots")]  # fmt: skip
    assert main(args) == 0
    doc = json.loads(path.read_text())
    assert doc["batch"] == [4, 32] and len(doc["curve"]) == 2
    assert (tmp_path / "plots" / "timeline.png").stat().st_size > 10_000
    assert (tmp_path / "plots" / "throughput_vs_batch.png").stat().st_size > 10_000


def test_emit_writes_pieces_trtexec_and_runner(tmp_path):
    out = tmp_path / "emit"
    args = ["plan", "mobilenetv1", "-t", "xavier-nx", "-b", "6", "--strategy", "data-parallel",
            "--emit", str(out)]  # fmt: skip
    assert main(args) == 0
    doc = json.loads((out / "plan.json").read_text())
    assert doc["schema"] == "dlakit.plan" and doc["emit"]["steps"]
    script = (out / "trtexec.sh").read_text()
    assert "--useDLACore=0" in script and "--useDLACore=1" in script
    assert "--inputIOFormats=int8:dla_hwc4" in script
    assert "def run(" in (out / "run_plan.py").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "magic"], "--strategy magic: unknown"),
        (["-t", "nowhere"], "unknown target 'nowhere'"),
        (["--power-mode", "99W"], "no power mode '99W'"),
        (["-t", "nv_small"], "nv_small' has no modeled GPU"),
        (["--dla-cores", "3"], "--dla-cores 3: target 'orin' has 2 DLA core(s)"),
        (["-b", "0"], "--batch 0: the batch must be at least 1"),
        (["-b", "4,x"], "'x' is not an integer"),
        (["--strategy", "data-parallel", "--dla-cores", "0"], "cannot apply: no DLA core"),
        (["--objective", "speed"], "--objective speed"),
        (["--pre", "tpu"], "--pre tpu: the device must be cpu or gpu"),
        (["--pre", "cpu"], "--pre cpu: give its time"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["plan", "resnet18", "-b", "2", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_data_parallel_of_two_models_cannot_apply(capsys):
    code = main(["plan", "resnet18", "mobilenetv1", "--strategy", "data-parallel"])
    assert code == 2
    assert "data-parallel cannot apply: data-parallel splits one model" in capsys.readouterr().err
