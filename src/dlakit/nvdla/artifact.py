"""The ``.dla`` artifact: a zip holding a compiled model (format ``dlakit-nvdla``, see
``docs/artifact.md``).

* ``manifest.json``: format name and version, target and hardware configuration, model inputs
  and outputs, every tensor (shape, precision, scale, surface), the memory allocation, and the
  segments in dependency order; a DLA segment lists its hardware operations with shapes, tiling and
  register writes (``"UNIT.REGISTER=0x0000abcd"``, in write order), a fallback segment names its
  ONNX file.
* ``constants.bin``: the constant memory image (weights, SDP operand tables), loaded at
  ``memory.constants.base``.
* ``fallback/<segment>.onnx``: the fallback (GPU/CPU) segments.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import BinaryIO

from dlakit.errors import DlakitError
from dlakit.files import ZIP_TIME, atomic_write
from dlakit.nvdla.compiler import Compiled, HwOp, Segment, TensorInfo
from dlakit.nvdla.config import nvdla_target
from dlakit.nvdla.surface import Surface
from dlakit.nvdla.validate import fallback_model, read_members, validate_manifest

FORMAT = "dlakit-nvdla"
VERSION = 2  # 2: fallback segments (was host), the full [nvdla] section under hw
# Measured times stay out of the artifact, whose bytes depend only on what was compiled.
WALL_CLOCK_STATS = ("compile_seconds",)


def _write_text(unit: str, reg: str, value: int) -> str:
    return f"{unit}.{reg}=0x{value:08x}"


def _parse_write(text: str) -> tuple[str, str, int]:
    target, _, value = text.partition("=")
    unit, _, reg = target.partition(".")
    return unit, reg, int(value, 16)


def manifest(comp: Compiled) -> dict:
    segments = []
    for seg in comp.segments:
        doc = {
            "kind": seg.kind,
            "name": seg.name,
            "layers": seg.layers,
            "inputs": seg.inputs,
            "outputs": seg.outputs,
        }
        if seg.kind == "fallback":
            doc["onnx"] = f"fallback/{seg.name}.onnx"
        else:
            doc["ops"] = [
                {
                    "name": op.name,
                    "kind": op.kind,
                    "layer": op.layer,
                    "onnx_nodes": op.onnx_nodes,
                    "inputs": op.inputs,
                    "outputs": op.outputs,
                    **op.info,
                    "registers": [_write_text(*w) for w in op.writes],
                }
                for op in seg.ops
            ]
        segments.append(doc)
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": comp.model,
        "target": comp.target.name,
        "hw": comp.target.nvdla.to_json(),
        "preprocess": comp.preprocess,
        "inputs": comp.inputs,
        "outputs": comp.outputs,
        "memory": {
            "activations": {"base": comp.act_base, "size": comp.act_bytes},
            "constants": {
                "base": comp.const_base,
                "size": len(comp.constants),
                "file": "constants.bin",
                "sha256": hashlib.sha256(comp.constants).hexdigest(),
            },
            "peak_bytes": comp.peak_bytes,
        },
        "stats": {k: v for k, v in comp.stats.items() if k not in WALL_CLOCK_STATS},
        "tensors": {
            name: {
                "shape": list(t.shape),
                "precision": t.precision,
                "scale": t.scale,
                "surface": None if t.surface is None else t.surface.to_json(),
            }
            for name, t in comp.tensors.items()
        },
        "segments": segments,
    }


def _member(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed time and mode: the same model gives the same bytes."""
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def write_artifact(comp: Compiled, path: str | Path) -> Path:
    def write(file: BinaryIO) -> None:
        with zipfile.ZipFile(file, "w") as z:
            z.writestr(_member("manifest.json"), json.dumps(manifest(comp), indent=1))
            z.writestr(_member("constants.bin"), comp.constants)
            for seg in comp.segments:
                if seg.kind == "fallback" and seg.model is not None:
                    z.writestr(_member(f"fallback/{seg.name}.onnx"), seg.model.SerializeToString())

    return atomic_write(path, write)


def _load(path: str | Path) -> tuple[dict, dict[str, bytes]]:
    """The manifest and every member, after the validator (``nvdla/validate.py``) passed them."""
    path = Path(path)
    if not path.is_file():
        raise DlakitError(f"artifact not found: {path}")
    members = read_members(path)
    if "manifest.json" not in members:
        raise DlakitError(f"{path} is not a dlakit .dla artifact (no manifest.json)")
    try:
        doc = json.loads(members["manifest.json"])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DlakitError(f"{path}: manifest.json is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise DlakitError(f"{path}: format {found!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise DlakitError(
            f"{path}: {FORMAT} version {doc.get('version')}; this dlakit reads version {VERSION}"
        )
    validate_manifest(doc, path, members)
    return doc, members


def read_manifest(path: str | Path) -> dict:
    return _load(path)[0]


def read_artifact(path: str | Path) -> Compiled:
    doc, members = _load(path)
    target = nvdla_target(doc["target"])  # the validator checked that hw is this target's
    constants = members[doc["memory"]["constants"]["file"]]
    segments = []
    for s in doc["segments"]:
        seg = Segment(s["kind"], s["name"], s["layers"], s["inputs"], s["outputs"])
        if seg.kind == "fallback":
            seg.model = fallback_model(members[s["onnx"]], s["onnx"], path)
        else:
            for o in s["ops"]:
                info = {
                    k: v
                    for k, v in o.items()
                    if k not in ("name", "kind", "layer", "onnx_nodes", "inputs", "outputs",
                                 "registers")
                }  # fmt: skip
                seg.ops.append(
                    HwOp(o["name"], o["kind"], o["layer"], o["onnx_nodes"], o["inputs"],
                         o["outputs"], info, [_parse_write(w) for w in o["registers"]])
                )  # fmt: skip
        segments.append(seg)
    tensors = {
        name: TensorInfo(
            tuple(t["shape"]),
            t["precision"],
            t.get("scale"),
            None if t.get("surface") is None else Surface.from_json(t["surface"]),
        )
        for name, t in doc["tensors"].items()
    }
    mem = doc["memory"]
    return Compiled(
        doc["model"], target, doc["inputs"], doc["outputs"], tensors, segments, constants,
        mem["constants"]["base"], mem["activations"]["base"], mem["activations"]["size"],
        doc["stats"], doc.get("preprocess"),
    )  # fmt: skip
