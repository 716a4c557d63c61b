"""``--emit DIR``: the chosen plan as deployable pieces.

Written into DIR:

* one ONNX file per piece: a run of the model's nodes between two cuts, pinned to the batch its
  steps run it at (DLA engines need static shapes), cut by ``partition.emit.segment_model``;
* ``plan.json``: the ``dlakit.plan`` v1 document plus ``emit``: the pieces, and the ``steps`` in
  an order that respects their data (each step runs one piece on one device for images
  ``[first, last)`` of one model, reading and writing those rows of the model's tensors: a batch
  split and its gather are steps over disjoint rows);
* ``trtexec.sh``: one ``trtexec`` line per piece and device (``--useDLACore``, precision,
  ``--allowGPUFallback`` where TensorRT must run non-DLA layers of a DLA piece on the GPU, and
  reformat-free I/O formats between DLA and GPU pieces);
* ``run_plan.py``: a small runner for a Jetson user to adapt: it runs the steps one after the
  other with onnxruntime and says what it assumes. :func:`run_emitted` runs that very file.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel, save_model
from dlakit.graph.load import collect_shapes
from dlakit.partition.emit import segment_model
from dlakit.partition.segments import Segment
from dlakit.plan.api import PlanResult
from dlakit.plan.costs import ModelCosts
from dlakit.plan.plans import Candidate
from dlakit.plan.result import result_json

_RUNNER = Path(__file__).with_name("run_plan.py")  # written as is beside the pieces


def piece_io(model: LoadedModel, start: int, end: int) -> tuple[list[str], list[str]]:
    """Inputs and outputs of nodes ``[start, end)``: what crosses into and out of them."""
    nodes = model.nodes
    inits = set(model.initializers)
    made = {t for n in nodes[start:end] for t in n.output if t}
    inputs: list[str] = []
    for n in nodes[start:end]:
        for t in n.input:
            if t and t not in inits and t not in made and t not in inputs:
                inputs.append(t)
    later = {t for n in nodes[:start] + nodes[end:] for t in n.input if t}
    graph_out = set(model.output_names)
    outputs = [
        t for n in nodes[start:end] for t in n.output if t and (t in later or t in graph_out)
    ]
    return inputs, outputs


def rebatch(model: LoadedModel, batch: int) -> LoadedModel:
    """``model`` (canonical form) with its batch dimension set to ``batch``, shapes inferred
    again; the nodes stay as they are, so the cuts stay valid.

    A Reshape whose constant target starts with the old batch keeps the batch instead (0:
    copy the input's dimension), the form an exporter's ``view(N, -1)`` folds to.
    """
    old = costs_batch(model)
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and value.name in model.input_names:
            dims[0].Clear()
            dims[0].dim_value = batch
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in inits:
            target = onnx.numpy_helper.to_array(inits[node.input[1]]).copy()
            if target.size and target[0] == old:
                target[0] = 0
                inits[node.input[1]].CopyFrom(onnx.numpy_helper.from_array(target, node.input[1]))
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except Exception as exc:
        raise DlakitError(f"{model.path}: shapes do not follow the batch {batch}: {exc}") from None
    shapes, dtypes = collect_shapes(proto)
    inputs = {n: (batch, *s[1:]) for n, s in model.input_shapes.items()}
    return LoadedModel(model.path, proto, inputs, shapes, dtypes)


def costs_batch(model: LoadedModel) -> int:
    shapes = [s for s in model.input_shapes.values() if s]
    return int(shapes[0][0]) if shapes else 1


def _at_batch(costs: ModelCosts, batch: int, cache: dict) -> LoadedModel:
    key = (costs.name, batch)
    if key not in cache:
        base = costs.model
        cache[key] = base if batch == costs.batch_of_file else rebatch(base, batch)
    return cache[key]


def emit_plan(
    result: PlanResult, costs: list[ModelCosts], out_dir: Path, candidate: Candidate | None = None
) -> Path:
    """Write the pieces of ``candidate`` (default: the chosen plan); returns plan.json's path."""
    chosen = candidate or result.chosen
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    pieces: dict[tuple, dict[str, Any]] = {}
    steps = []
    for step in chosen.plan.steps:
        c = costs[step.model]
        start, end = c.node_range(step.lo, step.hi)
        key = (step.model, start, end, step.images)
        if key not in pieces:
            model = _at_batch(c, step.images, cache)
            inputs, outputs = piece_io(model, start, end)
            file = f"m{step.model}_n{start}-{end - 1}_b{step.images}.onnx"
            seg = Segment(0, "dla", list(range(start, end)), inputs, outputs)
            save_model(segment_model(model, seg), out / file)
            pieces[key] = {
                "file": file,
                "model": step.model,
                "nodes": [start, end],
                "first_node": model.nodes[start].name,
                "last_node": model.nodes[end - 1].name,
                "batch": step.images,
                "inputs": inputs,
                "outputs": outputs,
                "devices": [],
                "fallback": False,
            }
        piece = pieces[key]
        if step.device not in piece["devices"]:
            piece["devices"].append(step.device)
        piece["fallback"] = piece["fallback"] or step.fallback
        steps.append(
            {"piece": piece["file"], "device": step.device, "model": step.model,
             "images": [step.first, step.last]}
        )  # fmt: skip
    doc = result_json(result)
    doc["emitted"] = doc["chosen"]["strategy"] if candidate is None else chosen.strategy
    doc["emit"] = {
        "models": [
            {
                "name": c.name,
                "file": str(c.model.path),
                "inputs": c.model.input_names,
                "outputs": c.model.output_names,
                "batch": result.batch,
            }
            for c in costs
        ],
        "pieces": list(pieces.values()),
        "steps": steps,
    }
    lines = _trtexec(list(pieces.values()), costs, result.precision)
    (out / "trtexec.sh").write_text("\n".join(lines) + "\n")
    (out / "run_plan.py").write_text(_RUNNER.read_text())
    path = out / "plan.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def _trtexec(pieces: list[dict[str, Any]], costs: list[ModelCosts], precision: str) -> list[str]:
    native = "int8:chw32" if precision == "int8" else "fp16:chw16"
    lines = [
        "#!/bin/sh",
        "# One TensorRT engine per piece and device, as the plan places them (plan --emit).",
        "# INT8 needs scales: CALIB is a TensorRT calibration cache (calibrate --trt-cache).",
        "# DLA pieces take and give the DLA's own formats; a GPU piece fed by a DLA piece",
        "# takes the same, so no reformat runs between them (the plan charges one: a bound).",
        'CALIB="${CALIB:-calibration.cache}"',
        "set -e",
    ]
    fed_by_dla = {
        t for p in pieces if any(d.startswith("dla") for d in p["devices"]) for t in p["outputs"]
    }
    for p in pieces:
        model_inputs = set(costs[p["model"]].model.input_names)
        for dev in p["devices"]:
            engine = p["file"].removesuffix(".onnx") + f".{dev}.engine"
            args = [f"trtexec --onnx={p['file']} --saveEngine={engine} --{precision}"]
            if precision == "int8":
                args.append('--calib="$CALIB"')
            if dev.startswith("dla"):
                args.append(f"--useDLACore={dev.removeprefix('dla')}")
                if p["fallback"]:
                    args.append("--allowGPUFallback")
                image = all(t in model_inputs for t in p["inputs"])
                fmt = "int8:dla_hwc4" if image and precision == "int8" else native
                args.append(f"--inputIOFormats={','.join([fmt] * len(p['inputs']))}")
                args.append(f"--outputIOFormats={','.join([native] * len(p['outputs']))}")
            elif any(t in fed_by_dla for t in p["inputs"]):
                formats = [native if t in fed_by_dla else "fp32:chw" for t in p["inputs"]]
                args.append(f"--inputIOFormats={','.join(formats)}")
            lines.append(" ".join(args))
    return lines


def run_emitted(plan_path: Path, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Run an emitted plan with its own ``run_plan.py`` (onnxruntime): each model's outputs."""
    plan_path = Path(plan_path)
    script = plan_path.parent / "run_plan.py"
    spec = importlib.util.spec_from_file_location("dlakit_emitted_runner", script)
    if spec is None or spec.loader is None:
        raise DlakitError(f"{script}: not a runner script")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run(plan_path, feeds)
