"""Invariants of a lowered graph, checked between lowering and compiling.

A QGraph that breaks one of these is a bug in dlakit (a rule missing from the rule data, a
lowering that forgot a tensor), not bad input: :func:`lint` raises :class:`LintError` naming the
layer and the invariant, so the failure surfaces where it is made instead of as wrong bytes in
the simulator. Checked:

* every layer input is a graph input or the output of an earlier layer; every tensor a layer
  names is declared, and no tensor is written twice;
* INT8 tensors carry a positive, finite scale;
* every layer's engine agrees with the support verdicts of the ONNX nodes it came from (a DLA
  layer comes from DLA nodes, a fallback layer from fallback nodes or from DLA nodes the
  reference computes in FP32), so no node changes engine without its verdict's reason;
* register values fit the fields they are written to, with the widths taken from the register
  map of the target's hardware tree (``hw/data``); an FP16 layer's weights and operands are
  finite FP16 numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from dlakit.hw import RegisterMap, load_register_map
from dlakit.lower.qgraph import (
    EwUnit,
    OutCvt,
    QConv,
    QGraph,
    QLayer,
    QLrn,
    QPool,
    QQuantize,
    QSdp,
    XUnit,
)
from dlakit.targets import load_target


class LintError(RuntimeError):
    """A lowered graph broke an invariant (a bug in dlakit, reported by layer and rule)."""


def lint(graph: QGraph) -> None:
    """Raise :class:`LintError` on the first broken invariant of ``graph``."""
    problems = list(_problems(graph))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise LintError(f"lowered graph of {graph.model_name}: {problems[0]}{more}")


def _problems(graph: QGraph) -> Iterator[str]:
    yield from _dataflow(graph)
    yield from _scales(graph)
    yield from _engines(graph)
    target = load_target(graph.target)
    if target.nvdla is not None:
        regmap = load_register_map(target.nvdla.hw_tree)
        for layer in graph.layers:
            yield from _fields(layer, regmap)


def _dataflow(graph: QGraph) -> Iterator[str]:
    made = set(graph.inputs)
    for layer in graph.layers:
        constants = set(getattr(layer, "initializers", {}))  # a float layer's own weights
        for name in layer.inputs:
            if name in constants:
                continue
            if name not in graph.tensors and name not in made:
                yield f"layer {layer.name}: input '{name}' is not a declared tensor"
            elif name not in made:
                yield f"layer {layer.name}: input '{name}' is not produced by an earlier layer"
        for name in layer.outputs:
            if name in made:
                yield f"layer {layer.name}: tensor '{name}' is written twice"
            if name not in graph.tensors:
                yield f"layer {layer.name}: output '{name}' is not a declared tensor"
            made.add(name)
    for name in graph.outputs:
        if name not in made and name not in graph.quant_of:
            yield f"graph output '{name}' is produced by no layer"


def _scales(graph: QGraph) -> Iterator[str]:
    for tensor in graph.tensors.values():
        if tensor.precision != "int8":
            continue
        scale = tensor.scale
        if scale is None or not math.isfinite(scale) or scale <= 0:
            yield f"INT8 tensor '{tensor.name}' has scale {scale}; it must be positive"


def _engines(graph: QGraph) -> Iterator[str]:
    if not graph.verdicts:
        return
    for layer in graph.layers:
        for node in layer.onnx_nodes:
            verdict = graph.verdicts.get(node)
            if verdict is None:
                yield f"layer {layer.name}: ONNX node '{node}' has no support verdict"
                continue
            on_dla = verdict.engine == "dla" and verdict.modeled_fp32 is None
            if layer.engine == "dla" and not on_dla:
                yield (
                    f"layer {layer.name}: on the DLA, but node '{node}' is {verdict.engine}"
                    + (" (modeled in FP32)" if verdict.modeled_fp32 else "")
                )
            if layer.engine == "fallback" and on_dla and not isinstance(layer, QQuantize):
                yield f"layer {layer.name}: on the fallback, but node '{node}' runs on the DLA"


# Register fields each layer value is written to: (unit, register, field, signed).
_X_FIELDS = {
    "alu_operand": ("D_DP_{s}_ALU_SRC_VALUE", "{s}_ALU_OPERAND", True),
    "alu_shift": ("D_DP_{s}_ALU_CFG", "{s}_ALU_SHIFT_VALUE", False),
    "mul": ("D_DP_{s}_MUL_SRC_VALUE", "{s}_MUL_OPERAND", True),
    "truncate": ("D_DP_{s}_MUL_CFG", "{s}_MUL_SHIFT_VALUE", False),
}
_EW_FIELDS = {
    "cvt_offset": ("D_DP_EW_ALU_CVT_OFFSET_VALUE", "EW_ALU_CVT_OFFSET", True),
    "cvt_scale": ("D_DP_EW_ALU_CVT_SCALE_VALUE", "EW_ALU_CVT_SCALE", True),
    "cvt_truncate": ("D_DP_EW_ALU_CVT_TRUNCATE_VALUE", "EW_ALU_CVT_TRUNCATE", False),
}
_CVT_FIELDS = {
    "offset": ("D_CVT_OFFSET", "CVT_OFFSET", True),
    "scale": ("D_CVT_SCALE", "CVT_SCALE", True),
    "shift": ("D_CVT_SHIFT", "CVT_SHIFT", False),
}
_PDP_FIELDS = {
    "recip_w": ("D_RECIP_KERNEL_WIDTH", "RECIP_KERNEL_WIDTH", False),
    "recip_h": ("D_RECIP_KERNEL_HEIGHT", "RECIP_KERNEL_HEIGHT", False),
    "pad_value": ("D_POOLING_PADDING_VALUE_1_CFG", "PAD_VALUE_1X", True),
}
_CDP_FIELDS = {
    "in_offset": ("D_DATIN_OFFSET", "DATIN_OFFSET", True),
    "in_scale": ("D_DATIN_SCALE", "DATIN_SCALE", True),
    "in_shift": ("D_DATIN_SHIFTER", "DATIN_SHIFTER", False),
    "out_offset": ("D_DATOUT_OFFSET", "DATOUT_OFFSET", True),
    "out_scale": ("D_DATOUT_SCALE", "DATOUT_SCALE", True),
    "out_shift": ("D_DATOUT_SHIFTER", "DATOUT_SHIFTER", False),
}


def _fp16_values(layer: QConv | QSdp) -> Iterator[str]:
    """An FP16 layer's weights and SDP operands are finite FP16 numbers (no integer fields)."""
    arrays = {"weights": layer.weight} if isinstance(layer, QConv) else {}
    for stem, unit in (("X1", layer.sdp.x1), ("X2", layer.sdp.x2)):
        if unit is not None:
            arrays[f"{stem} ALU operand"] = unit.alu_operand
            arrays[f"{stem} MUL operand"] = unit.mul
    for what, value in arrays.items():
        if value is None:
            continue
        arr = np.asarray(value)
        if arr.dtype != np.float16 or not np.isfinite(arr).all():
            yield f"layer {layer.name}: {what} are not finite FP16 numbers"
    if layer.sdp.y is not None:
        yield f"layer {layer.name}: an FP16 layer with an SDP Y unit"


def _fields(layer: QLayer, regmap: RegisterMap) -> Iterator[str]:
    if isinstance(layer, QConv | QSdp) and layer.precision == "fp16":
        yield from _fp16_values(layer)
    elif isinstance(layer, QConv | QSdp):
        for stem, unit in (("BS", layer.sdp.x1), ("BN", layer.sdp.x2)):
            if unit is not None:
                yield from _unit_fields(layer, regmap, "SDP", unit, _X_FIELDS, stem)
            if unit is not None and unit.prelu and unit.alu is not None:
                # The programming model asks for the ALU bypassed under PReLU (nvdla.md §2): a
                # 33-bit ALU sum would pass PReLU as its low 32 bits (RTL _X_int_trt), a wrap
                # no implementation here models.
                yield f"layer {layer.name}: SDP {stem} PReLU with its ALU enabled"
        if layer.sdp.y is not None:
            yield from _unit_fields(layer, regmap, "SDP", layer.sdp.y, _EW_FIELDS)
        yield from _unit_fields(layer, regmap, "SDP", layer.sdp.c, _CVT_FIELDS)
    if isinstance(layer, QConv) and layer.precision == "int8":
        w = layer.weight
        if w.size and (w.dtype != np.int8 or int(w.min()) < -128 or int(w.max()) > 127):
            yield f"layer {layer.name}: weights are not INT8"
    if isinstance(layer, QPool):
        yield from _unit_fields(layer, regmap, "PDP", layer, _PDP_FIELDS)
    if isinstance(layer, QLrn):
        yield from _unit_fields(layer, regmap, "CDP", layer, _CDP_FIELDS)


def _unit_fields(
    layer: QLayer,
    regmap: RegisterMap,
    unit: str,
    values: XUnit | EwUnit | OutCvt | QLayer,
    table: dict[str, tuple[str, str, bool]],
    stem: str = "",
) -> Iterator[str]:
    for attr, (reg, fld, signed) in table.items():
        value = getattr(values, attr)
        if value is None:
            continue
        reg_name, field_name = reg.format(s=stem), fld.format(s=stem)
        width = regmap.register(unit, reg_name).field(field_name).width
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        arr = np.asarray(value, dtype=np.int64)
        if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
            yield (
                f"layer {layer.name}: {attr} {int(arr.min())}..{int(arr.max())} does not fit "
                f"{unit}.{reg_name}.{field_name} ({width} bits, {lo}..{hi})"
            )
