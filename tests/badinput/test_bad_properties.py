"""Property-based and mutation tests (hypothesis): whatever the damage to a model, an artifact, a
side file, a trace, a flag or an output path, a verb exits 0 or refuses in one line (exit 2),
never a traceback, and never changes an input. The examples per property come from the profile
in conftest.py (a few dozen in CI); bench/bad_input_campaign.py runs a longer seeded campaign."""

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from badinput_cases import TRACE_CFG, copy_fixtures, manifest_of, outcome, rezip
from hypothesis import given
from hypothesis import strategies as st

from dlakit.errors import DlakitError
from dlakit.sim.trace_check import check_trace

# Values that break naive readers: zero, negatives, huge, non-finite, wrong types.
NASTY = st.one_of(
    st.sampled_from([0, -1, 1, 2**31, 2**40, 2**64, "", "x", None, True, [], {}, [1, 2]]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=8),
)


@contextlib.contextmanager
def fresh(made: Path):
    """Each example gets its own copy of the fixtures as the current directory (a test's
    function-scoped fixtures are shared by all its examples)."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_fixtures(made, Path(tmp) / "case")
        os.chdir(folder)
        try:
            yield folder
        finally:
            os.chdir(cwd)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def _leaves(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list) and doc:
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _damage(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


EDITS = st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=6)
CUT = st.one_of(st.none(), st.integers(0, 4000))


@given(edits=EDITS, cut=CUT)
def test_a_damaged_model_is_checked_or_refused(made, capsys, edits, cut):
    with fresh(made) as work:
        (work / "bad.onnx").write_bytes(_damage((work / "model.onnx").read_bytes(), edits, cut))
        before = _digests(work)
        outcome(["check", "bad.onnx", "-q"], capsys)
        assert _digests(work) == before


@given(edits=EDITS, cut=CUT, run=st.booleans())
def test_a_damaged_artifact_is_read_or_refused(made, capsys, edits, cut, run):
    with fresh(made) as work:
        (work / "bad.dla").write_bytes(_damage((work / "art.dla").read_bytes(), edits, cut))
        argv = ["run", "bad.dla", "-d", "data.npz", "-q"] if run else ["inspect", "bad.dla", "-q"]
        outcome(argv, capsys)


@given(data=st.data(), value=NASTY, run=st.booleans())
def test_any_manifest_field_set_to_a_nasty_value_is_read_or_refused(made, capsys, data, value, run):
    with fresh(made) as work:
        art = (work / "art.dla").read_bytes()
        doc = manifest_of(art)
        path = data.draw(st.sampled_from(list(_leaves(doc))))
        _set(doc, path, value)
        (work / "bad.dla").write_bytes(rezip(art, doc))
        argv = ["run", "bad.dla", "-d", "data.npz", "-q"] if run else ["inspect", "bad.dla", "-q"]
        outcome(argv, capsys)


@given(data=st.data(), value=NASTY)
def test_any_scales_field_set_to_a_nasty_value_is_read_or_refused(made, capsys, data, value):
    with fresh(made) as work:
        doc = json.loads((work / "scales.json").read_text())
        path = data.draw(st.sampled_from(list(_leaves(doc))))
        _set(doc, path, value)
        (work / "bad.json").write_text(json.dumps(doc))
        outcome(["compile", "model.onnx", "-t", "nv_small", "-s", "bad.json", "-o", "o.dla", "-q"],
                capsys)  # fmt: skip


@given(scale=st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_a_cache_scale_is_taken_only_when_positive_finite_and_normal(made, capsys, scale):
    import struct

    with fresh(made) as work:
        lines = (work / "cache.trtcache").read_text().splitlines()
        name = lines[1].rpartition(": ")[0]
        lines[1] = f"{name}: {struct.pack('>f', scale).hex()}"
        (work / "bad.trtcache").write_text("\n".join(lines) + "\n")
        argv = ["calibrate", "model.onnx", "--from-cache", "bad.trtcache", "-o", "o.json", "-q"]
        rc = outcome(argv, capsys)
        good = scale == scale and 1.1754943508222875e-38 <= scale <= 3.4028234663852886e38
        assert rc == (0 if good else 2)


@given(line=st.text(alphabet=st.characters(codec="ascii"), max_size=60), at=st.integers(0, 4))
def test_any_trace_line_is_run_or_a_named_failure(tmp_path_factory, line, at):
    folder = tmp_path_factory.mktemp("trace")
    lines = TRACE_CFG.splitlines()
    lines.insert(at, line)
    (folder / "t.cfg").write_text("\n".join(lines) + "\n")
    (folder / "t.dat").write_text("{\n{offset:0x0, size:4, payload:0x01 0x02 0x03 0x04} ,\n}\n")
    try:
        check_trace(folder / "t.cfg", 32)
    except DlakitError as exc:
        assert "\n" not in str(exc) and "t.cfg:" in str(exc)


@given(
    value=st.one_of(st.integers(-(2**40), 2**40), st.sampled_from(["", "x", "1.5", "-", "0x10"])),
    flag=st.sampled_from([("profile", "--batch"), ("profile", "--cores"), ("check", "--trt"),
                          ("profile", "--power-mode"), ("check", "--input-shape")]),
)  # fmt: skip
def test_any_flag_value_is_taken_or_refused_in_one_line(made, capsys, value, flag):
    with fresh(made):
        verb, name = flag
        outcome([verb, "model.onnx", name, str(value), "-q"], capsys)


@given(how=st.sampled_from(["path", "symlink", "hardlink", "new", "dir/new"]),
       victim=st.sampled_from(["model.onnx", "scales.json", "data.npz"]),
       verb=st.sampled_from(["check", "calibrate", "compile", "accuracy"]))  # fmt: skip
def test_an_output_path_never_costs_an_input(made, capsys, how, victim, verb):
    inputs = {
        "check": ["model.onnx"],
        "calibrate": ["model.onnx", "data.npz"],
        "compile": ["model.onnx", "scales.json"],
        "accuracy": ["model.onnx", "scales.json", "data.npz"],
    }[verb]
    with fresh(made) as work:
        out = {"path": victim, "new": "fresh.out", "dir/new": "d/fresh.out"}.get(how, "link")
        if how in ("symlink", "hardlink"):
            (os.symlink if how == "symlink" else os.link)(victim, work / "link")
        before = _digests(work)
        argv = {
            "check": ["check", "model.onnx", "--json", out],
            "calibrate": ["calibrate", "model.onnx", "-d", "data.npz", "-m", "max", "-o", out],
            "compile": ["compile", "model.onnx", "-t", "nv_small", "-s", "scales.json", "-o", out],
            "accuracy": ["accuracy", "model.onnx", "-s", "scales.json", "-d", "data.npz",
                         "--json", out],
        }[verb]  # fmt: skip
        rc = outcome([*argv, "-q"], capsys)
        after = _digests(work)
        assert all(after[k] == before[k] for k in inputs)
        if victim in inputs and how in ("path", "symlink", "hardlink"):
            assert rc == 2
