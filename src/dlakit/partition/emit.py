"""Write segments as standalone ONNX files plus a manifest, and run them with onnxruntime.

Manifest (``segments.json``, schema ``dlakit.segments`` version 1)::

    {"schema": "dlakit.segments", "schema_version": 1, "model": str, "target": str,
     "inputs": [names], "outputs": [names],
     "segments": [{"id", "engine": "dla"|"fallback", "file", "inputs": [names], "outputs": [names],
                   "nodes": [names], "macs"}]}

Segments are listed in an order that respects their dependencies; running them in that order,
feeding each the tensors its ``inputs`` name, reproduces the model's outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from dlakit.errors import DlakitError
from dlakit.files import atomic_write
from dlakit.graph import LoadedModel, save_model
from dlakit.partition.segments import Segment

SEGMENTS_SCHEMA = "dlakit.segments"
SEGMENTS_VERSION = 1


def _value_info(model: LoadedModel, name: str) -> onnx.ValueInfoProto:
    dtype = model.dtypes.get(name, onnx.TensorProto.FLOAT)
    shape = model.shapes.get(name)
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def segment_model(model: LoadedModel, segment: Segment) -> onnx.ModelProto:
    nodes = [model.nodes[i] for i in segment.nodes]
    used = {name for node in nodes for name in node.input if name}
    inits = [t for t in model.proto.graph.initializer if t.name in used]
    graph = helper.make_graph(
        nodes,
        f"segment_{segment.id}_{segment.engine}",
        [_value_info(model, n) for n in segment.inputs],
        [_value_info(model, n) for n in segment.outputs],
        initializer=inits,
    )
    out = helper.make_model(graph, opset_imports=list(model.proto.opset_import))
    out.ir_version = model.proto.ir_version
    return out


def segment_files(segments: list[Segment]) -> list[str]:
    """The names :func:`emit` writes into its folder."""
    return [_segment_file(seg) for seg in segments] + ["segments.json"]


def _segment_file(seg: Segment) -> str:
    return f"segment_{seg.id:02d}_{seg.engine}.onnx"


def emit(model: LoadedModel, segments: list[Segment], out_dir: Path, target: str) -> Path:
    """Write one ONNX file per segment and ``segments.json``; returns the manifest path."""
    out_dir = Path(out_dir)
    entries = []
    for seg in segments:
        file = _segment_file(seg)
        save_model(segment_model(model, seg), out_dir / file)
        entries.append(
            {
                "id": seg.id,
                "engine": seg.engine,
                "file": file,
                "inputs": seg.inputs,
                "outputs": seg.outputs,
                "nodes": [model.nodes[i].name for i in seg.nodes],
                "macs": seg.macs,
            }
        )
    manifest = {
        "schema": SEGMENTS_SCHEMA,
        "schema_version": SEGMENTS_VERSION,
        "model": str(model.path),
        "target": target,
        "inputs": model.input_names,
        "outputs": model.output_names,
        "segments": entries,
    }
    return atomic_write(out_dir / "segments.json", json.dumps(manifest, indent=2) + "\n")


def run_segments(manifest_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute emitted segments in order with onnxruntime (the functional check of --emit)."""
    import onnxruntime as ort

    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("schema") != SEGMENTS_SCHEMA:
        raise DlakitError(
            f"{manifest_path} is not a dlakit segments manifest (schema {manifest.get('schema')!r})"
        )
    tensors = dict(feeds)
    for seg in manifest["segments"]:
        session = ort.InferenceSession(
            str(manifest_path.parent / seg["file"]), providers=["CPUExecutionProvider"]
        )
        missing = [n for n in seg["inputs"] if n not in tensors]
        if missing:
            raise DlakitError(f"segment {seg['id']} needs {missing[0]}, which no earlier step made")
        results = session.run(seg["outputs"], {n: tensors[n] for n in seg["inputs"]})
        tensors.update(zip(seg["outputs"], results, strict=True))
    return {name: tensors[name] for name in manifest["outputs"]}
