"""A seeded campaign of bad inputs over every verb (issue 16): crafted and mutated models, damaged
``.dla`` artifacts, scales files, TensorRT caches, NVDLA tables, trace files, flags and output
paths. Each case runs ``dlakit.cli.main`` in a forked child (its own folder, memory capped, a time
limit) and is sorted into the classes the README's promise rules out:

* ``traceback``: a Python traceback (or a crash) instead of a one-line error;
* ``hang``: still running after ``--timeout`` seconds;
* ``lost data``: an input file changed, replaced or removed;
* ``exit 0 on garbage``: exit code 0 on a case that must be refused;
* ``multi-line error``: a refusal whose stderr holds more than one line;
* ``other exit code``: an exit code other than 0 and 2 (1 from ``trace run``: a trace that ran
  and failed its CRC).

Cases marked ``refuse`` are bad input that must end in exit code 2; ``either`` cases (random bit
flips, which can leave a file valid) may also succeed, but never in the other classes.

    python bench/bad_input_campaign.py --seed 16 --mutations 520 [--only FAMILY] [--json out]

Run it with ``PYTHONPATH`` pointing at the source tree under test; the fixtures (a small ONNX
model, its scales, cache, table and compiled artifact, an official trace) are made with that same
tree's CLI, in a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = (
    "traceback",
    "hang",
    "lost data",
    "exit 0 on garbage",
    "multi-line error",
    "other exit code",
)
TRACE = "sdp_1x1x1_pass_through_int8"


@dataclass
class Case:
    family: str
    name: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    links: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, target, link)
    expect: str = "refuse"  # "refuse" | "either"
    outputs: tuple[str, ...] = ()  # pre-existing files the case may legitimately replace
    remove: tuple[str, ...] = ()  # fixtures left out of the case's folder


# --- fixtures -----------------------------------------------------------------------------------


def base_model(**change) -> onnx.ModelProto:
    """x[1,4,8,8] -> Conv 3x3 (pads 1) -> Relu -> y; ``change`` crafts one bad variant."""
    rng = np.random.default_rng(0)
    c = change.get("channels", 4)
    w_shape = change.get("w_shape", (4, c // max(change.get("group", 1), 1), 3, 3))
    if "w_bytes" in change:  # dims and data that disagree: never built as an array
        w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(w_shape))
        w.raw_data = change["w_bytes"]
    else:
        w = numpy_helper.from_array(rng.normal(size=w_shape).astype(np.float32), "w")
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1], "dilations": [1, 1]}
    attrs.update({k: v for k, v in change.get("attrs", {}).items() if v is not None})
    for k in change.get("drop_attrs", ()):
        attrs.pop(k, None)
    if "group" in change:
        attrs["group"] = change["group"]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["t"], name="conv", **attrs),
        helper.make_node(change.get("op", "Relu"), ["t"], ["y"], name="relu"),
        *change.get("extra_nodes", []),
    ]
    if change.get("reverse"):
        nodes.reverse()
    x_shape = change.get("x_shape", [1, c, 8, 8])
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
            for n in change.get("outs", ["y"])
        ],
        [w],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", change.get("opset", 17))], ir_version=8
    )


def fixture_model() -> onnx.ModelProto:
    """The model every verb gets right: two convolutions, a pool, a Gemm head (DLA + fallback)."""
    rng = np.random.default_rng(1)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.normal(size=shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fixture",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 8, 8, 1, 1), init("b2", 8),
         init("wg", 4, 8 * 8 * 8), init("bg", 4)],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def make_fixtures(root: Path, shared: Path) -> dict[str, bytes]:
    """Every valid input the cases start from, made with the CLI under test."""
    from dlakit.cli import main

    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(fixture_model().SerializeToString())
    rng = np.random.default_rng(2)
    np.savez(
        root / "data.npz",
        images=rng.normal(size=(6, 3, 16, 16)).astype(np.float32),
        labels=np.arange(6) % 4,
    )
    cwd = os.getcwd()
    os.chdir(root)
    try:
        steps = [
            ["calibrate", "model.onnx", "-d", "data.npz", "-m", "max", "-o", "scales.json",
             "--trt-cache", "cache.trtcache", "--nvdla-table", "table.nvdla.json", "-q"],
            ["compile", "model.onnx", "-t", "nv_small", "-s", "scales.json", "-o", "art.dla", "-q"],
        ]  # fmt: skip
        for argv in steps:
            rc = main(argv)
            if rc != 0:
                raise SystemExit(f"fixture step failed ({rc}): dlakit {' '.join(argv)}")
    finally:
        os.chdir(cwd)
    trace_dir = shared / "nvdla-traces" / "nv_small" / TRACE
    files = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    for p in trace_dir.iterdir():
        files[f"trace/{p.name}"] = p.read_bytes()
    return files


# --- case generators ----------------------------------------------------------------------------

Fixtures = dict[str, bytes]


def output_path_cases(fx: Fixtures) -> list[Case]:
    m, s, a, c, t = "model.onnx", "scales.json", "art.dla", "cache.trtcache", "table.nvdla.json"
    cal = ["calibrate", m, "-d", "data.npz", "-m", "max", "-q"]
    cases = [
        ("check --json M", ["check", m, "--json", m, "-q"]),
        ("profile --json M", ["profile", m, "--json", m, "-q"]),
        ("fix --json M", ["fix", m, "-o", "out.onnx", "--random", "--json", m, "-q"]),
        ("fix -o M", ["fix", m, "-o", m, "--random", "-q"]),
        ("compile -o M", ["compile", m, "-t", "nv_small", "-s", s, "-o", m, "-q"]),
        ("compile -o S", ["compile", m, "-t", "nv_small", "-s", s, "-o", s, "-q"]),
        ("compile --json S", ["compile", m, "-t", "nv_small", "-s", s, "-o", "o.dla", "--json", s]),
        ("calibrate -o M", [*cal, "-o", m]),
        ("calibrate --trt-cache M", [*cal, "-o", "o.json", "--trt-cache", m]),
        ("calibrate --nvdla-table M", [*cal, "-o", "o.json", "--nvdla-table", m]),
        ("calibrate -o data", [*cal, "-o", "data.npz"]),
        ("calibrate --from-cache X -o X", ["calibrate", m, "--from-cache", c, "-o", c, "-q"]),
        ("calibrate --from-cache X --trt-cache X",
         ["calibrate", m, "--from-cache", c, "-o", "o.json", "--trt-cache", c, "-q"]),
        ("calibrate --from-cache T --nvdla-table T",
         ["calibrate", m, "--from-cache", t, "-o", "o.json", "--nvdla-table", t, "-q"]),
        ("calibrate -o X --trt-cache X", [*cal, "-o", "o.json", "--trt-cache", "o.json"]),
        ("accuracy --json S", ["accuracy", m, "-s", s, "-d", "data.npz", "--json", s, "-q"]),
        ("accuracy --json M", ["accuracy", m, "-s", s, "-d", "data.npz", "--json", m, "-q"]),
        ("inspect --json A", ["inspect", a, "--json", a, "-q"]),
        ("run -o A", ["run", a, "-d", "data.npz", "-o", a, "-q"]),
        ("run --json A", ["run", a, "-d", "data.npz", "--json", a, "-q"]),
        ("run -o data", ["run", a, "-d", "data.npz", "-o", "data.npz", "-q"]),
        ("check --emit over M", ["check", "segments.json", "--emit", ".", "-q"]),
        ("trace run --json cfg", ["trace", "run", f"trace/{TRACE}.cfg", "--json",
                                  f"trace/{TRACE}.cfg", "-q"]),
    ]  # fmt: skip
    out = [Case("output path", n, argv) for n, argv in cases]
    out[-2].files = {"segments.json": fx["model.onnx"]}
    for kind in ("symlink", "hardlink"):
        for name, argv in (
            ("check --json", ["check", m, "--json", "L", "-q"]),
            ("fix -o", ["fix", m, "-o", "L", "--random", "-q"]),
            ("compile -o", ["compile", m, "-t", "nv_small", "-s", s, "-o", "L", "-q"]),
            ("calibrate -o", [*cal, "-o", "L"]),
            ("run -o", ["run", a, "-d", "data.npz", "-o", "L", "-q"]),
        ):
            target = a if name == "run -o" else m
            out.append(Case("output path", f"{name} {kind} to input", argv,
                            links=[(kind, target, "L")]))  # fmt: skip
    for name, argv in (
        ("check --json parent is a file", ["check", m, "--json", f"{m}/x.json", "-q"]),
        ("fix -o parent is a file", ["fix", m, "-o", f"{s}/x.onnx", "--random", "-q"]),
        ("run -o parent is a file", ["run", a, "-d", "data.npz", "-o", f"{a}/y.npz", "-q"]),
        ("compile -o is a folder", ["compile", m, "-t", "nv_small", "-s", s, "-o", "trace", "-q"]),
        ("calibrate -o is a folder", [*cal, "-o", "trace"]),
    ):
        out.append(Case("output path", name, argv))
    for name, argv in (
        ("check --json parent missing", ["check", m, "--json", "new/dir/x.json", "-q"]),
        ("run -o parent missing", ["run", a, "-d", "data.npz", "-o", "new/y.npz", "-q"]),
        ("compile -o parent missing", ["compile", m, "-t", "nv_small", "-s", s, "-o", "n/a.dla"]),
    ):
        out.append(Case("output path", name, argv, expect="either"))
    return out


def _conv_variants() -> list[tuple[str, onnx.ModelProto | bytes]]:
    two_writers = [helper.make_node("Relu", ["x"], ["t"], name="second_writer")]
    variants: list[tuple[str, onnx.ModelProto | bytes]] = [
        ("group 0", base_model(group=0)),
        ("group -1", base_model(group=-1)),
        ("group 3 not dividing 4 channels", base_model(group=3, w_shape=(3, 1, 3, 3))),
        ("group 2 with weights for group 1", base_model(group=2, w_shape=(4, 4, 3, 3))),
        ("kernel_shape 5x5 with 3x3 weights", base_model(attrs={"kernel_shape": [5, 5]})),
        ("kernel_shape of one value", base_model(attrs={"kernel_shape": [3]})),
        ("pads 2^31", base_model(attrs={"pads": [2**31 - 1] * 4})),
        ("pads -1", base_model(attrs={"pads": [-1, -1, -1, -1]})),
        ("strides 0", base_model(attrs={"strides": [0, 0]})),
        ("strides 2^40", base_model(attrs={"strides": [2**40, 1]})),
        ("dilations 0", base_model(attrs={"dilations": [0, 0]})),
        ("dilations 100 (kernel past the input)", base_model(attrs={"dilations": [100, 100]})),
        ("opset 99", base_model(opset=99)),
        ("opset 1", base_model(opset=1)),
        ("output no node produces", base_model(outs=["y", "nowhere"])),
        ("output is the input", base_model(outs=["x"])),
        ("two nodes write one tensor", base_model(extra_nodes=two_writers)),
        (
            "two nodes write one tensor that fix rewrites",
            base_model(
                extra_nodes=[
                    helper.make_node("GlobalAveragePool", ["y"], ["gp"], name="gap"),
                    helper.make_node("HardSigmoid", ["gp"], ["hs"], name="hs1"),
                    helper.make_node("HardSigmoid", ["gp"], ["hs"], name="hs2"),
                ],
                outs=["hs"],
            ),
        ),
        ("input dimension 2^40", base_model(x_shape=[1, 4, 2**40, 8])),
        ("input 100000x100000", base_model(x_shape=[1, 4, 100000, 100000])),
        ("input dimension 0", base_model(x_shape=[1, 4, 0, 8])),
        ("weights shorter than their shape", base_model(w_bytes=b"\0" * 40)),
        ("weights longer than their shape", base_model(w_bytes=b"\0" * 4000)),
        ("weight dims 2^40", base_model(w_shape=(4, 4, 2**20, 2**20), w_bytes=b"")),
        ("unknown op", base_model(op="NoSuchOp")),
        ("required attribute missing", base_model(op="Concat")),
        ("nodes out of order", base_model(reverse=True)),
        (
            "undefined input",
            base_model(
                extra_nodes=[helper.make_node("Relu", ["ghost"], ["z"], name="z")], outs=["y", "z"]
            ),
        ),
    ]
    bad_name = base_model().SerializeToString().replace(b"relu", b"\xff\xfeu")
    variants.append(("node name not UTF-8", bad_name))
    bad_tensor = base_model().SerializeToString().replace(b"\x12\x01t", b"\x12\x01\xff")
    variants.append(("tensor name not UTF-8", bad_tensor))
    variants += [
        ("empty file", b""),
        ("text file", b"hello, not a model\n"),
        ("random bytes", bytes(random.Random(7).randrange(256) for _ in range(2048))),
        ("truncated", base_model().SerializeToString()[:150]),
    ]
    return variants


def model_cases(fx: Fixtures) -> list[Case]:
    cases = []
    for name, model in _conv_variants():
        data = model if isinstance(model, bytes) else model.SerializeToString()
        for verb in (
            ["check", "bad.onnx", "-q"],
            ["profile", "bad.onnx", "-q"],
            ["fix", "bad.onnx", "-o", "out.onnx", "--random", "-q"],
            ["calibrate", "bad.onnx", "-d", "npz4.npz", "-m", "max", "-o", "o.json", "-q"],
        ):
            cases.append(
                Case("model", f"{verb[0]}: {name}", verb, files={"bad.onnx": data, **_npz4()})
            )
    return cases


def _npz4() -> dict[str, bytes]:
    buf = io.BytesIO()
    np.savez(buf, images=np.random.default_rng(3).normal(size=(2, 4, 8, 8)).astype(np.float32))
    return {"npz4.npz": buf.getvalue()}


def _manifest_of(art: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(art)) as z:
        return json.loads(z.read("manifest.json"))


def _rezip(art: bytes, manifest: dict | None = None, drop: str | None = None,
           replace: dict[str, bytes] | None = None) -> bytes:  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(art)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = zin.read(info)
            if info.filename == "manifest.json" and manifest is not None:
                data = json.dumps(manifest).encode()
            if replace and info.filename in replace:
                data = replace[info.filename]
            zout.writestr(info.filename, data)
    return out.getvalue()


def _first_op(doc: dict) -> dict:
    return next(op for seg in doc["segments"] for op in seg.get("ops", []))


def _first_surface(doc: dict) -> dict:
    return next(t["surface"] for t in doc["tensors"].values() if t.get("surface"))


def artifact_cases(fx: Fixtures) -> list[Case]:
    art = fx["art.dla"]
    edits: list[tuple[str, Callable[[dict], None]]] = [
        ("no segments", lambda d: d.update(segments=[])),
        ("segments not a list", lambda d: d.update(segments={"a": 1})),
        ("address past the memory", lambda d: _first_surface(d).update(address=2**31 + 2**30)),
        ("surface address a string", lambda d: _first_surface(d).update(address="0x10")),
        ("negative shape", lambda d: next(iter(d["tensors"].values())).update(shape=[1, -4, 8])),
        ("shape of zeros", lambda d: next(iter(d["tensors"].values())).update(shape=[0, 0])),
        ("64-bit register value",
         lambda d: _first_op(d)["registers"].__setitem__(0, _first_op(d)["registers"][0]
                                                         .split("=")[0] + "=0xffffffffffffffff")),
        ("33-bit register value",
         lambda d: _first_op(d)["registers"].__setitem__(0, _first_op(d)["registers"][0]
                                                         .split("=")[0] + "=0x1ffffffff")),
        ("register bits outside its fields",
         lambda d: _first_op(d)["registers"].__setitem__(-1, "CDMA.D_OP_ENABLE=0xfffffffe")),
        ("malformed register string",
         lambda d: _first_op(d)["registers"].__setitem__(0, "garbage")),
        ("register value not hex",
         lambda d: _first_op(d)["registers"].__setitem__(0, "CDMA.D_OP_ENABLE=0xzz")),
        ("unknown register", lambda d: _first_op(d)["registers"].__setitem__(0, "CDMA.NOPE=0x1")),
        ("unknown target", lambda d: d.update(target="tpu_v9")),
        ("target not NVDLA", lambda d: d.update(target="orin")),
        ("hw atom 0", lambda d: d["hw"].update(memory_atomic=0)),
        ("memory allocation of 2^40 bytes",
         lambda d: d["memory"]["activations"].update(size=2**40)),
        ("constants base a float", lambda d: d["memory"]["constants"].update(base=1.5)),
        ("wrong constants checksum", lambda d: d["memory"]["constants"].update(sha256="0" * 64)),
        ("missing memory", lambda d: d.pop("memory")),
        ("missing tensors", lambda d: d.pop("tensors")),
        ("missing hw", lambda d: d.pop("hw")),
        ("inputs not in tensors", lambda d: d.update(inputs=["ghost"])),
        ("no inputs", lambda d: d.update(inputs=[])),
        ("op without registers", lambda d: _first_op(d).pop("registers")),
        ("op kind missing", lambda d: _first_op(d).pop("kind")),
        ("segment kind unknown", lambda d: d["segments"][0].update(kind="tpu")),
        ("scale 0", lambda d: next(t for t in d["tensors"].values()
                                   if t["precision"] == "int8").update(scale=0)),
        ("scale NaN", lambda d: next(t for t in d["tensors"].values()
                                     if t["precision"] == "int8").update(scale=float("nan"))),
        ("precision int4", lambda d: next(iter(d["tensors"].values())).update(precision="int4")),
        ("version 99", lambda d: d.update(version=99)),
        ("manifest a list", None),
    ]  # fmt: skip
    raw = []
    for name, edit in edits:
        doc = _manifest_of(art)
        if edit is None:
            raw.append((name, _rezip(art, replace={"manifest.json": b"[1, 2]"})))
            continue
        edit(doc)
        raw.append((name, _rezip(art, doc)))
    raw += [
        ("missing constants.bin", _rezip(art, drop="constants.bin")),
        ("missing manifest", _rezip(art, drop="manifest.json")),
        ("manifest not JSON", _rezip(art, replace={"manifest.json": b"{nope"})),
        ("fallback member garbage",
         _rezip(art, replace={n: b"garbage" for n in _fallback_members(art)})),
        ("missing fallback member",
         _rezip(art, drop=next(iter(_fallback_members(art)), "none"))),
        ("zip CRC damaged", _damage_crc(art)),
        ("truncated zip", art[: len(art) // 2]),
        ("empty file", b""),
        ("not a zip", b"PK\x03\x04 not really"),
    ]  # fmt: skip
    cases = []
    for name, data in raw:
        cases.append(Case("artifact", f"inspect: {name}", ["inspect", "bad.dla", "-q"],
                          files={"bad.dla": data}))  # fmt: skip
        cases.append(Case("artifact", f"run: {name}", ["run", "bad.dla", "-d", "data.npz", "-q"],
                          files={"bad.dla": data}))  # fmt: skip
    return cases


def _fallback_members(art: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(art)) as z:
        return [n for n in z.namelist() if n.startswith("fallback/")]


def _damage_crc(art: bytes) -> bytes:
    """Flip one byte inside constants.bin's stored data: the zip opens, the CRC fails."""
    with zipfile.ZipFile(io.BytesIO(art)) as z:
        info = z.getinfo("constants.bin")
    data = bytearray(art)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    return bytes(data)


def side_file_cases(fx: Fixtures) -> list[Case]:
    scales = json.loads(fx["scales.json"])
    first = next(iter(scales["activations"]))
    lines = fx["cache.trtcache"].decode().splitlines()
    table = json.loads(fx["table.nvdla.json"])
    tname = next(iter(table))

    def sc(edit: Callable[[dict], None]) -> bytes:
        doc = json.loads(fx["scales.json"])
        edit(doc)
        return json.dumps(doc).encode()

    def tb(edit: Callable[[dict], None]) -> bytes:
        doc = json.loads(fx["table.nvdla.json"])
        edit(doc)
        return json.dumps(doc).encode()

    scale_files = [
        ("amax 0", sc(lambda d: d["activations"][first].update(amax=0))),
        ("amax negative", sc(lambda d: d["activations"][first].update(amax=-1.0))),
        ("amax NaN", sc(lambda d: d["activations"][first].update(amax=float("nan")))),
        ("amax infinite", sc(lambda d: d["activations"][first].update(amax=float("inf")))),
        ("amax subnormal", sc(lambda d: d["activations"][first].update(amax=1e-45))),
        ("amax a string", sc(lambda d: d["activations"][first].update(amax="big"))),
        ("amax true", sc(lambda d: d["activations"][first].update(amax=True))),
        ("min above max", sc(lambda d: d["activations"][first].update(min=5.0, max=-5.0))),
        ("weights amax negative",
         sc(lambda d: next(iter(d["weights"].values())).update(amax=[-1.0]))),
        ("weights axis 99", sc(lambda d: next(iter(d["weights"].values())).update(axis=99))),
        ("num_inputs -5", sc(lambda d: d.update(num_inputs=-5))),
        ("percentile 500", sc(lambda d: d.update(percentile=500))),
        ("activations a list", sc(lambda d: d.update(activations=[1, 2]))),
        ("no format", sc(lambda d: d.pop("format"))),
        ("graph sha not hex", sc(lambda d: d["model"].update(graph_sha256="zz"))),
        ("duplicate key, two values",
         fx["scales.json"].replace(b'"activations": {', b'"activations": {"' + first.encode()
                                   + b'": {"amax": 9.0, "min": 0, "max": 9.0},', 1)),
        ("not JSON", b"{oops"),
        ("binary", bytes(range(256))),
        ("deep nesting", b"[" * 100000 + b"]" * 100000),
    ]  # fmt: skip
    caches = [
        ("4-hex-digit scale", "\n".join([lines[0], f"{first}: 3c01", *lines[2:]])),
        ("scale 0", "\n".join([lines[0], f"{first}: 00000000", *lines[2:]])),
        ("scale NaN", "\n".join([lines[0], f"{first}: 7fc00000", *lines[2:]])),
        ("scale infinite", "\n".join([lines[0], f"{first}: 7f800000", *lines[2:]])),
        ("scale negative", "\n".join([lines[0], f"{first}: bf800000", *lines[2:]])),
        ("scale subnormal", "\n".join([lines[0], f"{first}: 00000001", *lines[2:]])),
        ("conflicting repeat", "\n".join([*lines, f"{first}: 3f800000"])),
        ("bad header", "\n".join(["TRT-xx-EntropyCalibration2", *lines[1:]])),
        ("garbage line", "\n".join([*lines, "garbage"])),
        ("9 hex digits", "\n".join([lines[0], f"{first}: 3c010a14f", *lines[2:]])),
    ]
    tables = [
        ("scale 0", tb(lambda d: d[tname].update(scale=0))),
        ("scale negative", tb(lambda d: d[tname].update(scale=-0.5))),
        ("scale NaN", tb(lambda d: d[tname].update(scale=float("nan")))),
        ("scale a string", tb(lambda d: d[tname].update(scale="x"))),
        ("scale 0 and min/max 0", tb(lambda d: d[tname].update(scale=0, min=0, max=0))),
        ("no scale, min/max", tb(lambda d: d.update({tname: {"offset": 0}}))),
        ("entry a list", tb(lambda d: d.update({tname: [1]}))),
        ("a list", b"[1, 2, 3]"),
        ("duplicate layer, two scales",
         fx["table.nvdla.json"].replace(b"{", b'{"' + tname.encode()
                                        + b'": {"scale": 0.5, "min": 0, "max": 1, "offset": 0},',
                                        1)),
    ]  # fmt: skip
    cases = []
    m = "model.onnx"
    for name, data in scale_files:
        for verb in (
            ["compile", m, "-t", "nv_small", "-s", "bad.json", "-o", "o.dla", "-q"],
            ["accuracy", m, "-s", "bad.json", "-d", "data.npz", "-q"],
        ):
            cases.append(Case("side file", f"{verb[0]} scales: {name}", verb,
                              files={"bad.json": data}))  # fmt: skip
    for name, text in caches:
        cases.append(Case("side file", f"calibrate --from-cache: cache {name}",
                          ["calibrate", m, "--from-cache", "bad.trtcache", "-o", "o.json", "-q"],
                          files={"bad.trtcache": (text + "\n").encode()}))  # fmt: skip
    for name, data in tables:
        cases.append(Case("side file", f"calibrate --from-cache: table {name}",
                          ["calibrate", m, "--from-cache", "bad.json", "-o", "o.json", "-q"],
                          files={"bad.json": data}))  # fmt: skip
    return cases


def trace_cases(fx: Fixtures) -> list[Case]:
    cfg_name = f"trace/{TRACE}.cfg"
    dat_name = f"trace/{TRACE}.dat"
    cfg = fx[cfg_name].decode()
    dat = fx[dat_name].decode()
    first_reg = next(line for line in cfg.splitlines() if line.startswith("reg_write"))
    reg_name = first_reg.split("(")[1].split(",")[0]
    variants = [
        ("out-of-range mem_load", {cfg_name: cfg.replace("mem_load(pri_mem, 0x80000400",
                                                         "mem_load(pri_mem, 0xfffffffe", 1)}),
        (".dat offset 0xFFFFFFFF", {dat_name: dat.replace("offset:0x0", "offset:0xFFFFFFFF")}),
        ("garbage .dat lines", {dat_name: dat.replace("}\n", "}\nthis is not a packet\n", 1)}),
        (".dat payload byte 0x1FF", {dat_name: dat.replace("0x01", "0x1FF", 1)}),
        (".dat size wrong", {dat_name: dat.replace("size:4", "size:5")}),
        ("33-bit register value", {cfg_name: cfg.replace(first_reg,
                                                         f"reg_write({reg_name}, 0x1ffffffff);")}),
        ("register value not a number", {cfg_name: cfg.replace(first_reg,
                                                                f"reg_write({reg_name}, zz);")}),
        ("unknown register",
         {cfg_name: cfg.replace(first_reg, "reg_write(NVDLA_SDP.NOPE_0, 0x1);")}),
        ("unknown command", {cfg_name: cfg + "\nfrobnicate(1, 2);\n"}),
        ("wrong arity", {cfg_name: cfg.replace("mem_init(pri_mem, 0x80000400, 0x8, ALL_ZERO)",
                                               "mem_init(pri_mem, 0x80000400)")}),
        ("unparseable line", {cfg_name: cfg + "\n)(garbage\n"}),
        ("missing .dat", {dat_name: None}),
        ("check_crc outside memory", {cfg_name: cfg.replace("1, 0x90000040, 0x8", "1, 0x10, 0x8")}),
        ("mem_init 2^40 bytes", {cfg_name: cfg.replace("0x80000400, 0x8, ALL_ZERO",
                                                       "0x80000400, 0x10000000000, ALL_ZERO", 1)}),
        ("mem_init size not a number",
         {cfg_name: cfg.replace("0x8, ALL_ZERO", "eight, ALL_ZERO", 1)}),
        ("binary .cfg", {cfg_name: "\udcff"}),
    ]  # fmt: skip
    cases = []
    for name, change in variants:
        files = {k: v for k, v in fx.items() if k.startswith("trace/")}
        remove = tuple(k for k, v in change.items() if v is None)
        for k, v in change.items():
            if v is None:
                continue
            elif v == "\udcff":
                files[k] = bytes(range(128, 256))
            else:
                files[k] = v.encode()
        cases.append(Case("trace", f"trace run: {name}", ["trace", "run", cfg_name, "-q"],
                          files=files, remove=remove))  # fmt: skip
    return cases


def flag_cases(fx: Fixtures) -> list[Case]:
    m, s, a = "model.onnx", "scales.json", "art.dla"
    flags = [
        ("check --trt 99.9", ["check", m, "--trt", "99.9", "-q"]),
        ("check --trt banana", ["check", m, "--trt", "banana", "-q"]),
        ("profile --batch 0", ["profile", m, "--batch", "0", "-q"]),
        ("profile --batch -3", ["profile", m, "-b", "-3", "-q"]),
        ("profile --batch 10^12", ["profile", m, "-b", str(10**12), "-q"]),
        ("profile --cores 0", ["profile", m, "--cores", "0", "-q"]),
        ("profile --cores 1000", ["profile", m, "--cores", "1000", "-q"]),
        ("profile --precision int4", ["profile", m, "--precision", "int4", "-q"]),
        ("profile --power-mode 1W", ["profile", m, "--power-mode", "1W", "-q"]),
        ("run -n -1", ["run", a, "-d", "data.npz", "-n", "-1", "-q"]),
        ("accuracy -n -1", ["accuracy", m, "-s", s, "-d", "data.npz", "-n", "-1", "-q"]),
        ("calibrate -n -1", ["calibrate", m, "-d", "data.npz", "-n", "-1", "-o", "o.json", "-q"]),
        ("fix -n -1", ["fix", m, "-o", "o.onnx", "-d", "data.npz", "-n", "-1", "-q"]),
        ("calibrate --percentile 0",
         ["calibrate", m, "-d", "data.npz", "-m", "percentile", "--percentile", "0",
          "-o", "o.json"]),
        ("calibrate --percentile 200",
         ["calibrate", m, "-d", "data.npz", "-m", "percentile", "--percentile", "200",
          "-o", "o.json"]),
        ("calibrate --trt-version -5",
         ["calibrate", m, "-d", "data.npz", "--trt-version", "-5", "-o", "o.json", "-q"]),
        ("calibrate --method foo", ["calibrate", m, "-d", "data.npz", "-m", "foo", "-o", "o.json"]),
        ("compile one node in --fp16-layers and --fallback-layers",
         ["compile", m, "-t", "nv_small", "-s", s, "-o", "o.dla", "--fp16-layers", "conv1",
          "--fallback-layers", "conv1", "-q"]),
        ("check --input-shape twice with two shapes",
         ["check", m, "--input-shape", "x:1x3x16x16", "--input-shape", "x:1x3x32x32", "-q"]),
        ("check --input-shape garbage", ["check", m, "--input-shape", "1xx3", "-q"]),
        ("check --input-shape 2^40", ["check", m, "--input-shape", f"1x3x{2**40}x16", "-q"]),
        ("run --device tpu", ["run", a, "-d", "data.npz", "--device", "tpu", "-q"]),
        ("run --device cuda:x", ["run", a, "-d", "data.npz", "--device", "cuda:x", "-q"]),
        ("trace run --device tpu", ["trace", "run", f"trace/{TRACE}.cfg", "--device", "tpu"]),
        ("run --fallback-engine tf", ["run", a, "-d", "data.npz", "--fallback-engine", "tf"]),
        ("run --compare a model of other outputs",
         ["run", a, "-d", "data.npz", "--compare", "other.onnx", "-q"]),
        ("check --target tpu", ["check", m, "-t", "tpu", "-q"]),
        ("compile --target orin", ["compile", m, "-t", "orin", "-s", s, "-o", "o.dla", "-q"]),
        ("check -v -q", ["check", m, "-v", "-q"]),
        ("check unknown flag", ["check", m, "--frobnicate"]),
        ("check missing argument", ["check"]),
        ("check --target without value", ["check", m, "--target"]),
        ("fix without -o", ["fix", m, "--random"]),
        ("profile --batch not a number", ["profile", m, "--batch", "two"]),
        ("accuracy --per-layer-inputs 0",
         ["accuracy", m, "-s", s, "-d", "data.npz", "--per-layer", "--per-layer-inputs", "0"]),
        ("accuracy --suggest-fp16 -1",
         ["accuracy", m, "-s", s, "-d", "data.npz", "--suggest-fp16", "-1"]),
        ("run -d .npy of garbage", ["run", a, "-d", "bad.npy", "-q"]),
        ("run -d .npy of another shape", ["run", a, "-d", "shape.npy", "-q"]),
        ("accuracy --labels garbage", ["accuracy", m, "-s", s, "-d", "data.npz", "--labels",
                                       "bad.npy", "-q"]),
        ("calibrate -d missing folder", ["calibrate", m, "-d", "nowhere/", "-o", "o.json"]),
        ("check a folder as model", ["check", "trace", "-q"]),
        ("inspect --registers missing op", ["inspect", a, "--registers", "nope"]),
        ("zoo fetch unknown", ["zoo", "fetch", "no-such-model"]),
    ]  # fmt: skip
    other = base_model(outs=["t"])  # a model whose outputs are not the artifact's
    shape_npy = io.BytesIO()
    np.save(shape_npy, np.zeros((2, 5, 5), np.float32))
    extra = {
        "other.onnx": other.SerializeToString(),
        "bad.npy": b"\x93NUMPY garbage",
        "shape.npy": shape_npy.getvalue(),
    }
    return [Case("flags", n, argv, files=dict(extra)) for n, argv in flags]


def mutation_cases(fx: Fixtures, rng: random.Random, count: int) -> list[Case]:
    """Random damage to valid files: bit flips, byte runs, truncation, insertion."""
    targets = [
        ("model.onnx", lambda f: ["check", f, "-q"]),
        ("model.onnx", lambda f: ["profile", f, "-q"]),
        ("model.onnx", lambda f: ["compile", f, "-t", "nv_small", "-s", "scales.json", "-o",
                                  "o.dla", "-q"]),
        ("art.dla", lambda f: ["inspect", f, "-q"]),
        ("art.dla", lambda f: ["run", f, "-d", "data.npz", "-q"]),
        ("scales.json", lambda f: ["compile", "model.onnx", "-t", "nv_small", "-s", f, "-o",
                                   "o.dla", "-q"]),
        ("cache.trtcache", lambda f: ["calibrate", "model.onnx", "--from-cache", f, "-o",
                                      "o.json", "-q"]),
        ("table.nvdla.json", lambda f: ["calibrate", "model.onnx", "--from-cache", f, "-o",
                                        "o.json", "-q"]),
        (f"trace/{TRACE}.cfg", lambda f: ["trace", "run", f, "-q"]),
        (f"trace/{TRACE}.dat", lambda f: ["trace", "run", f"trace/{TRACE}.cfg", "-q"]),
    ]  # fmt: skip
    cases = []
    for i in range(count):
        name, argv_of = targets[i % len(targets)]
        data = bytearray(fx[name])
        how = rng.choice(["flip", "bytes", "truncate", "insert", "text"])
        if how == "flip":
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(len(data))
                data[pos] ^= 1 << rng.randrange(8)
        elif how == "bytes":
            pos = rng.randrange(len(data))
            run = rng.randint(1, 16)
            data[pos : pos + run] = bytes(rng.randrange(256) for _ in range(run))
        elif how == "truncate":
            data = data[: rng.randrange(len(data))]
        elif how == "insert":
            pos = rng.randrange(len(data) + 1)
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        else:  # a printable character swapped for another: digits, hex, names
            text_pos = [j for j, b in enumerate(data) if 48 <= b < 123]
            if text_pos:
                pos = rng.choice(text_pos)
                data[pos] = rng.choice(b'0123456789abcdefxyzXYZ:-.,{}[]" ')
        bad = f"bad_{Path(name).name}"
        files = {k: v for k, v in fx.items() if k.startswith("trace/")} if "trace" in name else {}
        target = name.replace(Path(name).name, bad) if "/" in name else bad
        if name.endswith(".dat"):
            target = name  # the .cfg names its .dat
        files[target] = bytes(data)
        argv = argv_of(target if not name.endswith(".dat") else name)
        cases.append(Case("mutation", f"{how} {name} -> {argv[0]} #{i}", argv, files=files,
                          expect="either"))  # fmt: skip
    return cases


_POOL = [0, -1, 1, 2**31, 2**40, 2**64, 1.5, -0.0, float("nan"), "x", "", None, True, [], {},
         [1, 2], "0xffffffff"]  # fmt: skip


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


def structured_cases(fx: Fixtures, rng: random.Random, count: int) -> list[Case]:
    """One field of a manifest, a scales file or a model set to a value from a pool of
    troublemakers (0, -1, 2^40, NaN, strings, null, ...)."""
    cases = []
    for i in range(count):
        kind = ("manifest", "scales", "model")[i % 3]
        value = rng.choice(_POOL)
        if kind == "manifest":
            doc = _manifest_of(fx["art.dla"])
            path = rng.choice(list(_leaves(doc)))
            _set(doc, path, value)
            data = _rezip(fx["art.dla"], doc)
            verb = rng.choice([["inspect", "bad.dla", "-q"], ["run", "bad.dla", "-d", "data.npz",
                                                              "-q"]])  # fmt: skip
            files = {"bad.dla": data}
        elif kind == "scales":
            doc = json.loads(fx["scales.json"])
            path = rng.choice(list(_leaves(doc)))
            _set(doc, path, value)
            files = {"bad.json": json.dumps(doc).encode()}
            verb = ["compile", "model.onnx", "-t", "nv_small", "-s", "bad.json", "-o", "o.dla",
                    "-q"]  # fmt: skip
        else:
            model = fixture_model()
            ints = [a for n in model.graph.node for a in n.attribute if a.ints or a.type == 2]
            what = rng.choice(["attr", "dim", "input dim"])
            number = value if isinstance(value, int) and not isinstance(value, bool) else 0
            number = max(min(number, 2**63 - 1), -(2**63))
            if what == "attr" and ints:
                attr = rng.choice(ints)
                if attr.ints:
                    attr.ints[rng.randrange(len(attr.ints))] = number
                else:
                    attr.i = number
                path = (attr.name,)
            elif what == "dim":
                init = rng.choice(list(model.graph.initializer))
                init.dims[rng.randrange(len(init.dims))] = number
                path = (init.name, "dims")
            else:
                dims = model.graph.input[0].type.tensor_type.shape.dim
                dims[rng.randrange(len(dims))].dim_value = number
                path = ("x", "dims")
            files = {"bad.onnx": model.SerializeToString()}
            verb = rng.choice([["check", "bad.onnx", "-q"], ["profile", "bad.onnx", "-q"],
                               ["fix", "bad.onnx", "-o", "o.onnx", "--random", "-q"]])  # fmt: skip
        name = f"{kind} {'.'.join(map(str, path))} = {value!r} -> {verb[0]} #{i}"
        cases.append(Case("structured", name, verb, files=files, expect="either"))
    return cases


FAMILIES = {
    "output path": output_path_cases,
    "model": model_cases,
    "artifact": artifact_cases,
    "side file": side_file_cases,
    "trace": trace_cases,
    "flags": flag_cases,
}


# --- running one case ---------------------------------------------------------------------------


def _digest(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_ino, st.st_nlink


def _lay_out(case: Case, fx: Fixtures, folder: Path) -> dict[Path, tuple[str, int, int]]:
    folder.mkdir(parents=True)
    for name, data in {**fx, **case.files}.items():
        if name in case.remove:
            continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for kind, target, link in case.links:
        if kind == "symlink":
            (folder / link).symlink_to(target)
        else:
            os.link(folder / target, folder / link)
    return {
        p: _digest(p)
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name not in case.outputs
    }


def _child(argv: list[str], folder: Path, mem_bytes: int) -> None:
    os.chdir(folder)
    out = os.open(".stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(".stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.environ["COLUMNS"] = "100"
    resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    rc = 97
    try:
        from dlakit.cli import main

        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        rc = 98
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc if isinstance(rc, int) else 1)


def run_case(case: Case, fx: Fixtures, folder: Path, timeout: float, mem_bytes: int) -> dict:
    before = _lay_out(case, fx, folder)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(case.argv, folder, mem_bytes)
    status = None
    while time.monotonic() - start < timeout:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    seconds = time.monotonic() - start
    hung = status is None
    rc = None if hung else (os.waitstatus_to_exitcode(status))
    err = (folder / ".stderr").read_text(errors="replace") if (folder / ".stderr").exists() else ""
    classes = []
    if hung:
        classes.append("hang")
    elif "Traceback (most recent call last)" in err or rc in (97, 98) or (rc or 0) < 0:
        classes.append("traceback")
    lost = []
    for path, digest in before.items():
        if not path.exists() or path.is_symlink():
            lost.append(str(path.relative_to(folder)))
            continue
        sha, ino, _ = _digest(path)
        if sha != digest[0] or ino != digest[1]:
            lost.append(str(path.relative_to(folder)))
    if lost:
        classes.append("lost data")
    if not hung and "traceback" not in classes:
        if rc == 0 and case.expect == "refuse":
            classes.append("exit 0 on garbage")
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
        if rc != 0 and len(lines) > 1:
            classes.append("multi-line error")
        allowed = {0, 2} | ({1} if case.argv[:2] == ["trace", "run"] else set())
        if rc not in allowed:
            classes.append("other exit code")
    return {
        "family": case.family,
        "name": case.name,
        "argv": case.argv,
        "expect": case.expect,
        "rc": rc,
        "seconds": round(seconds, 2),
        "classes": classes,
        "lost": lost,
        "stderr": err[-600:],
    }


def _preload() -> None:
    """Import every verb before forking, so each child starts at once."""
    import importlib

    import dlakit.cli as cli

    for verb in cli.VERBS:
        importlib.import_module(f"dlakit.cli.{verb}")
    for module in ("torch", "onnxruntime", "dlakit.run.runner", "dlakit.partition",
                   "dlakit.nvdla", "dlakit.sim.trace", "dlakit.accuracy.compare"):  # fmt: skip
        importlib.import_module(module)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--mutations", type=int, default=520, help="random damage cases")
    ap.add_argument("--structured", type=int, default=240, help="one-field mutation cases")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds before a case is a hang")
    ap.add_argument("--memory-gib", type=float, default=6.0, help="address space of a case")
    ap.add_argument("--only", action="append", help="families to run (default: all)")
    ap.add_argument("--json", type=Path, help="write every case's result here")
    ap.add_argument("--keep", action="store_true", help="keep the case folders")
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("DLAKIT_SHARED", "../shared"))
    )
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _preload()
    import dlakit

    root = Path(tempfile.mkdtemp(prefix="dlakit-bad-input-"))
    fx = make_fixtures(root / "fixtures", args.shared)
    rng = random.Random(args.seed)
    cases: list[Case] = []
    for family, make in FAMILIES.items():
        if not args.only or family in args.only:
            cases += make(fx)
    if not args.only or "mutation" in args.only:
        cases += mutation_cases(fx, rng, args.mutations)
    if not args.only or "structured" in args.only:
        cases += structured_cases(fx, rng, args.structured)
    vm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mem_bytes = int(args.memory_gib * 2**30) + _address_space()
    print(f"dlakit from {Path(dlakit.__file__).parent}, seed {args.seed}, {len(cases)} cases, "
          f"timeout {args.timeout:.0f} s, memory +{args.memory_gib} GiB (rss {vm >> 20} MiB)",
          flush=True)  # fmt: skip
    results = []
    start = time.monotonic()
    for i, case in enumerate(cases):
        r = run_case(case, fx, root / f"case_{i:04d}", args.timeout, mem_bytes)
        results.append(r)
        if r["classes"]:
            print(f"[{i:4d}] {', '.join(r['classes']):<22} {case.family}: {case.name} "
                  f"(rc {r['rc']})", flush=True)  # fmt: skip
        if not args.keep:
            shutil.rmtree(root / f"case_{i:04d}", ignore_errors=True)
    total = Counter(c for r in results for c in r["classes"])
    by_family = {f: Counter() for f in [*FAMILIES, "mutation", "structured"]}
    for r in results:
        by_family[r["family"]].update(r["classes"])
        by_family[r["family"]]["cases"] += 1
    print(f"\n{len(results)} cases in {time.monotonic() - start:.0f} s")
    print("| family | cases | " + " | ".join(CLASSES) + " |")
    print("|---|---:|" + "---:|" * len(CLASSES))
    for family, counts in by_family.items():
        if counts["cases"]:
            print(f"| {family} | {counts['cases']} | "
                  + " | ".join(str(counts[c]) for c in CLASSES) + " |")  # fmt: skip
    print(f"| **all** | {len(results)} | " + " | ".join(str(total[c]) for c in CLASSES) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _address_space() -> int:
    """This process's virtual size: the cap of a case is this plus --memory-gib."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


if __name__ == "__main__":
    sys.exit(main())
