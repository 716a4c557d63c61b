"""Write segments as standalone ONNX files plus a plan, and run such a plan with onnxruntime.

Plan file (``plan.json``, schema ``dlakit.plan`` version 1)::

    {"schema": "dlakit.plan", "schema_version": 1, "model": str, "target": str,
     "inputs": [names], "outputs": [names],
     "segments": [{"id", "engine": "dla"|"gpu", "file", "inputs": [names], "outputs": [names],
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
from dlakit.graph import LoadedModel, save_model
from dlakit.partition.segments import Segment

PLAN_SCHEMA = "dlakit.plan"
PLAN_VERSION = 1


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


def emit(model: LoadedModel, segments: list[Segment], out_dir: Path, target: str) -> Path:
    """Write one ONNX file per segment and ``plan.json``; returns the plan path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for seg in segments:
        file = f"segment_{seg.id:02d}_{seg.engine}.onnx"
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
    plan = {
        "schema": PLAN_SCHEMA,
        "schema_version": PLAN_VERSION,
        "model": str(model.path),
        "target": target,
        "inputs": model.input_names,
        "outputs": model.output_names,
        "segments": entries,
    }
    path = out_dir / "plan.json"
    path.write_text(json.dumps(plan, indent=2) + "\n")
    return path


def run_plan(plan_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute a plan's segments in order with onnxruntime (the functional check of --emit)."""
    import onnxruntime as ort

    plan_path = Path(plan_path)
    plan = json.loads(plan_path.read_text())
    if plan.get("schema") != PLAN_SCHEMA:
        raise DlakitError(f"{plan_path} is not a dlakit plan (schema {plan.get('schema')!r})")
    tensors = dict(feeds)
    for seg in plan["segments"]:
        session = ort.InferenceSession(
            str(plan_path.parent / seg["file"]), providers=["CPUExecutionProvider"]
        )
        missing = [n for n in seg["inputs"] if n not in tensors]
        if missing:
            raise DlakitError(f"segment {seg['id']} needs {missing[0]}, which no earlier step made")
        results = session.run(seg["outputs"], {n: tensors[n] for n in seg["inputs"]})
        tensors.update(zip(seg["outputs"], results, strict=True))
    return {name: tensors[name] for name in plan["outputs"]}
