"""A small ONNX interpreter in PyTorch for the ops fallback segments hold.

Runs on any torch device (``cpu`` or ``cuda``); an op outside :data:`OPS` is refused with its
name. Elementwise float32 ops give the same bits as onnxruntime; reductions and convolutions may
differ in the last bits (summation order), as any two backends do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from dlakit.errors import DlakitError
from dlakit.graph.nodes import attrs as node_attrs
from dlakit.run.elementwise import Program
from dlakit.run.liveness import Liveness, drop

_TORCH_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.BOOL: torch.bool,
}

Op = Callable[[list[torch.Tensor | None], dict], list[torch.Tensor]]


def _ints(t: torch.Tensor | None) -> list[int]:
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _binary(fn) -> Op:
    return lambda x, a: [fn(x[0], x[1])]


def _unary(fn) -> Op:
    return lambda x, a: [fn(x[0])]


def _clip(x, a):
    lo = x[1] if len(x) > 1 and x[1] is not None else a.get("min")
    hi = x[2] if len(x) > 2 and x[2] is not None else a.get("max")
    y = x[0]
    if lo is not None:
        y = torch.maximum(y, torch.as_tensor(lo, dtype=y.dtype, device=y.device))
    if hi is not None:
        y = torch.minimum(y, torch.as_tensor(hi, dtype=y.dtype, device=y.device))
    return [y]


def _reshape(x, a):
    shape = _ints(x[1])
    shape = [
        x[0].shape[i] if s == 0 and not a.get("allowzero", 0) else s for i, s in enumerate(shape)
    ]
    return [x[0].reshape(shape)]


def _flatten(x, a):
    axis = a.get("axis", 1) % max(x[0].ndim, 1)
    return [x[0].reshape(int(np.prod(x[0].shape[:axis])), -1)]


def _pads2d(a) -> tuple[int, int, int, int]:
    p = list(a.get("pads", [0, 0, 0, 0]))
    return p[1], p[3], p[0], p[2]  # F.pad order: left, right, top, bottom


def _conv(x, a):
    w = x[1]
    y = F.conv2d(
        F.pad(x[0], _pads2d(a)),
        w,
        x[2] if len(x) > 2 else None,
        stride=tuple(a.get("strides", [1, 1])),
        dilation=tuple(a.get("dilations", [1, 1])),
        groups=a.get("group", 1),
    )
    return [y]


def _pool(kind: str) -> Op:
    def run(x, a):
        k = tuple(a["kernel_shape"])
        s = tuple(a.get("strides", [1] * len(k)))
        if kind == "max":
            y = F.max_pool2d(F.pad(x[0], _pads2d(a), value=-float("inf")), k, s,
                             ceil_mode=bool(a.get("ceil_mode", 0)))  # fmt: skip
        else:
            padded = F.pad(x[0], _pads2d(a))
            y = F.avg_pool2d(padded, k, s, ceil_mode=bool(a.get("ceil_mode", 0)))
            if any(a.get("pads", [0])) and not a.get("count_include_pad", 0):
                ones = F.pad(torch.ones_like(x[0][:1, :1]), _pads2d(a))
                y = y / F.avg_pool2d(ones, k, s, ceil_mode=bool(a.get("ceil_mode", 0)))
        return [y]

    return run


def _gemm(x, a):
    A = x[0].transpose(-1, -2) if a.get("transA", 0) else x[0]
    B = x[1].transpose(-1, -2) if a.get("transB", 0) else x[1]
    y = a.get("alpha", 1.0) * (A @ B)
    if len(x) > 2 and x[2] is not None:
        y = y + a.get("beta", 1.0) * x[2]
    return [y]


def _batchnorm(x, a):
    shape = (1, -1) + (1,) * (x[0].ndim - 2)
    scale, bias, mean, var = (t.reshape(shape) for t in x[1:5])
    return [(x[0] - mean) / torch.sqrt(var + a.get("epsilon", 1e-5)) * scale + bias]


def _reduce_mean(x, a):
    axes = a.get("axes") or _ints(x[1] if len(x) > 1 else None) or list(range(x[0].ndim))
    return [x[0].mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))]


def _squeeze(x, a):
    axes = a.get("axes") or _ints(x[1] if len(x) > 1 else None)
    y = x[0]
    for ax in sorted((v % y.ndim for v in axes), reverse=True) if axes else []:
        y = y.squeeze(ax)
    return [y if axes else x[0].squeeze()]


def _unsqueeze(x, a):
    y = x[0]
    for ax in sorted(a.get("axes") or _ints(x[1])):
        y = y.unsqueeze(ax)
    return [y]


def _slice(x, a):
    y = x[0]
    starts, ends = _ints(x[1]), _ints(x[2])
    axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
    steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    index = [slice(None)] * y.ndim
    for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
        if sp <= 0:
            raise DlakitError("Slice with a non-positive step is not supported by the torch runner")
        index[ax % y.ndim] = slice(st, min(en, y.shape[ax]), sp)
    return [y[tuple(index)]]


def _split(x, a):
    axis = a.get("axis", 0)
    sizes = _ints(x[1]) if len(x) > 1 and x[1] is not None else a.get("split")
    if not sizes:
        n = a["num_outputs"]
        sizes = [-(-x[0].shape[axis] // n)] * n
    return list(torch.split(x[0], list(sizes), dim=axis))


def _resize(x, a):
    mode = a.get("mode", "nearest")
    sizes = _ints(x[3]) if len(x) > 3 and x[3] is not None else None
    size = tuple(sizes[2:]) if sizes else None
    scales = None if size else tuple(float(v) for v in x[2].reshape(-1).tolist()[2:])
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest" and ctm == "asymmetric" and a.get("nearest_mode", "floor") == "floor":
        return [F.interpolate(x[0], size=size, scale_factor=scales, mode="nearest")]
    if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return [F.interpolate(x[0], size=size, scale_factor=scales, mode="bilinear",
                              align_corners=ctm == "align_corners")]  # fmt: skip
    raise DlakitError(
        f"Resize mode={mode} coordinate_transformation_mode={ctm}: not in the torch runner"
    )


def _sum(x, a):
    y = x[0]
    for v in x[1:]:  # left to right, as onnxruntime adds
        y = y + v
    return [y]


def _cast(x, a):
    return [x[0].to(_TORCH_DTYPES[a["to"]])]


OPS: dict[str, Op] = {
    "Add": _binary(torch.add),
    "Sum": _sum,
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": _binary(torch.div),
    "Max": _binary(torch.maximum),
    "Min": _binary(torch.minimum),
    "Pow": _binary(torch.pow),
    "Abs": _unary(torch.abs),
    "Neg": _unary(torch.neg),
    "Floor": _unary(torch.floor),
    "Sign": _unary(torch.sign),
    "Sqrt": _unary(torch.sqrt),
    "Exp": _unary(torch.exp),
    "Relu": _unary(torch.relu),
    "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh),
    "Identity": _unary(lambda t: t),
    "Dropout": _unary(lambda t: t),
    "HardSigmoid": lambda x, a: [
        torch.clamp(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0.0, 1.0)
    ],
    "HardSwish": _unary(F.hardswish),
    "LeakyRelu": lambda x, a: [F.leaky_relu(x[0], a.get("alpha", 0.01))],
    "Softmax": lambda x, a: [torch.softmax(x[0], dim=a.get("axis", -1))],
    "Clip": _clip,
    "Cast": _cast,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": lambda x, a: [x[0].permute(*(a.get("perm") or range(x[0].ndim - 1, -1, -1)))],
    "Concat": lambda x, a: [torch.cat([t for t in x if t is not None], dim=a["axis"])],
    "Squeeze": _squeeze,
    "Slice": _slice,
    "Split": _split,
    "Resize": _resize,
    "Unsqueeze": _unsqueeze,
    "Conv": _conv,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda x, a: [x[0].mean(dim=(2, 3), keepdim=True)],
    "GlobalMaxPool": lambda x, a: [x[0].amax(dim=(2, 3), keepdim=True)],
    "Gemm": _gemm,
    "MatMul": _binary(torch.matmul),
    "BatchNormalization": _batchnorm,
    "ReduceMean": _reduce_mean,
}


# Ops that map each element on its own (with scalar operands): a graph of only these runs in
# pieces of CHUNK elements on the CPU, so that its intermediates stay in the cache (a batch's
# float64 tensors otherwise go to memory and back once per op: MobileNetV2's input
# quantization at batch 32 made its fallback segments cost 3.8-5.8 ms an image, 1.8 in pieces).
ELEMENTWISE = frozenset(
    ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Abs", "Neg", "Floor", "Sign", "Sqrt", "Exp",
     "Relu", "Sigmoid", "Tanh", "Identity", "Clip", "Cast"]
)  # fmt: skip
CHUNK = 1 << 18


class TorchGraph:
    """One ONNX graph ready to run on ``device``: constants uploaded once, each value dropped
    after its last use; an element-wise graph with scalar constants in cache-sized pieces."""

    def __init__(self, model: onnx.ModelProto, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        g = model.graph
        missing = sorted({n.op_type for n in g.node if n.op_type not in OPS})
        if missing:
            raise DlakitError(
                f"fallback segment {g.name}: the PyTorch runner has no {', '.join(missing)}; "
                "run with --fallback-engine ort"
            )
        self.nodes = [(n, OPS[n.op_type], node_attrs(n)) for n in g.node]
        self.consts = {
            t.name: torch.as_tensor(np.array(numpy_helper.to_array(t)), device=self.device)
            for t in g.initializer
        }
        self.inputs = [i.name for i in g.input if i.name not in self.consts]
        self.outputs = [o.name for o in g.output]
        self.liveness = Liveness(model)
        self.elementwise = (
            self.device.type == "cpu"
            and all(n.op_type in ELEMENTWISE for n in g.node)
            and all(c.numel() == 1 for c in self.consts.values())
        )
        # One compiled pass instead of a tensor-sized pass per op, where the graph allows it.
        self.program = Program.of(model) if self.elementwise else None

    def run(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.program is not None:
            (name,) = self.inputs
            x = feeds[name]
            if x.device.type == "cpu":
                out = self.program.run(x.numpy())
                if out is not None:
                    return {self.outputs[0]: torch.from_numpy(out)}
        shapes = {feeds[name].shape for name in self.inputs}
        if self.elementwise and len(shapes) == 1:
            (shape,) = shapes
            size = shape.numel()
            # scalar constants of no more dimensions than the inputs keep their shape
            if size > CHUNK and all(c.ndim <= len(shape) for c in self.consts.values()):
                flat = {name: feeds[name].reshape(-1) for name in self.inputs}
                return self._in_pieces(flat, shape, size)
        return self._run(feeds)

    def _in_pieces(self, flat: dict[str, torch.Tensor], shape, size: int):
        outs: dict[str, torch.Tensor] = {}
        for start in range(0, size, CHUNK):
            part = self._run({name: t[start : start + CHUNK] for name, t in flat.items()})
            for name, value in part.items():
                if name not in outs:
                    outs[name] = torch.empty(size, dtype=value.dtype)
                outs[name][start : start + value.numel()] = value.reshape(-1)
        return {name: value.reshape(shape) for name, value in outs.items()}

    def _run(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = dict(self.consts)
        for name in self.inputs:
            values[name] = feeds[name].to(self.device)
        for (node, fn, attrs), dead in zip(self.nodes, self.liveness.drops, strict=True):
            args = [values[n] if n else None for n in node.input]
            for name, out in zip(node.output, fn(args, attrs), strict=False):
                values[name] = out
            del args
            drop(values, dead)
        return {name: values[name] for name in self.outputs}
