"""Predicates that rule tables name in their ``check`` field.

Each predicate receives the node's :class:`NodeView` and the check's parameters (from the rule
data) and returns ``None`` when the node passes, or a :class:`Violation` saying which attribute,
what value and what limit. Adding a rule that reuses a predicate is a data change only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from dlakit.graph import LoadedModel
from dlakit.graph.nodes import attrs

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}


@dataclass(frozen=True)
class Violation:
    attribute: str
    value: Any
    limit: str


class NodeView:
    """One node with what the predicates ask of it: attributes, shapes, constant inputs."""

    def __init__(self, node: onnx.NodeProto, model: LoadedModel, generation: str) -> None:
        self.node = node
        self.model = model
        self.generation = generation  # DLA generation ("orin", "xavier") or NVDLA config name
        self.attrs = attrs(node)

    @property
    def op(self) -> str:
        return self.node.op_type

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.model.shapes.get(name) if name else None

    def input_shape(self, index: int = 0) -> tuple[int, ...] | None:
        if index >= len(self.node.input):
            return None
        return self.shape(self.node.input[index])

    def output_shape(self, index: int = 0) -> tuple[int, ...] | None:
        return self.shape(self.node.output[index]) if index < len(self.node.output) else None

    def const(self, index: int) -> np.ndarray | None:
        if index >= len(self.node.input) or not self.node.input[index]:
            return None
        return self.model.initializers.get(self.node.input[index])

    def is_const(self, index: int) -> bool:
        return self.const(index) is not None

    def data_inputs(self) -> list[str]:
        """Inputs that are computed tensors, not constants."""
        return [n for n in self.node.input if n and n not in self.model.initializers]

    def ints(self, attr: str) -> list[int]:
        """An integer (list) attribute, with ONNX defaults and pads made explicit."""
        if attr == "kernel_shape":
            if "kernel_shape" in self.attrs:
                return list(self.attrs["kernel_shape"])
            weight = self.input_shape(1)
            return list(weight[2:]) if weight and len(weight) > 2 else []
        if attr == "pads":
            return self._pads()
        value = self.attrs.get(attr)
        if value is None:
            spatial = self._spatial_rank()
            defaults = {"strides": [1] * spatial, "dilations": [1] * spatial, "group": [1]}
            defaults |= {"transA": [0], "transB": [0]}
            return defaults.get(attr, [])
        return list(value) if isinstance(value, list | tuple) else [int(value)]

    def _spatial_rank(self) -> int:
        shape = self.input_shape(0)
        return max(len(shape) - 2, 0) if shape else 2

    def _pads(self) -> list[int]:
        auto_pad = str(self.attrs.get("auto_pad", "NOTSET"))
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            src, dst = self.input_shape(0), self.output_shape(0)
            kernel, strides = self.ints("kernel_shape"), self.ints("strides")
            dilations = self.ints("dilations") or [1] * len(kernel)
            if not (src and dst and kernel):
                return []
            begins, ends = [], []
            for i, k in enumerate(kernel):
                total = max(
                    (dst[2 + i] - 1) * strides[i] + (k - 1) * dilations[i] + 1 - src[2 + i], 0
                )
                small, large = total // 2, total - total // 2
                begins.append(large if auto_pad == "SAME_LOWER" else small)
                ends.append(small if auto_pad == "SAME_LOWER" else large)
            return begins + ends
        if "pads" in self.attrs:
            return list(self.attrs["pads"])
        return [0] * (2 * self._spatial_rank())


Predicate = Callable[[NodeView, dict[str, Any]], Violation | None]
PREDICATES: dict[str, Predicate] = {}


def predicate(name: str) -> Callable[[Predicate], Predicate]:
    def register(fn: Predicate) -> Predicate:
        PREDICATES[name] = fn
        return fn

    return register


@predicate("attr_range")
def attr_range(view: NodeView, p: dict[str, Any]) -> Violation | None:
    values = view.ints(p["attr"])
    bad = [v for v in values if not p["min"] <= v <= p["max"]]
    if bad:
        return Violation(p["attr"], values, f"[{p['min']}, {p['max']}]")
    return None


@predicate("attr_in")
def attr_in(view: NodeView, p: dict[str, Any]) -> Violation | None:
    value = view.attrs.get(p["attr"])
    if value not in p["values"]:
        return Violation(p["attr"], value, "one of " + ", ".join(map(str, p["values"])))
    return None


@predicate("pad_lt_kernel")
def pad_lt_kernel(view: NodeView, p: dict[str, Any]) -> Violation | None:
    kernel, pads = view.ints("kernel_shape"), view.ints("pads")
    n = len(kernel)
    for i, k in enumerate(kernel):
        for pad in (pads[i], pads[i + n]) if len(pads) == 2 * n else ():
            if pad >= k:
                return Violation("pads", pads, f"< kernel {kernel}")
    return None


@predicate("weight_rank")
def weight_rank(view: NodeView, p: dict[str, Any]) -> Violation | None:
    shape = view.input_shape(1)
    if shape is not None and len(shape) != p["rank"]:
        return Violation("weight rank", len(shape), str(p["rank"]))
    return None


@predicate("input_rank")
def input_rank(view: NodeView, p: dict[str, Any]) -> Violation | None:
    shape = view.input_shape(0)
    if shape is not None and len(shape) != p["rank"]:
        return Violation("input rank", len(shape), str(p["rank"]))
    return None


@predicate("out_channels")
def out_channels(view: NodeView, p: dict[str, Any]) -> Violation | None:
    shape = view.output_shape(0)
    if not shape or len(shape) < 2:
        return None
    channels = shape[1] if len(shape) >= 4 else shape[-1]
    if not p["min"] <= channels <= p["max"]:
        return Violation("output channels", channels, f"[{p['min']}, {p['max']}]")
    return None


@predicate("const_input")
def const_input(view: NodeView, p: dict[str, Any]) -> Violation | None:
    index = p["index"]
    if index < len(view.node.input) and view.node.input[index] and not view.is_const(index):
        return Violation(f"input {index}", view.node.input[index], "a constant")
    return None


@predicate("const_inputs_from")
def const_inputs_from(view: NodeView, p: dict[str, Any]) -> Violation | None:
    for index in range(p["first"], len(view.node.input)):
        if view.node.input[index] and not view.is_const(index):
            return Violation(f"input {index}", view.node.input[index], "a constant")
    return None


@predicate("max_outputs")
def max_outputs(view: NodeView, p: dict[str, Any]) -> Violation | None:
    used = [o for o in view.node.output if o]
    if len(used) > p["count"]:
        return Violation("outputs", len(used), f"<= {p['count']}")
    return None


@predicate("eltwise_shapes")
def eltwise_shapes(view: NodeView, p: dict[str, Any]) -> Violation | None:
    data = view.data_inputs()
    if len(data) < 2:
        return None  # a constant operand becomes a Scale layer (uniform/per-channel/per-element)
    shapes = [view.shape(n) for n in data]
    if len({s for s in shapes if s is not None}) > 1:
        return Violation("input shapes", [list(s) if s else None for s in shapes], "equal shapes")
    return None


@predicate("consumers_are")
def consumers_are(view: NodeView, p: dict[str, Any]) -> Violation | None:
    users = view.model.consumers().get(view.node.output[0], [])
    others = sorted({u.op_type for u in users if u.op_type not in p["ops"]})
    if others or view.node.output[0] in view.model.output_names:
        return Violation("consumers", others or ["graph output"], " or ".join(p["ops"]))
    return None


@predicate("clip_bounds")
def clip_bounds(view: NodeView, p: dict[str, Any]) -> Violation | None:
    low = view.attrs.get("min")
    high = view.attrs.get("max")
    if low is None and view.is_const(1):
        low = float(np.ravel(view.const(1))[0])  # some exporters write shape [1], not a scalar
    if high is None and view.is_const(2):
        high = float(np.ravel(view.const(2))[0])
    if (len(view.node.input) > 1 and view.node.input[1] and not view.is_const(1)) or (
        len(view.node.input) > 2 and view.node.input[2] and not view.is_const(2)
    ):
        return Violation("min/max", "computed", "constants")
    if low is None or float(low) != 0.0:
        return Violation("min", low, "0")
    if high is None or not p["max_low"] <= float(high) <= p["max_high"]:
        return Violation("max", high, f"[{p['max_low']:g}, {p['max_high']:g}]")
    return None


@predicate("inclusive_padding")
def inclusive_padding(view: NodeView, p: dict[str, Any]) -> Violation | None:
    if any(view.ints("pads")) and not view.attrs.get("count_include_pad", 0):
        return Violation("count_include_pad", 0, "1 when padded")
    return None


@predicate("axes_not_batch")
def axes_not_batch(view: NodeView, p: dict[str, Any]) -> Violation | None:
    rank = len(view.input_shape(0) or ())
    axes: list[int] = []
    if "axes" in view.attrs:
        axes = list(view.attrs["axes"])
    elif "axis" in view.attrs:
        axes = [int(view.attrs["axis"])]
    elif view.op == "Slice" and view.is_const(3):
        axes = [int(a) for a in np.ravel(view.const(3))]
    elif view.op in ("ReduceMax",) and view.is_const(1):
        axes = [int(a) for a in np.ravel(view.const(1))]
    elif view.op == "Softmax":
        axes = [-1 if view.model.opset >= 13 else 1]
    elif view.op == "Slice":
        starts = view.const(1)
        axes = list(range(len(np.ravel(starts)))) if starts is not None else []
    normalized = [a % rank if rank else a for a in axes]
    if 0 in normalized:
        return Violation("axes", axes, "not the batch axis 0")
    return None


@predicate("slice_steps_one")
def slice_steps_one(view: NodeView, p: dict[str, Any]) -> Violation | None:
    steps = view.const(4)
    if steps is not None and np.any(np.ravel(steps) != 1):
        return Violation("steps", np.ravel(steps).tolist(), "1")
    return None


@predicate("channel_axis")
def channel_axis(view: NodeView, p: dict[str, Any]) -> Violation | None:
    rank = len(view.output_shape(0) or ())
    axis = int(view.attrs.get("axis", 1))
    if rank and axis % rank != rank - 3:
        return Violation("axis", axis, f"{rank - 3} (the channel axis)")
    return None


@predicate("min_inputs")
def min_inputs(view: NodeView, p: dict[str, Any]) -> Violation | None:
    count = len([i for i in view.node.input if i])
    if count < p["count"]:
        return Violation("inputs", count, f">= {p['count']}")
    return None


@predicate("target_in")
def target_in(view: NodeView, p: dict[str, Any]) -> Violation | None:
    if view.generation not in p["targets"]:
        return Violation("target", view.generation, " or ".join(p["targets"]))
    return None


@predicate("softmax_axis_len")
def softmax_axis_len(view: NodeView, p: dict[str, Any]) -> Violation | None:
    shape = view.input_shape(0)
    if not shape:
        return None
    axis = int(view.attrs.get("axis", -1 if view.model.opset >= 13 else 1)) % len(shape)
    others = [d for i, d in enumerate(shape) if i not in (0, axis)]
    limit = p["max"] if all(d == 1 for d in others) else p["approx_max"]
    if shape[axis] > limit:
        return Violation("axis length", shape[axis], f"<= {limit}")
    return None


@predicate("io_rank")
def io_rank(view: NodeView, p: dict[str, Any]) -> Violation | None:
    """The data input and the output both have rank ``p["rank"]``."""
    src, dst = view.input_shape(0), view.output_shape(0)
    if src is None or dst is None:
        return None
    if len(src) != p["rank"] or len(dst) != p["rank"]:
        return Violation(
            "ranks", f"{len(src)}-D -> {len(dst)}-D", f"{p['rank']}-D -> {p['rank']}-D"
        )
    return None


@predicate("perm_keeps_batch")
def perm_keeps_batch(view: NodeView, p: dict[str, Any]) -> Violation | None:
    perm = view.attrs.get("perm")
    if perm and perm[0] != 0:
        return Violation("perm", list(perm), "perm[0] = 0")
    return None


@predicate("deconv_window")
def deconv_window(view: NodeView, p: dict[str, Any]) -> Violation | None:
    values = view.ints(p["attr"])
    if all(1 <= v <= 32 for v in values):
        return None
    if len(values) == 2 and sorted(values)[0] == 1 and sorted(values)[1] in (64, 96, 128):
        return None
    return Violation(p["attr"], values, "[1, 32] or 1x{64,96,128}")


@predicate("resize_scales")
def resize_scales(view: NodeView, p: dict[str, Any]) -> Violation | None:
    sizes = view.node.input[3] if len(view.node.input) > 3 else ""
    if sizes:
        return Violation("sizes", sizes, "scales (not sizes)")
    scales = view.const(2)
    if scales is None:
        src, dst = view.input_shape(0), view.output_shape(0)
        if not (src and dst):
            return Violation("scales", None, "constant scales")
        scales = np.array(dst, dtype=np.float64) / np.array(src, dtype=np.float64)
    scales = np.ravel(scales).astype(np.float64)
    mode = str(view.attrs.get("mode", "nearest"))
    high = p["linear_max"] if mode == "linear" else p["nearest_max"]
    ok = (
        len(scales) == 4
        and scales[0] == 1
        and scales[1] == 1
        and all(float(s).is_integer() and 1 <= s <= high for s in scales[2:])
    )
    if not ok:
        return Violation(
            "scales", [round(float(s), 4) for s in scales], f"[1, 1, k, k], k in [1, {high}]"
        )
    return None


_RESIZE_MODES = {
    ("nearest", "asymmetric", "floor"),
    ("nearest", "half_pixel", "round_prefer_floor"),
    ("nearest", "half_pixel", "round_prefer_ceil"),
    ("linear", "half_pixel", "*"),
    ("linear", "pytorch_half_pixel", "*"),
}


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


@predicate("resize_mode")
def resize_mode(view: NodeView, p: dict[str, Any]) -> Violation | None:
    mode = _text(view.attrs.get("mode"), "nearest")
    coord = _text(view.attrs.get("coordinate_transformation_mode"), "half_pixel")
    rounding = (
        _text(view.attrs.get("nearest_mode"), "round_prefer_floor") if mode == "nearest" else "*"
    )
    if (mode, coord, rounding) not in _RESIZE_MODES:
        return Violation(
            "mode",
            f"{mode}/{coord}/{rounding}",
            "nearest asymmetric/floor, nearest half_pixel/round, or linear half_pixel",
        )
    return None


@predicate("resize_linear_since")
def resize_linear_since(view: NodeView, p: dict[str, Any]) -> Violation | None:
    if _text(view.attrs.get("mode"), "nearest") == "linear":
        return Violation("mode", "linear", "nearest")
    return None


@predicate("spatial_max")
def spatial_max(view: NodeView, p: dict[str, Any]) -> Violation | None:
    shape = view.input_shape(0)
    if shape and len(shape) == 4 and max(shape[2:]) > p["max"]:
        return Violation("plane", f"{shape[2]}x{shape[3]}", f"<= {p['max']}x{p['max']}")
    return None


@predicate("layout_noop")
def layout_noop(view: NodeView, p: dict[str, Any]) -> Violation | None:
    """The feature cube (C, H, W) of a DLA surface is the same before and after: the same bytes.

    A 2-D tensor [N, C] is the cube (C, 1, 1), a 3-D [N, C, H] is (C, H, 1).
    """
    src, dst = view.input_shape(0), view.output_shape(0)
    if src is None or dst is None:
        return Violation("shape", None, "static shapes")
    if src[0] == dst[0] and _cube(src) is not None and _cube(src) == _cube(dst):
        return None
    return Violation("output shape", list(dst), f"the same (C, H, W) cube as {list(src)}")


def _cube(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 3:
        return shape[1], shape[2], 1
    if len(shape) == 2:
        return shape[1], 1, 1
    return None


@predicate("channels_aligned")
def channels_aligned(view: NodeView, p: dict[str, Any]) -> Violation | None:
    """Every input but the last ends on a surface (its channels fill whole memory atoms).

    Consecutive inputs that are channel views covering one tensor in order (the outputs of a
    Split, as in YOLOv8's C2f blocks) count as that tensor: it is placed whole.
    """
    atom = int(p["atom"])
    for names in concat_runs(view.model, view.data_inputs())[:-1]:
        channels = sum((view.shape(n) or (0, 0))[1] for n in names)
        shape = view.shape(names[0])
        if shape and len(shape) >= 2 and channels % atom:
            return Violation(f"channels of '{names[0]}'", channels, f"a multiple of {atom}")
    return None


def channel_range(model: LoadedModel, tensor: str) -> tuple[str, int, int] | None:
    """(parent, first, end) when ``tensor`` is channels [first, end) of a 4-D parent: an output
    of a channel Split or of a Slice of the channel axis (steps 1); else None."""
    node = model.producers().get(tensor)
    if node is None or not node.input:
        return None
    parent = node.input[0]
    shape = model.shapes.get(parent)
    if not shape or len(shape) != 4:
        return None
    view = NodeView(node, model, "")
    if node.op_type == "Split" and split_axis(view, {}) is None:
        first = 0
        for out in node.output:
            end = first + int((model.shapes.get(out) or (0, 0))[1])
            if out == tensor:
                return parent, first, end
            first = end
    if node.op_type == "Slice" and slice_channels(view, {}) is None:
        out = model.shapes.get(tensor)
        if out is None:
            return None
        starts = np.ravel(model.initializers[node.input[1]]).astype(np.int64)
        first = int(starts[0]) + (shape[1] if starts[0] < 0 else 0)
        first = min(max(first, 0), shape[1])
        return parent, first, first + int(out[1])
    return None


def concat_runs(model: LoadedModel, inputs: list[str]) -> list[list[str]]:
    """A concatenation's inputs grouped: consecutive channel views that cover one tensor in
    order form one group (placed as that tensor); every other input is a group of its own."""
    groups: list[list[str]] = []
    i = 0
    while i < len(inputs):
        first = channel_range(model, inputs[i])
        j = i + 1
        if first is not None and first[1] == 0:
            parent, _, end = first
            while j < len(inputs) and end < model.shapes[parent][1]:
                nxt = channel_range(model, inputs[j])
                if nxt is None or nxt[0] != parent or nxt[1] != end:
                    break
                end = nxt[2]
                j += 1
            if end != model.shapes[parent][1]:
                j = i + 1
        groups.append(list(inputs[i:j]))
        i = j
    return groups


@predicate("split_axis")
def split_axis(view: NodeView, p: dict[str, Any]) -> Violation | None:
    """A Split along the channel axis 1 (ONNX's default axis is 0)."""
    rank = len(view.input_shape(0) or ())
    axis = int(view.attrs.get("axis", 0))
    if not rank or axis % rank != 1:
        return Violation("axis", axis, "1 (the channel axis)")
    return None


@predicate("slice_channels")
def slice_channels(view: NodeView, p: dict[str, Any]) -> Violation | None:
    """A Slice of the channel axis only (constant starts, ends and axes; steps 1)."""
    for index in (1, 2, 3, 4):
        name = view.node.input[index] if index < len(view.node.input) else ""
        if name and not view.is_const(index):
            return Violation(f"input {index}", name, "a constant")
    rank = len(view.input_shape(0) or ())
    starts = view.const(1)
    if starts is None or view.const(2) is None:
        return Violation("starts/ends", None, "constants")
    axes = view.const(3)
    axes = np.arange(np.size(starts)) if axes is None else np.ravel(axes).astype(np.int64)
    normalized = sorted(int(a) % rank for a in axes) if rank else []
    if normalized != [1]:
        return Violation("axes", np.ravel(axes).tolist(), "[1] (the channel axis)")
    steps = view.const(4)
    if steps is not None and np.any(np.ravel(steps) != 1):
        return Violation("steps", np.ravel(steps).tolist(), "1")
    return None


def _nearest_source(i: np.ndarray, scale: float, n_in: int, n_out: int, mode: str,
                    rounding: str) -> np.ndarray:  # fmt: skip
    """ONNX Resize (nearest): the input index each output index reads."""
    if mode == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif mode == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(i, dtype=np.float64)
    elif mode == "align_corners":
        x = i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(i, dtype=np.float64)
    elif mode == "asymmetric":
        x = i / scale
    elif mode == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    else:
        return np.full(i.shape, -1)
    frac = x - np.floor(x)
    if rounding == "floor":
        y = np.floor(x)
    elif rounding == "ceil":
        y = np.ceil(x)
    elif rounding == "round_prefer_ceil":
        y = np.where(frac == 0.5, np.ceil(x), np.round(x))
    else:  # round_prefer_floor
        y = np.where(frac == 0.5, np.floor(x), np.round(x))
    return np.clip(y, 0, n_in - 1).astype(np.int64)


@predicate("resize_repeat")
def resize_repeat(view: NodeView, p: dict[str, Any]) -> Violation | None:
    """Nearest Resize of H and W by whole factors in [1, max] (not both 1) that repeats every
    pixel: its coordinate transformation and rounding read input ``i // factor``."""
    src, dst = view.input_shape(0), view.output_shape(0)
    if not (src and dst) or len(src) != 4 or len(dst) != 4:
        return Violation("shape", None, "static 4-D shapes")
    mode = _text(view.attrs.get("mode"), "nearest")
    if mode != "nearest":
        return Violation("mode", mode, "nearest")
    if src[:2] != dst[:2] or dst[2] % src[2] or dst[3] % src[3]:
        return Violation("output shape", list(dst), f"whole multiples of {list(src)[2:]}")
    factors = (dst[2] // src[2], dst[3] // src[3])
    if factors == (1, 1) or not all(1 <= f <= p["max"] for f in factors):
        return Violation("factors", list(factors), f"[1, {p['max']}], not both 1")
    coord = _text(view.attrs.get("coordinate_transformation_mode"), "half_pixel")
    rounding = _text(view.attrs.get("nearest_mode"), "round_prefer_floor")
    scales = view.const(2)
    given = np.ravel(scales).astype(np.float64) if scales is not None and np.size(scales) else None
    for axis, f in ((2, factors[0]), (3, factors[1])):
        scale = float(given[axis]) if given is not None and given.size == 4 else float(f)
        i = np.arange(dst[axis])
        if not np.array_equal(_nearest_source(i, scale, src[axis], dst[axis], coord, rounding),
                              i // f):  # fmt: skip
            return Violation("mode", f"nearest {coord}/{rounding}", "each pixel repeated")
    return None


@predicate("kernel_is_stride")
def kernel_is_stride(view: NodeView, p: dict[str, Any]) -> Violation | None:
    """A deconvolution whose kernel equals its stride: each input pixel makes its own block."""
    kernel, strides = view.ints("kernel_shape"), view.ints("strides")
    if kernel != strides:
        return Violation("kernel_shape", kernel, f"the strides {strides}")
    return None


# Lowering checks (rules/lowering.toml) -------------------------------------------------------
@predicate("static_shapes")
def static_shapes(view: NodeView, p: dict[str, Any]) -> Violation | None:
    for name in [*view.data_inputs(), *[o for o in view.node.output if o]]:
        if not view.shape(name):
            return Violation(f"shape of '{name}'", None, "static")
    return None


@predicate("explicit_pads")
def explicit_pads(view: NodeView, p: dict[str, Any]) -> Violation | None:
    auto_pad = _text(view.attrs.get("auto_pad"), "NOTSET")
    if auto_pad != "NOTSET":
        return Violation("auto_pad", auto_pad, "NOTSET")
    return None


@predicate("clip_lower_zero")
def clip_lower_zero(view: NodeView, p: dict[str, Any]) -> Violation | None:
    low = view.attrs.get("min")
    for index in (1, 2):
        name = view.node.input[index] if index < len(view.node.input) else ""
        if name and not view.is_const(index):
            return Violation("min/max", "computed", "constants")
    if low is None and view.is_const(1):
        low = float(np.ravel(view.const(1))[0])
    if low is not None and float(low) != 0.0:
        return Violation("min", float(low), "0 or absent")
    return None


@predicate("equal_data_inputs")
def equal_data_inputs(view: NodeView, p: dict[str, Any]) -> Violation | None:
    data = view.data_inputs()
    if len(data) != len(view.node.input) or len(data) != p["count"]:
        return Violation("computed inputs", len(data), f"{p['count']}, no constants")
    shapes = {view.shape(n) for n in data}
    if len(shapes) != 1:
        return Violation("input shapes", [list(view.shape(n) or ()) for n in data], "equal")
    return None


@predicate("batch_kept")
def batch_kept(view: NodeView, p: dict[str, Any]) -> Violation | None:
    src, dst = view.input_shape(0), view.output_shape(0)
    if not src or not dst or src[0] != dst[0]:
        return Violation("batch", [src[0] if src else None, dst[0] if dst else None], "kept")
    return None


# General checks (every DLA node) -------------------------------------------------------------
@predicate("float_tensors")
def float_tensors(view: NodeView, p: dict[str, Any]) -> Violation | None:
    for name in [*view.data_inputs(), *[o for o in view.node.output if o]]:
        dtype = view.model.dtypes.get(name)
        if (
            dtype is not None
            and dtype not in FLOAT_TYPES
            and view.op not in ("Equal", "Greater", "Less")
        ):
            return Violation(f"tensor '{name}'", onnx.helper.tensor_dtype_to_string(dtype), "float")
    return None


@predicate("max_rank")
def max_rank(view: NodeView, p: dict[str, Any]) -> Violation | None:
    for name in [*view.data_inputs(), *view.node.output]:
        shape = view.shape(name)
        if shape is not None and len(shape) > p["max"]:
            return Violation(f"rank of '{name}'", len(shape), f"<= {p['max']}")
    return None


@predicate("max_dim")
def max_dim(view: NodeView, p: dict[str, Any]) -> Violation | None:
    for name in [*view.data_inputs(), *view.node.output]:
        shape = view.shape(name)
        if shape and len(shape) > 1 and max(shape[1:]) > p["max"]:
            return Violation(f"dims of '{name}'", list(shape), f"each <= {p['max']}")
    return None


def dla_batch(shape: tuple[int, ...] | None) -> int:
    """TensorRT's DLA batch: the product of all dims except the last three (C, H, W)."""
    if not shape:
        return 1
    return int(np.prod(shape[:-3])) if len(shape) > 3 else (shape[0] if len(shape) > 1 else 1)


@predicate("max_batch")
def max_batch(view: NodeView, p: dict[str, Any]) -> Violation | None:
    limit = int(p["limit"])
    for name in view.node.output:
        batch = dla_batch(view.shape(name))
        if batch > limit:
            return Violation(f"batch of '{name}'", batch, f"<= {limit}")
    return None
