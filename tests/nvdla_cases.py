"""Helpers for the compiler tests: build, calibrate, lower, compile, and compare the simulator's
bytes with the integer reference (the oracle, ``dlakit.lower.intref``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.errors import DlakitError
from dlakit.graph import load_model, save_model
from dlakit.lower.intref import IntReference
from dlakit.lower.lowering import quantize_model
from dlakit.lower.qgraph import QGraph
from dlakit.nvdla import compile_graph, nvdla_target
from dlakit.nvdla.compiler import Compiled
from dlakit.run.runner import Runner


def max_scales(loaded, x: np.ndarray) -> dict[str, float]:
    """Per-tensor max calibration with onnxruntime (every float tensor of the model)."""
    from dlakit.accuracy.compare import float_run

    names = [n for n in loaded.shapes if n not in loaded.initializers]
    values = float_run(loaded, x, extra=names)
    return {n: max(float(np.abs(v).max()), 1e-6) / 127.0 for n, v in values.items()}


def segment_outputs(comp: Compiled) -> list[str]:
    return [t for s in comp.segments if s.kind == "dla" for t in s.outputs]


def check_bitexact(
    graph: QGraph, comp: Compiled, x: np.ndarray, engine: str = "torch", isolate: bool = False
) -> int:
    """Assert the simulator's outputs equal the integer reference's byte for byte; returns the
    number of DLA segment outputs compared. With ``isolate`` the fallback segments' outputs are the
    reference's own, so only the DLA segments are under test (host floats may differ in the
    last bit between backends); the model outputs are then not compared."""
    name = graph.inputs[0]
    keep = set(segment_outputs(comp))
    runner = Runner(comp, "cpu", engine)
    host = runner.fallback_outputs() if isolate else set()
    ref = IntReference(graph).run({name: x}, keep=keep | host)
    given = {k: ref[k] for k in host} if isolate else None
    out, stats = runner.run({name: x}, keep=keep, fallback_values=given)
    for k in graph.outputs if not isolate else []:
        assert np.array_equal(out[k], ref[k]), f"model output {k} differs"
    for k in keep:
        scale = np.float32(graph.tensors[k].scale)
        mine = stats.kept[k].astype(np.float32) * scale
        diff = np.abs(mine.reshape(ref[k].shape) - ref[k]) / scale
        assert diff.max() == 0, f"DLA segment output {k}: {int((diff > 0).sum())} values differ"
    return len(keep)


def compile_case(path: Path, x: np.ndarray, target: str = "nv_small"):
    loaded = load_model(path)
    graph = quantize_model(loaded, max_scales(loaded, x), target)
    return loaded, graph, compile_graph(graph, nvdla_target(target))


def zoo_case(name: str, data: str, n: int, target: str):
    """A zoo model, ``n`` real inputs of ``data`` and its max scales; skip when not fetchable."""
    from dlakit.data import load_inputs
    from dlakit.zoo import get_entry, resolve_model

    try:
        path = resolve_model(name)
        loaded = load_model(path)
        x = load_inputs(
            data, get_entry(name).preprocess, loaded.input_shapes[loaded.input_names[0]], n
        )
    except DlakitError as exc:
        pytest.skip(f"{name} or {data} unavailable: {exc}")
    graph = quantize_model(loaded, max_scales(loaded, x), target)
    return loaded, graph, compile_graph(graph, nvdla_target(target)), x


def conv_model(path: Path, nodes, inits: dict[str, np.ndarray], in_shape, out_name: str, out_shape):
    graph = helper.make_graph(
        nodes,
        "case",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, path)
