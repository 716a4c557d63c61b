"""A compiled model as NVDLA loadables: what ``dlakit compile --format loadable`` writes.

A model that is one DLA segment becomes one loadable file (the flatbuffer ``nvdla_runtime
--loadable`` takes). A model with fallback segments becomes a folder, as the ``.dla`` holds
them: one loadable per DLA segment and one ONNX model per fallback segment, named
``NN-<segment>.nvdla`` / ``NN-<segment>.onnx`` in execution order, and ``manifest.json``
(format ``dlakit-nvdla-loadables``) saying which tensor each bound buffer holds (bind id, the
channel it starts at when a buffer holds several) and each tensor's shape, precision and scale.

:func:`feed_bytes` and :func:`tensor_values` move INT8 tensors in and out of the bound buffers,
as a host program around ``nvdla_runtime`` would.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.files import atomic_write
from dlakit.loadable.inputs import feature_offsets
from dlakit.loadable.reader import DataType, MemoryFlags
from dlakit.loadable.serialize import FILE_IDENTIFIER, LOADABLE_VERSION
from dlakit.loadable.writer import FIRMWARE_VERSION, Binding, SegmentLoadable, segment_loadable
from dlakit.nvdla.compiler import Compiled

FORMAT = "dlakit-nvdla-loadables"
VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class WrittenLoadables:
    path: Path
    folder: bool  # a folder (fallback segments) or one loadable file
    loadables: list[SegmentLoadable]
    files: list[str]  # per segment, in execution order


def compile_loadables(comp: Compiled) -> list[SegmentLoadable]:
    """One loadable per DLA segment of ``comp``, in execution order."""
    if not any(seg.kind == "dla" for seg in comp.segments):
        raise DlakitError(f"{comp.model}: no layer runs on the DLA; there is no loadable to write")
    return [segment_loadable(comp, seg) for seg in comp.segments if seg.kind == "dla"]


def _binding(b: Binding) -> dict:
    return {"tensor": b.tensor, "bind_id": b.bind_id, "buffer": b.buffer,
            "channels_from": b.channels_from, "channels": b.channels}  # fmt: skip


def manifest(comp: Compiled, loadables: list[SegmentLoadable], files: list[str]) -> dict:
    by_segment = {sl.segment: sl for sl in loadables}
    segments = []
    named: set[str] = set(comp.inputs) | set(comp.outputs)
    for seg, file in zip(comp.segments, files, strict=True):
        doc: dict = {"kind": seg.kind, "name": seg.name, "file": file}
        if seg.kind == "dla":
            sl = by_segment[seg.name]
            doc["inputs"] = [_binding(b) for b in sl.inputs]
            doc["outputs"] = [_binding(b) for b in sl.outputs]
            doc["operations"] = sl.operations
        else:
            doc["inputs"], doc["outputs"] = list(seg.inputs), list(seg.outputs)
        named |= set(seg.inputs) | set(seg.outputs)
        segments.append(doc)
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": comp.model,
        "target": comp.target.name,
        "loadable_version": list(LOADABLE_VERSION),
        "file_identifier": FILE_IDENTIFIER.decode(),
        "firmware_interface": list(FIRMWARE_VERSION),
        "inputs": comp.inputs,
        "outputs": comp.outputs,
        "tensors": {
            name: {
                "shape": list(comp.tensors[name].shape),
                "precision": comp.tensors[name].precision,
                "scale": comp.tensors[name].scale,
            }
            for name in sorted(named)
            if name in comp.tensors
        },
        "segments": segments,
    }


def is_loadable_folder(path: Path) -> bool:
    """A folder this module wrote (its manifest names the format)."""
    try:
        doc = json.loads((path / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def write_loadables(comp: Compiled, path: str | Path) -> WrittenLoadables:
    """Write ``comp`` at ``path``: one loadable file, or a folder when it has fallback
    segments. An existing folder is replaced only when it is one this function wrote."""
    path = Path(path)
    loadables = compile_loadables(comp)
    if len(comp.segments) == 1:
        if path.is_dir():
            raise DlakitError(f"--output {path} is a folder; name a file for a one-loadable model")
        atomic_write(path, loadables[0].data)
        return WrittenLoadables(path, False, loadables, [path.name])
    if path.exists() and not (path.is_dir() and is_loadable_folder(path)):
        raise DlakitError(
            f"--output {path}: {comp.model} has fallback segments, so it is written as a folder "
            "of loadables and ONNX models, and that path exists and is not one; name another"
        )
    files = [
        f"{i:02d}-{seg.name}.{'nvdla' if seg.kind == 'dla' else 'onnx'}"
        for i, seg in enumerate(comp.segments)
    ]
    data = iter(sl.data for sl in loadables)
    parent = path.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp"))
    umask = os.umask(0)
    os.umask(umask)
    try:
        tmp.chmod(0o777 & ~umask)  # a folder as mkdir makes it, not mkdtemp's private one
        for seg, file in zip(comp.segments, files, strict=True):
            if seg.kind == "dla":
                (tmp / file).write_bytes(next(data))
            else:
                assert seg.model is not None
                (tmp / file).write_bytes(seg.model.SerializeToString())
        doc = manifest(comp, loadables, files)
        (tmp / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "previous")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DlakitError(f"cannot write {path}: {exc.strerror or exc}") from None
    return WrittenLoadables(path, True, loadables, files)


def feed_bytes(sl: SegmentLoadable, values: dict[str, np.ndarray]) -> dict[int, bytes]:
    """The input buffers (bind id -> bytes) of ``sl`` holding the INT8 (or FP16: the float16
    of each value) tensors ``values`` (name -> [1, C, H, W] or [C, H, W] values)."""
    ld = sl.loadable
    mems = {m.bind_id: m for m in ld.bound(MemoryFlags.INPUT)}
    buffers: dict[int, np.ndarray] = {}
    for b in sl.inputs:
        if b.tensor not in values:
            raise DlakitError(f"segment {sl.segment}: no value for its input '{b.tensor}'")
        tensor = ld.tensor_of(mems[b.bind_id])
        v = np.asarray(values[b.tensor]).reshape(-1, tensor.h, tensor.w)
        buf = buffers.setdefault(b.bind_id, np.zeros(tensor.size, dtype=np.uint8))
        offsets = feature_offsets(tensor, v.shape[0], b.channels_from)
        if DataType(tensor.data_type) == DataType.HALF:
            pairs = v.astype("<f2").view(np.uint8).reshape(*v.shape, 2)
            buf[offsets], buf[offsets + 1] = pairs[..., 0], pairs[..., 1]
        else:
            buf[offsets] = v.astype(np.int8).view(np.uint8)
    return {k: v.tobytes() for k, v in buffers.items()}


def tensor_values(sl: SegmentLoadable, outputs: dict[int, bytes]) -> dict[str, np.ndarray]:
    """Each INT8 (or FP16: float16) output tensor of ``sl`` ([C, H, W]) read from the output
    buffers."""
    ld = sl.loadable
    mems = {m.bind_id: m for m in ld.bound(MemoryFlags.OUTPUT)}
    found = {}
    for b in sl.outputs:
        tensor = ld.tensor_of(mems[b.bind_id])
        raw = np.frombuffer(outputs[b.bind_id], dtype=np.uint8)
        offsets = feature_offsets(tensor, b.channels, b.channels_from)
        if DataType(tensor.data_type) == DataType.HALF:
            pairs = np.stack([raw[offsets], raw[offsets + 1]], axis=-1)
            found[b.tensor] = np.ascontiguousarray(pairs).view("<f2")[..., 0]
        else:
            found[b.tensor] = raw[offsets].view(np.int8)
    return found
