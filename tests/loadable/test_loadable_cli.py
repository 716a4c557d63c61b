"""``dlakit loadable``: inspect, run and test through the CLI, and its errors (exit 2, one line)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dlakit.cli import main
from dlakit.loadable.dimg import read_dimg

REG = Path("nvdla-loadables") / "regression"
PICK = ("PDP_L0_0_small", "SDP_X1_L0_0")


@pytest.fixture
def small_root(shared, tmp_path) -> Path:
    """A regression folder with two of the official tests."""
    root = tmp_path / "regression"
    for name in PICK:
        unit = name.split("_")[0]
        src = shared / REG / "flatbufs" / "kmd" / unit / f"{name}_fbuf"
        (root / "flatbufs" / "kmd" / unit).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / "flatbufs" / "kmd" / unit / src.name)
        golden = next(
            p for p in (shared / REG / "golden").iterdir() if p.name.rsplit("_", 1)[0] == name
        )
        shutil.copytree(golden, root / "golden" / golden.name)
    return root


def test_loadable_test_writes_outputs_and_counts(small_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "loadable",
                "test",
                str(small_root),
                "--out",
                str(out),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    # the plan's other tests have no loadable or golden here: skipped, never passed
    assert "2 passed, 0 failed, 17 skipped" in text.splitlines()
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["schema"] == "dlakit.loadable.test" and doc["passed"] == 2 and doc["failed"] == 0
    for golden in (small_root / "golden").iterdir():
        written = out / golden.name / "o_000000.dimg"
        assert written.read_bytes() == (golden / "dla" / "o_000000.dimg").read_bytes()


def test_loadable_test_without_out_leaves_nothing_behind(small_root, tmp_path, capsys):
    before = sorted(small_root.rglob("*"))
    assert main(["loadable", "test", str(small_root), "--json", str(tmp_path / "r.json")]) == 0
    assert "2 passed, 0 failed, 17 skipped" in capsys.readouterr().out.splitlines()
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["out"] is None
    assert all(o["path"] is None and o["ok"] for t in doc["tests"] for o in t["outputs"])
    assert sorted(small_root.rglob("*")) == before


def test_a_wrong_golden_fails_with_exit_1(small_root, tmp_path, capsys):
    golden = next((small_root / "golden").glob("PDP_L0_0_small_*"))
    (golden / "dla" / "lead.md5").write_text("0" * 32 + "  o_000000.dimg\n")
    assert main(["loadable", "test", str(small_root), "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out
    assert "1 passed, 1 failed, 17 skipped" in out.splitlines() and "md5 mismatch" in out


def test_run_writes_the_golden_image_and_reads_inputs(shared, tmp_path, capsys):
    kmd = shared / REG / "flatbufs" / "kmd"
    out = tmp_path / "pdp.dimg"
    assert main(["loadable", "run", str(kmd / "PDP" / "PDP_L0_0_fbuf"), "-o", str(out)]) == 0
    golden = next((shared / REG / "golden").glob("PDP_L0_0_e*")) / "dla" / "o_000000.dimg"
    assert out.read_bytes() == golden.read_bytes()
    # The MNIST loadable reads a digit image as the runtime does, and names it.
    nn = kmd / "NN" / "NN_L0_0_fbuf"
    seven = tmp_path / "seven.dimg"
    digit = shared / REG / "images" / "digits" / "seven.pgm"
    assert main(["loadable", "run", str(nn), "--input", str(digit), "-o", str(seven), "-q"]) == 0
    probabilities = read_dimg(seven).elements().reshape(-1).astype(np.float64)
    assert int(probabilities.argmax()) == 7 and probabilities.sum() == pytest.approx(1, abs=0.01)


def test_inspect_lists_and_writes_json(shared, tmp_path, capsys):
    nn = shared / REG / "flatbufs" / "kmd" / "NN" / "NN_L0_0_fbuf"
    assert main(["loadable", "inspect", str(nn), "-v", "--json", str(tmp_path / "i.json")]) == 0
    text = capsys.readouterr().out
    assert "DLA task 1: 11 operations" in text and "EMU1" in text
    doc = json.loads((tmp_path / "i.json").read_text())
    assert doc["schema"] == "dlakit.loadable"
    units = [op["unit"] for op in doc["dla_networks"][0]["operations"]]
    assert units.count("CONV") == 4 and units.count("PDP") == 2
    assert [t["name"] for t in doc["loadable"]["tensors"]] == ["data", "prob"]


def test_bad_input_is_one_line_and_exit_2(shared, tmp_path, capsys):
    kmd = shared / REG / "flatbufs" / "kmd"
    nn = kmd / "NN" / "NN_L0_0_fbuf"
    truncated = tmp_path / "t_fbuf"
    truncated.write_bytes(nn.read_bytes()[:5000])
    wrong = tmp_path / "wide.pgm"
    wrong.write_bytes(b"P5\n30 28\n255\n" + bytes(30 * 28))
    cases = [
        (["loadable", "inspect", str(truncated)], str(truncated)),
        (
            ["loadable", "run", str(nn), "--input", str(wrong), "-o", str(tmp_path / "x.dimg")],
            "does not fit",
        ),
        (
            [
                "loadable",
                "run",
                str(kmd / "PDP" / "PDP_L0_0_fbuf"),
                "--input",
                str(wrong),
                "-o",
                str(tmp_path / "y"),
            ],
            "binds no input tensor",
        ),
        (["loadable", "run", str(nn), "-o", str(nn)], "would overwrite"),
        (
            [
                "loadable",
                "run",
                str(kmd / "RBK" / "RBK_L0_0_fbuf"),
                "-t",
                "nv_small",
                "-o",
                str(tmp_path / "z"),
            ],
            "not supported for this configuration",
        ),
        (["loadable", "test", str(kmd), "--out", str(tmp_path / "o")], "not a regression folder"),
        (["loadable", "test", str(shared / REG), "--out", str(shared / REG / "golden")], "inside"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert words in err.replace("\n", " ") and len(err.splitlines()) <= 2, err
