"""Hardware layers for the cost model, read from the lowered graph: the compiler's layers.

The lowering (:func:`dlakit.lower.lowering.quantize_model`) decides the fusion: a convolution
with its BatchNorm, ReLU/Clip, lookup-table activation (SiLU, Sigmoid, ...) and residual Add
(``QConv``), standalone SDP passes (lookup tables, two-tensor Add/Mul/Max/Min), pooling, LRN,
concatenations, channel views, phase convolutions and RUBIK contracts (a nearest Resize or a
ConvTranspose), reshapes, and the nodes that run in floating point. The compiler's own
decisions on top of it are applied with the compiler's functions (:mod:`dlakit.nvdla.compiler`):
which layers it runs on the DLA, which poolings run on the fly behind their convolution (one
operation), and that concatenations by placement, no-op reshapes and channel views on a surface
cost no operation while other views are copies (:func:`dlakit.nvdla.compiler.place_tensors`).
CBUF tiling (one layer, several operations) is the cost model's business (it models the
refetch), so one :class:`HwLayer` is one hardware layer, not one operation.

The performance model needs no calibration: it lowers with one placeholder scale for every
tensor (:class:`PlaceholderScales`) and zero weights of the real shapes, which fix the
structure and nothing else. Nodes the lowering runs in floating point are sized from the ONNX
graph, their hardware kind from ``data/ops.toml``.

Which nodes run on the DLA comes from the support verdicts, which the lowering follows. On
open-NVDLA targets the compiler's engine decision is final (it also sends FP16 layers, unaligned
concatenations and layout-changing reshapes to the fallback). Jetson DLAs are compiled by
TensorRT, not by dlakit: there the verdicts place every layer, the lowering's nv_full
arithmetic gives the structure, and nv_full's CBUF decides the pooling on the fly.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import onnx

from dlakit.graph import LoadedModel
from dlakit.graph.nodes import attrs as node_attrs
from dlakit.lower.lowering import quantize_model
from dlakit.lower.qgraph import (
    QConcat,
    QContract,
    QConv,
    QDequantize,
    QFloat,
    QGraph,
    QLayer,
    QLrn,
    QPool,
    QQuantize,
    QReshape,
    QSdp,
    QView,
)
from dlakit.nvdla.compiler import layer_engines, place_tensors, pools_on_the_fly
from dlakit.partition import check_model
from dlakit.support.verdict import Engine
from dlakit.targets import Target, load_target

# Jetson DLAs are lowered with nv_full's arithmetic and structured with its CBUF; a target
# without a DLA (host) is structured as nv_full too, every layer on the fallback device.
STRUCTURE_TARGET = "nv_full"
_CONVERSIONS = (QQuantize, QDequantize)
_FC_OPS = ("Gemm", "MatMul")
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


class PlaceholderScales:
    """One scale for every tensor: the lowering's structure without a calibration.

    No fusion or engine decision depends on a scale's value. The one structural choice that
    does is a requantizing SDP pass before a Concat input whose scale differs from the output's:
    the lowering makes each input at its concatenation's scale, so only a tensor that two
    concatenations want at different calibrated scales needs one; with one scale none does.
    """

    def activation_scale(self, name: str) -> float:
        return 1.0


@dataclass
class HwLayer:
    """One hardware layer; shapes are per image (N excluded), sizes in elements."""

    name: str
    kind: str  # conv, fc, sdp, pdp, cdp, rubik, copy, concat, view, gpu
    ops: list[str]
    nodes: list[str]
    engine: Engine = "dla"
    inputs: list[str] = field(default_factory=list)  # data tensors read (EW operand included)
    output: str = ""
    in_shape: tuple[int, ...] = ()  # C, H, W of the main input
    out_shape: tuple[int, ...] = ()  # of the convolution, before a pooling on the fly
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    groups: int = 1
    weights: int = 0  # weight elements
    ew_elems: int = 0  # element-wise operand elements read besides the main input
    in_elems: int = 0
    out_elems: int = 0
    macs: int = 0
    image_input: bool = False  # first conv on the network input (pixel / channel-extension mode)
    pooled_elems: int | None = None  # output of a pooling run on the fly (what is written)

    @property
    def label(self) -> str:
        return "+".join(self.ops)

    @property
    def written_elems(self) -> int:
        """Elements written to memory: the pooled result when PDP runs on the fly."""
        return self.out_elems if self.pooled_elems is None else self.pooled_elems


@cache
def op_table() -> dict[str, Any]:
    text = (resources.files("dlakit.perf") / "data" / "ops.toml").read_text()
    return tomllib.loads(text)


def lower_structure(model: LoadedModel, target: Target, *, own_rules: bool = True) -> QGraph:
    """``model`` lowered for ``target`` with placeholder scales and weights (structure only).

    Without ``own_rules`` (a target with no DLA, or a network run wholly on the DLA) the
    structure is nv_full's; the engines are then placed by the caller, not by the verdicts.
    """
    view = _zero_weights(model)
    name = target.name if own_rules and target.dla_cores else STRUCTURE_TARGET
    return quantize_model(view, PlaceholderScales(), name, structure_only=True)


def _zero_weights(model: LoadedModel) -> LoadedModel:
    """``model`` whose convolution and matrix weights read as zeros of their shapes.

    No fusion or engine decision depends on a weight's value (the comparison with the compiler
    on real weights tests it). One broadcast zero takes no memory and no float conversion.
    """
    weights = {
        node.input[1]
        for node in model.nodes
        if node.op_type in _WEIGHTED and len(node.input) > 1 and node.input[1] in model.initializers
    }
    other_uses = {
        name
        for node in model.nodes
        for i, name in enumerate(node.input)
        if name in weights and (node.op_type not in _WEIGHTED or i != 1)
    }
    view = replace(model)
    view.initializers = {
        name: np.broadcast_to(np.float64(0.0), value.shape)
        if name in weights - other_uses
        else value
        for name, value in model.initializers.items()
    }
    return view


def build_layers(
    model: LoadedModel, target: Target | str, *, whole_model_on_dla: bool = False
) -> list[HwLayer]:
    """The hardware layers of ``model`` on ``target``, in execution order.

    ``whole_model_on_dla`` (Jetson targets) puts every node on the DLA instead of following the
    support verdicts: the calibration networks, which NVIDIA ran wholly on the DLA.
    """
    tgt = load_target(target) if isinstance(target, str) else target
    graph = lower_structure(model, tgt, own_rules=not whole_model_on_dla)
    return graph_layers(model, graph, tgt, whole_model_on_dla=whole_model_on_dla)


def graph_layers(
    model: LoadedModel, graph: QGraph, target: Target, *, whole_model_on_dla: bool = False
) -> list[HwLayer]:
    """Hardware layers of a lowered ``graph`` as the compiler for ``target`` would run it."""
    engines = _engines(model, graph, target, whole_model_on_dla)
    structure = target if target.nvdla else load_target(STRUCTURE_TARGET)
    on_the_fly = pools_on_the_fly(graph, structure, engines)
    merged = {pool.name: conv for conv, pool in on_the_fly.items()}
    copies = place_tensors(graph, engines, structure.nvdla.memory_atomic).copies
    alias = _vanished_conversions(graph, engines, target)
    nodes = {n.name: n for n in model.nodes}
    ops_of = {name: n.op_type for name, n in nodes.items()}
    images = _image_tensors(graph)
    layers: list[HwLayer] = []
    by_name: dict[str, HwLayer] = {}
    for layer, engine in zip(graph.layers, engines, strict=True):
        if layer.outputs and layer.outputs[0] in alias:
            continue
        if layer.name in merged:
            _absorb_pool(by_name[merged[layer.name]], layer, graph, ops_of)
            continue
        if isinstance(layer, QFloat):
            hw = _node_layer(model, nodes[layer.onnx_nodes[0]], engine)
        else:
            hw = _hw_layer(graph, layer, engine, ops_of, images)
            if isinstance(layer, QView):
                _view_layer(hw, layer, graph, engine, copies, structure.nvdla.memory_atomic)
        hw.inputs = [alias.get(t, t) for t in hw.inputs]
        layers.append(hw)
        by_name[hw.name] = hw
    return layers


def _engines(
    model: LoadedModel, graph: QGraph, target: Target, whole_model_on_dla: bool
) -> list[Engine]:
    if target.nvdla is not None:
        return layer_engines(graph, target.nvdla)
    if target.dla_cores == 0:
        return ["fallback"] * len(graph.layers)
    if whole_model_on_dla:
        verdicts = {n.name: "dla" for n in model.nodes}
    else:
        verdicts = {v.name: v.engine for v in check_model(model, target).nodes}
    engines: list[Engine] = []
    for layer in graph.layers:
        if layer.onnx_nodes:
            on_dla = all(verdicts.get(n) == "dla" for n in layer.onnx_nodes)
            engines.append("dla" if on_dla else "fallback")
        else:  # conversions (placed by _vanished_conversions) and requantizing SDP passes
            engines.append("fallback" if isinstance(layer, _CONVERSIONS) else layer.engine)
    return engines


def _vanished_conversions(graph: QGraph, engines: list[Engine], target: Target) -> dict[str, str]:
    """Output -> input of each INT8/float conversion that is no operation on ``target``.

    Open NVDLA runs every conversion on the fallback device (the compiler's segments), so none
    vanishes. Where TensorRT compiles (Jetson) or nothing is on a DLA (host), a conversion costs
    something only between a DLA and a fallback layer (the reformat at a split); model inputs
    and outputs are taken in the DLA's own format, as in NVIDIA's measurements.
    """
    if target.nvdla is not None:
        return {}
    producer = graph.writers()
    readers = graph.readers()
    alias: dict[str, str] = {}
    for layer in graph.layers:
        if not isinstance(layer, _CONVERSIONS):
            continue
        src = layer.inputs[0]
        made_by = producer.get(src)
        users = [engines[j] for j in readers.get(layer.outputs[0], [])]
        if made_by is None or not users or all(e == engines[made_by] for e in users):
            alias[layer.outputs[0]] = alias.get(src, src)
    return alias


def _image_tensors(graph: QGraph) -> set[str]:
    """The model inputs and their INT8 conversions (a first conv reads pixels)."""
    names = set(graph.inputs)
    for layer in graph.layers:
        if isinstance(layer, QQuantize) and layer.inputs[0] in graph.inputs:
            names.add(layer.outputs[0])
    return names


def _per_image(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[1:]) if len(shape) >= 2 else tuple(shape)


def _count(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def _hw_layer(
    graph: QGraph, layer: QLayer, engine: Engine, ops_of: dict[str, str], images: set[str]
) -> HwLayer:
    """One INT8 layer of the lowered graph, sized from its tensors."""

    def shape(name: str) -> tuple[int, ...]:
        return _per_image(tuple(graph.tensors[name].shape))

    ops = [ops_of[n] for n in layer.onnx_nodes if n in ops_of] or [_UNNAMED[type(layer)]]
    main = layer.inputs[0]
    out = layer.outputs[0]
    hw = HwLayer(
        name=layer.name,
        kind=_KINDS[type(layer)],
        ops=ops,
        nodes=list(layer.onnx_nodes),
        engine=engine,
        inputs=[main],
        output=out,
        in_shape=shape(main),
        out_shape=shape(out),
    )
    hw.in_elems = _count(hw.in_shape)
    hw.out_elems = _count(hw.out_shape)
    if isinstance(layer, QConv):
        k, cg, r, s = layer.weight.shape
        hw.kind = "fc" if ops[0] in _FC_OPS else "conv"
        hw.weights = int(k * cg * r * s)
        hw.kernel = (int(r), int(s))
        hw.stride = layer.stride
        hw.groups = layer.groups
        hw.macs = hw.out_elems * cg * r * s
        hw.image_input = main in images
    if isinstance(layer, QConv | QSdp) and layer.sdp.y is not None:
        hw.inputs.append(layer.inputs[1])
        hw.ew_elems = _count(shape(layer.inputs[1]))
    elif isinstance(layer, QPool):
        hw.kernel, hw.stride = layer.kernel, layer.stride
    elif isinstance(layer, QConcat):
        hw.inputs = list(layer.inputs)
        hw.ew_elems = sum(_count(shape(t)) for t in layer.inputs[1:])
    return hw


def _view_layer(
    hw: HwLayer, view: QView, graph: QGraph, engine: Engine, copies: set[str], atom: int
) -> None:
    """A channel view: no operation where the compiler places it as a surface of its parent;
    else the compiler's copy, a 1x1 convolution with 0/1 kernels over the surfaces holding the
    range (so it reads whole surfaces and costs MACs); a copy on the fallback device."""
    if engine != "dla":
        hw.kind = "copy"
        return
    if view.name not in copies:
        hw.kind = "view"
        return
    parent_c = graph.tensors[view.inputs[0]].shape[1]
    first = view.start // atom * atom
    read = min(-(-(view.start + view.channels) // atom) * atom, parent_c) - first
    hw.kind = "conv"
    hw.in_shape = (read, *hw.in_shape[1:])
    hw.in_elems = _count(hw.in_shape)
    hw.weights = view.channels * read
    hw.macs = hw.out_elems * read


def _absorb_pool(conv: HwLayer, pool: QLayer, graph: QGraph, ops_of: dict[str, str]) -> None:
    """A pooling run on the fly: part of its convolution's operation, writing the pooled result."""
    conv.ops += [ops_of[n] for n in pool.onnx_nodes if n in ops_of]
    conv.nodes += list(pool.onnx_nodes)
    conv.output = pool.outputs[0]
    conv.pooled_elems = _count(_per_image(tuple(graph.tensors[conv.output].shape)))


_KINDS: dict[type, str] = {
    QConv: "conv",
    QSdp: "sdp",
    QPool: "pdp",
    QLrn: "cdp",
    QConcat: "concat",
    QView: "view",
    QContract: "rubik",  # a deconvolution's de-interleave: data movement on RUBIK
    QReshape: "view",
    QQuantize: "copy",
    QDequantize: "copy",
}
# Labels of layers the lowering adds without an ONNX node of their own.
_UNNAMED: dict[type, str] = {
    QSdp: "Requantize",
    QQuantize: "Quantize",
    QDequantize: "Dequantize",
    QReshape: "Reshape",
}


def _node_layer(model: LoadedModel, node: onnx.NodeProto, engine: Engine) -> HwLayer:
    """One ONNX node run in floating point (a fallback, or FP16 on a Jetson DLA), sized from the
    model's shapes; its hardware kind comes from ``data/ops.toml``."""
    kind = op_table()["kinds"].get(node.op_type, "gpu")
    shapes = model.shapes
    inputs = [t for t in node.input if t and t not in model.initializers]
    layer = HwLayer(
        name=node.name,
        kind=kind,
        ops=[node.op_type],
        nodes=[node.name],
        engine=engine,
        inputs=list(inputs[:1]),
        output=node.output[0] if node.output else "",
    )
    main = inputs[0] if inputs else ""
    layer.in_shape = _per_image(shapes.get(main, ()))
    layer.out_shape = _per_image(shapes.get(layer.output, ()))
    layer.in_elems = _count(layer.in_shape) if main else 0
    layer.out_elems = _count(layer.out_shape)
    if kind == "conv":
        _conv_geometry(model, node, layer)
        layer.image_input = main in model.input_names
    elif kind == "fc":
        weight = next((t for t in node.input[1:] if t in model.initializers), None)
        if weight is None:  # activation x activation MatMul: no convolution mapping
            layer.kind = "sdp"
            layer.inputs = list(inputs)
        else:
            layer.weights = _count(shapes[weight])
            layer.macs = layer.out_elems * (layer.weights // max(1, layer.out_shape[-1]))
    elif kind in ("sdp", "concat", "gpu"):
        layer.inputs = list(inputs)
        layer.ew_elems = sum(_count(_per_image(shapes.get(t, ()))) for t in inputs[1:])
    elif kind in ("pdp", "cdp"):
        attrs = node_attrs(node)
        layer.kernel = tuple(attrs.get("kernel_shape", layer.in_shape[-2:] or (1, 1)))[:2]
        layer.stride = tuple(attrs.get("strides", (1, 1)))[:2]
    return layer


def _conv_geometry(model: LoadedModel, node: onnx.NodeProto, layer: HwLayer) -> None:
    attrs = node_attrs(node)
    weight_shape = model.shapes.get(node.input[1], ())
    layer.weights = _count(weight_shape)
    kernel = tuple(weight_shape[2:4]) if len(weight_shape) >= 4 else (1, 1)
    layer.kernel = (int(kernel[0]), int(kernel[-1]))
    layer.stride = tuple(attrs.get("strides", (1, 1)))[:2]
    layer.groups = int(attrs.get("group", 1))
    if node.op_type == "ConvTranspose":
        # Every input pixel meets every kernel tap once.
        layer.macs = layer.in_elems * (layer.weights // max(1, layer.in_shape[0]))
    else:
        per_out = layer.weights // max(1, layer.out_shape[0]) if layer.out_shape else 0
        layer.macs = layer.out_elems * per_out
