"""Scales files, TensorRT caches and NVDLA tables (dlakit.quant.validate): every scale finite,
positive and a normal float32, one value per tensor; refused by every verb that reads them."""

import json

import pytest
from badinput_cases import refused

SCALES_VERBS = {
    "compile": ["compile", "model.onnx", "-t", "nv_small", "-s", "bad.json", "-o", "o.dla", "-q"],
    "accuracy": ["accuracy", "model.onnx", "-s", "bad.json", "-d", "data.npz", "-q"],
}


def _scales(work, edit):
    doc = json.loads((work / "scales.json").read_text())
    edit(doc, next(iter(doc["activations"])))
    (work / "bad.json").write_text(json.dumps(doc))


SCALES = {
    "amax 0": (lambda d, n: d["activations"][n].update(amax=0), "amax"),
    "amax negative": (lambda d, n: d["activations"][n].update(amax=-2.0), "amax"),
    "amax NaN": (lambda d, n: d["activations"][n].update(amax=float("nan")), "amax"),
    "amax infinite": (lambda d, n: d["activations"][n].update(amax=float("inf")), "amax"),
    "amax subnormal": (lambda d, n: d["activations"][n].update(amax=1e-45), "amax"),
    "amax a string": (lambda d, n: d["activations"][n].update(amax="big"), "not a number"),
    "min above max": (lambda d, n: d["activations"][n].update(min=5.0, max=-5.0), "above max"),
    "a negative weight amax": (
        lambda d, n: next(iter(d["weights"].values())).update(amax=[-1.0]), "negative"),
    "a model name that is no string": (lambda d, n: d["model"].update(name=[1]), "model.name"),
}  # fmt: skip


@pytest.mark.parametrize("verb", sorted(SCALES_VERBS))
@pytest.mark.parametrize("name", sorted(SCALES))
def test_a_bad_scales_file_is_refused(work, capsys, verb, name):
    edit, needle = SCALES[name]
    _scales(work, edit)
    refused(SCALES_VERBS[verb], capsys, needle)


@pytest.mark.parametrize("verb", sorted(SCALES_VERBS))
def test_a_tensor_given_twice_with_two_values_is_refused(work, capsys, verb):
    text = (work / "scales.json").read_text()
    doc = json.loads(text)
    first = next(iter(doc["activations"]))
    dup = f'"activations": {{"{first}": {{"amax": 9.0, "min": 0, "max": 9.0}},'
    (work / "bad.json").write_text(text.replace('"activations": {', dup, 1))
    refused(SCALES_VERBS[verb], capsys, "given twice")


def _cache(work, line: str | None = None, extra: str | None = None) -> None:
    lines = (work / "cache.trtcache").read_text().splitlines()
    if line is not None:
        name = lines[1].rpartition(": ")[0]
        lines[1] = f"{name}: {line}"
    if extra is not None:
        lines.append(extra)
    (work / "bad.trtcache").write_text("\n".join(lines) + "\n")


FROM_CACHE = ["calibrate", "model.onnx", "--from-cache", "bad.trtcache", "-o", "o.json", "-q"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [("3c01", "normal"), ("00000000", "scale"), ("7fc00000", "nan"),
     ("7f800000", "inf"), ("bf800000", "-1.0"), ("00000001", "normal")],
)  # fmt: skip
def test_a_cache_scale_that_is_not_a_positive_normal_float_is_refused(work, capsys, value, needle):
    _cache(work, line=value)
    refused(FROM_CACHE, capsys, needle)


def test_a_cache_with_a_conflicting_repeat_is_refused(work, capsys):
    first = (work / "cache.trtcache").read_text().splitlines()[1].rpartition(": ")[0]
    _cache(work, extra=f"{first}: 3f800000")
    refused(FROM_CACHE, capsys, "given twice")


def test_a_cache_repeating_the_same_value_is_read(work, capsys):
    from dlakit.cli import main

    line = (work / "cache.trtcache").read_text().splitlines()[1]
    _cache(work, extra=line)
    assert main(FROM_CACHE) == 0


@pytest.mark.parametrize(
    ("entry", "needle"),
    [({"scale": 0}, "scale"), ({"scale": -0.5}, "scale"), ({"scale": float("nan")}, "nan"),
     ({"scale": 0, "min": 0, "max": 0}, "scale"), ({"offset": 0}, "neither"),
     ({"min": 0, "max": 0}, "max(|min|, |max|)")],
)  # fmt: skip
def test_an_nvdla_table_scale_that_is_not_positive_is_refused(work, capsys, entry, needle):
    doc = json.loads((work / "table.nvdla.json").read_text())
    doc[next(iter(doc))] = entry
    (work / "bad.json").write_text(json.dumps(doc))
    argv = ["calibrate", "model.onnx", "--from-cache", "bad.json", "-o", "o.json", "-q"]
    refused(argv, capsys, needle)
