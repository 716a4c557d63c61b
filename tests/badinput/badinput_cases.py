"""Shared pieces of the bad-input tests (issue 16): a small model every verb handles, its side
files and compiled artifact, crafted bad variants, and the check that a command refused in the
README's form (exit code 2, one line on stderr, no traceback)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dlakit.cli import main

TRACE_CFG = """mem_init(pri_mem, 0x80000000, 0x20, ALL_ZERO);
mem_load(pri_mem, 0x80000000, "t.dat");
reg_write(NVDLA_SDP.S_POINTER_0, 0x0);
check_crc(sync_id_0, 1, 0x80000000, 0x20, 0x12345678);
"""
TRACE_DAT = "{\n{offset:0x0, size:4, payload:0x01 0x02 0x03 0x04} ,\n}\n"


def fixture_model() -> onnx.ModelProto:
    """Two convolutions, a pool and a Gemm head: DLA and fallback segments on nv_small."""
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
    inits = [
        init("w1", 8, 3, 3, 3),
        init("b1", 8),
        init("w2", 8, 8, 1, 1),
        init("b2", 8),
        init("wg", 4, 8 * 8 * 8),
        init("bg", 4),
    ]
    graph = helper.make_graph(
        nodes,
        "fixture",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def conv_model(**change) -> onnx.ModelProto:
    """x[1,4,8,8] -> Conv 3x3 (pads 1) -> Relu -> y, with one crafted change (see the tests)."""
    c = 4
    group = change.get("group", 1)
    w_shape = change.get("w_shape", (4, c // max(group, 1), 3, 3))
    if "w_bytes" in change:
        w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(w_shape))
        w.raw_data = change["w_bytes"]
    else:
        data = np.random.default_rng(0).normal(size=w_shape).astype(np.float32)
        w = numpy_helper.from_array(data, "w")
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1], "dilations": [1, 1]}
    attrs.update(change.get("attrs", {}))
    if "group" in change:
        attrs["group"] = group
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["t"], name="conv", **attrs),
        helper.make_node(change.get("op", "Relu"), ["t"], ["y"], name="relu"),
        *change.get("extra_nodes", []),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, change.get("x_shape", [1, c, 8, 8]))
    outs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in change.get("outs", ["y"])
    ]
    graph = helper.make_graph(nodes, "g", [x], outs, [w])
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", change.get("opset", 17))], ir_version=8
    )


def make_fixtures(root: Path) -> Path:
    """model.onnx, data.npz, scales.json, cache.trtcache, table.nvdla.json, art.dla, a trace."""
    import os

    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(fixture_model().SerializeToString())
    rng = np.random.default_rng(2)
    np.savez(
        root / "data.npz",
        images=rng.normal(size=(4, 3, 16, 16)).astype(np.float32),
        labels=np.arange(4) % 4,
    )
    (root / "trace").mkdir()
    (root / "trace" / "t.cfg").write_text(TRACE_CFG)
    (root / "trace" / "t.dat").write_text(TRACE_DAT)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["calibrate", "model.onnx", "-d", "data.npz", "-m", "max", "-o", "scales.json",
                     "--trt-cache", "cache.trtcache", "--nvdla-table", "table.nvdla.json",
                     "-q"]) == 0  # fmt: skip
        assert main(["compile", "model.onnx", "-t", "nv_small", "-s", "scales.json",
                     "-o", "art.dla", "-q"]) == 0  # fmt: skip
    finally:
        os.chdir(cwd)
    return root


def copy_fixtures(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def refused(argv: list[str], capsys, contains: str | None = None) -> str:
    """Run ``dlakit argv``: it must exit 2 with one line on stderr; returns that line."""
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert rc == 2, f"dlakit {' '.join(argv)}: exit {rc}, stderr {err!r}"
    assert len(lines) == 1, f"dlakit {' '.join(argv)}: not one line: {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    if contains is not None:
        assert contains in lines[0], f"{contains!r} not in {lines[0]!r}"
    return lines[0]


def outcome(argv: list[str], capsys) -> int:
    """Run ``dlakit argv`` on input that may be good or bad: exit 0, or 2 with one line."""
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert rc in (0, 2), f"dlakit {' '.join(argv)}: exit {rc}, stderr {err!r}"
    if rc == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    return rc


def manifest_of(art: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(art)) as z:
        return json.loads(z.read("manifest.json"))


def rezip(art: bytes, manifest: dict | None = None, drop: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(art)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = zin.read(info)
            if info.filename == "manifest.json" and manifest is not None:
                data = json.dumps(manifest).encode()
            zout.writestr(info.filename, data)
    return out.getvalue()
