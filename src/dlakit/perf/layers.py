"""Hardware layers from the node-level graph: what the cost functions read.

A :class:`HwLayer` is one unit of DLA (or GPU) work with the sizes the cost model needs. Today
they come from the ONNX graph through the fusion rules in ``data/ops.toml``; the compiler's
lowered form can fill the same fields later and reuse every cost function unchanged.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import onnx

from dlakit.graph import LoadedModel


@dataclass
class HwLayer:
    """One hardware layer; shapes are per image (N excluded), sizes in elements."""

    name: str
    kind: str  # conv, fc, sdp, pdp, cdp, copy, concat, view
    ops: list[str]
    nodes: list[str]
    engine: str = "dla"  # or "gpu"
    inputs: list[str] = field(default_factory=list)  # data tensors read (EW operand included)
    output: str = ""
    in_shape: tuple[int, ...] = ()  # C, H, W of the main input
    out_shape: tuple[int, ...] = ()
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    groups: int = 1
    weights: int = 0  # weight elements
    ew_elems: int = 0  # element-wise operand elements read besides the main input
    in_elems: int = 0
    out_elems: int = 0
    macs: int = 0
    image_input: bool = False  # first conv on the network input (pixel / channel-extension mode)

    @property
    def label(self) -> str:
        return "+".join(self.ops)


@cache
def op_table() -> dict[str, Any]:
    text = (resources.files("dlakit.perf") / "data" / "ops.toml").read_text()
    return tomllib.loads(text)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _per_image(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[1:]) if len(shape) >= 2 else tuple(shape)


def _count(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def build_layers(model: LoadedModel, engines: dict[str, str] | None = None) -> list[HwLayer]:
    """Fuse the graph's nodes into hardware layers (``engines``: node name -> "dla"/"gpu")."""
    table = op_table()
    fusable = set(table["fusion"]["into_conv"])
    elementwise = set(table["fusion"]["elementwise"])
    kinds: dict[str, str] = table["kinds"]
    engines = engines or {}
    nodes = model.nodes
    index = {n.name: i for i, n in enumerate(nodes)}
    consumers = model.consumers()
    producers = model.producers()
    inits = set(model.initializers)
    graph_inputs = set(model.input_names)
    graph_outputs = set(model.output_names)
    claimed: set[str] = set()
    layers: list[HwLayer] = []

    def data_inputs(node: onnx.NodeProto) -> list[str]:
        return [t for t in node.input if t and t not in inits]

    for node in nodes:
        if node.name in claimed:
            continue
        claimed.add(node.name)
        engine = engines.get(node.name, "dla")
        kind = kinds.get(node.op_type, "gpu")
        layer = _layer_for(model, node, kind, engine, data_inputs(node), graph_inputs)
        if kind in ("conv", "fc"):
            tail = node
            ew_used = 0
            while True:
                out = tail.output[0]
                users = consumers.get(out, [])
                if len(users) != 1 or out in graph_outputs:
                    break
                nxt = users[0]
                if nxt.op_type not in fusable or engines.get(nxt.name, "dla") != engine:
                    break
                others = [t for t in data_inputs(nxt) if t != out]
                if others:
                    if nxt.op_type not in elementwise or ew_used or len(others) != 1:
                        break
                    src = producers.get(others[0])
                    # The operand must exist before this layer runs (the later branch fuses it).
                    if src is not None and index[src.name] > index[node.name]:
                        break
                    if _count(model.shapes.get(others[0], ())) < _count(model.shapes[out]):
                        break  # broadcast operands are constants folded into BS/BN, not EW reads
                    ew_used += 1
                    layer.ew_elems += _count(_per_image(model.shapes[others[0]]))
                    layer.inputs.append(others[0])
                claimed.add(nxt.name)
                layer.ops.append(nxt.op_type)
                layer.nodes.append(nxt.name)
                tail = nxt
            layer.output = tail.output[0]
        layers.append(layer)
    return layers


def _layer_for(
    model: LoadedModel,
    node: onnx.NodeProto,
    kind: str,
    engine: str,
    inputs: list[str],
    graph_inputs: set[str],
) -> HwLayer:
    shapes = model.shapes
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
        layer.image_input = main in graph_inputs
    elif kind == "fc":
        weight = next((t for t in node.input[1:] if t in model.initializers), None)
        if weight is None:  # activation x activation MatMul: no DLA mapping, GPU work
            layer.kind = "gpu" if engine == "gpu" else "sdp"
            layer.inputs = list(inputs)
        else:
            layer.weights = _count(shapes[weight])
            layer.macs = layer.out_elems * (layer.weights // max(1, layer.out_shape[-1]))
    elif kind in ("sdp", "concat", "gpu"):
        layer.inputs = list(inputs)
        layer.ew_elems = sum(_count(_per_image(shapes.get(t, ()))) for t in inputs[1:])
    elif kind in ("pdp", "cdp"):
        attrs = _attrs(node)
        layer.kernel = tuple(attrs.get("kernel_shape", layer.in_shape[-2:] or (1, 1)))[:2]
        layer.stride = tuple(attrs.get("strides", (1, 1)))[:2]
    return layer


def _conv_geometry(model: LoadedModel, node: onnx.NodeProto, layer: HwLayer) -> None:
    attrs = _attrs(node)
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
