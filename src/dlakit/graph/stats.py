"""Per-node arithmetic counts (multiply-accumulates), from static shapes."""

from __future__ import annotations

import math

import onnx

from dlakit.graph.load import LoadedModel


def node_macs(node: onnx.NodeProto, model: LoadedModel) -> int:
    """Multiply-accumulates of one node; 0 for ops without a reduction (elementwise, pools)."""
    shapes = model.shapes
    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    if node.op_type == "Conv" and len(node.input) > 1:
        weight = shapes.get(node.input[1])
        if weight is None:
            return 0
        # Each output element reduces over C/group x kernel taps.
        return math.prod(out) * math.prod(weight[1:])
    if node.op_type == "ConvTranspose" and len(node.input) > 1:
        src, weight = shapes.get(node.input[0]), shapes.get(node.input[1])
        if src is None or weight is None:
            return 0
        # Each input element scatters into C_out/group x kernel taps.
        return math.prod(src) * math.prod(weight[1:])
    if node.op_type in ("Gemm", "MatMul") and len(node.input) > 1:
        a = shapes.get(node.input[0])
        if a is None:
            return 0
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        reduce_dim = a[-2] if node.op_type == "Gemm" and attrs.get("transA") else a[-1]
        return math.prod(out) * reduce_dim
    return 0


def model_macs(model: LoadedModel) -> int:
    return sum(node_macs(n, model) for n in model.nodes)
