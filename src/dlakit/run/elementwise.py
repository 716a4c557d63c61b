"""Element-wise fallback graphs with an integer output, compiled into one pass over the values.

A fallback segment that only maps each value on its own (the input quantization the compiler
emits: cast to float64, divide, round half away from zero, saturate, cast to INT8) costs
:class:`~dlakit.run.torch_exec.TorchGraph` one tensor-sized pass per op. :class:`Program` runs
the same graph per block of values, every op on a float64 register block, rounding to float32
after each op whose ONNX type is float32: for ``+ - * /`` of float32 values the float64 result
rounded once is the float32 result (the wider type has more than twice the bits), and the other
ops are exact, so the bits are :class:`TorchGraph`'s. Only graphs whose output is an integer
cast are taken: the sign of a zero, where the two could differ, does not reach an integer
(a division by zero, where it would, counts as a miss). A value that is NaN or outside the
integer type at that cast (where a C cast is undefined) makes :meth:`Program.run` return None,
and the caller runs the graph in torch, the definition.
"""

from __future__ import annotations

import numba
import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from dlakit.graph.nodes import attrs as node_attrs

# Op codes of the compiled pass (one row of ``code`` each).
_ADD, _SUB, _MUL, _DIV, _MAX, _MIN, _ABS, _NEG, _FLOOR, _SIGN, _RELU, _COPY, _TO_F32, _TO_INT = (
    range(14)
)
_BINARY = {"Add": _ADD, "Sub": _SUB, "Mul": _MUL, "Div": _DIV, "Max": _MAX, "Min": _MIN}
_UNARY = {"Abs": _ABS, "Neg": _NEG, "Floor": _FLOOR, "Sign": _SIGN, "Relu": _RELU,
          "Identity": _COPY}  # fmt: skip
_FLOATS = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}
_INTS = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT16: np.int16,
         TensorProto.INT32: np.int32}  # fmt: skip
_INPUTS = {**_FLOATS, **_INTS}
_BLOCK = 1024  # values per block: the registers of a short graph stay in the L2 cache


class _Unsupported(Exception):
    pass


class Program:
    """One element-wise graph (one input, one integer output) as rows of op codes over
    registers: register 0 the input, then one per constant, then one per value computed."""

    def __init__(self, code, constants, registers: int, bounds, in_dtype, out_dtype) -> None:
        self.code = code  # int64 rows: op, destination, operand a, operand b, round to float32
        self.constants = constants  # float64 (register, value) pairs, as two rows
        self.registers = registers
        self.bounds = bounds  # float64 low, high of the output type
        self.in_dtype = np.dtype(in_dtype)
        self.out_dtype = out_dtype

    @classmethod
    def of(cls, model: onnx.ModelProto) -> Program | None:
        """The compiled form of ``model``'s graph, or None where it is not such a graph."""
        try:
            return cls._build(model.graph)
        except _Unsupported:
            return None

    @classmethod
    def _build(cls, g: onnx.GraphProto) -> Program:
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1 or len(g.output) != 1:
            raise _Unsupported
        in_type = inputs[0].type.tensor_type.elem_type
        if in_type not in _INPUTS:
            raise _Unsupported
        # A size-1 constant of more dimensions than the input would broadcast the output.
        rank = len(inputs[0].type.tensor_type.shape.dim)
        reg = {inputs[0].name: 0}
        dtype = {inputs[0].name: in_type}
        constants: list[tuple[int, float]] = []
        rows: list[list[int]] = []

        def register() -> int:
            # every register after the input is a constant's or a row's destination
            return 1 + len(constants) + len(rows)

        def const(value, kind: int) -> int:
            value = np.asarray(value)
            if value.size != 1 or value.ndim > rank or kind not in _FLOATS:
                raise _Unsupported
            # torch casts a 0-d operand to the tensor's type first, as ONNX types require.
            r = register()
            constants.append((r, float(value.astype(_FLOATS[kind]).reshape(()))))
            return r

        def operand(name: str, kind: int) -> int:
            if name in reg:
                if dtype[name] != kind:
                    raise _Unsupported
                return reg[name]
            if name in inits:
                return const(inits[name], kind)
            raise _Unsupported

        def emit(op: int, out: str, a: int, b: int, kind: int) -> int:
            reg[out] = register()
            dtype[out] = kind
            rows.append([op, reg[out], a, b, 1 if kind == TensorProto.FLOAT else 0])
            return reg[out]

        out_dtype = None
        for node in g.node:
            ins, out, op = list(node.input), node.output[0], node.op_type
            # the integer cast must be the last node; a constant may come first only in a
            # binary op
            tensor = next((n for n in ins[: 2 if op in _BINARY else 1] if n in reg), None)
            if out_dtype is not None or len(node.output) != 1 or tensor is None:
                raise _Unsupported
            kind = dtype[tensor]
            if op == "Cast" and len(ins) == 1 and tensor == ins[0]:
                to = node_attrs(node)["to"]
                if to in _FLOATS:
                    emit(_TO_F32 if to == TensorProto.FLOAT else _COPY, out, reg[ins[0]], 0, to)
                elif to in _INTS and kind in _FLOATS and out == g.output[0].name:
                    out_dtype = _INTS[to]
                    emit(_TO_INT, out, reg[ins[0]], 0, to)
                else:
                    raise _Unsupported
                continue
            if kind not in _FLOATS:
                raise _Unsupported
            if op in _BINARY and len(ins) == 2:
                emit(_BINARY[op], out, operand(ins[0], kind), operand(ins[1], kind), kind)
            elif op in _UNARY and len(ins) == 1 and tensor == ins[0]:
                emit(_UNARY[op], out, reg[ins[0]], 0, kind)
            elif op == "Clip" and tensor == ins[0]:
                attrs = node_attrs(node)
                x = reg[ins[0]]
                low = ins[1] if len(ins) > 1 and ins[1] else None
                if low is not None or "min" in attrs:
                    c = operand(low, kind) if low else const(attrs["min"], kind)
                    x = emit(_MAX, out + "/low", x, c, kind)
                high = ins[2] if len(ins) > 2 and ins[2] else None
                if high is not None or "max" in attrs:
                    c = operand(high, kind) if high else const(attrs["max"], kind)
                    x = emit(_MIN, out + "/high", x, c, kind)
                reg[out], dtype[out] = x, kind
            else:
                raise _Unsupported
        if out_dtype is None:
            raise _Unsupported
        info = np.iinfo(out_dtype)
        return cls(
            np.array(rows, dtype=np.int64),
            np.array(constants, dtype=np.float64).reshape(-1, 2).T.copy(),
            register(),
            np.array([info.min, info.max], dtype=np.float64),
            _INPUTS[in_type],
            out_dtype,
        )

    def run(self, x: np.ndarray) -> np.ndarray | None:
        """The graph's output for input ``x`` (any shape), or None where a value at the integer
        cast is NaN or out of range (then torch, the definition, decides what it gives), or
        where ``x`` is not of the graph's input type."""
        if x.dtype != self.in_dtype:
            return None
        flat = np.ascontiguousarray(x).reshape(-1)
        out = np.empty(flat.shape, self.out_dtype)
        missed = _run(flat, out, self.code, self.constants, self.registers, self.bounds, _BLOCK,
                      numba.get_num_threads())  # fmt: skip
        return None if missed else out.reshape(x.shape)


@numba.njit(cache=True)
def _binary(op, u, v, dst, m):
    # One loop per op: a branch per value would keep the loop from vectorising.
    if op == _ADD:
        for i in range(m):
            dst[i] = u[i] + v[i]
    elif op == _SUB:
        for i in range(m):
            dst[i] = u[i] - v[i]
    elif op == _MUL:
        for i in range(m):
            dst[i] = u[i] * v[i]
    elif op == _DIV:
        for i in range(m):
            dst[i] = u[i] / v[i]
    elif op == _MAX:
        for i in range(m):
            dst[i] = u[i] if (u[i] >= v[i] or u[i] != u[i]) else v[i]  # NaN wins, as in torch
    else:
        for i in range(m):
            dst[i] = u[i] if (u[i] <= v[i] or u[i] != u[i]) else v[i]


@numba.njit(cache=True)
def _unary(op, src, dst, m):
    if op == _ABS:
        for i in range(m):
            dst[i] = abs(src[i])
    elif op == _NEG:
        for i in range(m):
            dst[i] = -src[i]
    elif op == _FLOOR:
        for i in range(m):
            dst[i] = np.floor(src[i])
    elif op == _SIGN:
        for i in range(m):
            v = src[i]
            dst[i] = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)  # NaN: 0, as torch.sign
    elif op == _RELU:
        for i in range(m):
            v = src[i]
            dst[i] = v if (v > 0 or v != v) else 0.0
    elif op == _TO_F32:
        for i in range(m):
            dst[i] = np.float32(src[i])
    else:
        for i in range(m):
            dst[i] = src[i]


@numba.njit(cache=True)
def _block(x, out, start, m, code, regs, bounds):
    """One block of values through every row; 1 on a miss (NaN or out of range at the integer
    cast, a division by zero), else 0."""
    for i in range(m):
        regs[0, i] = x[start + i]
    for row in range(code.shape[0]):
        op, d, a, b, f32 = code[row]
        src, dst = regs[a], regs[d]
        if op == _TO_INT:
            low, high = bounds[0], bounds[1]
            outside = 0
            for i in range(m):
                outside += not (low <= src[i] <= high)  # NaN too
            if outside:
                return 1
            for i in range(m):
                out[start + i] = np.int64(src[i])  # in range: truncation toward zero
        elif op > _MIN:
            _unary(op, src, dst, m)
        else:
            if op == _DIV:
                zeros = 0
                for i in range(m):
                    zeros += regs[b, i] == 0
                if zeros:
                    return 1  # the sign of a zero would decide the infinity
            _binary(op, src, regs[b], dst, m)
            if f32:
                for i in range(m):
                    dst[i] = np.float32(dst[i])
    return 0


@numba.njit(cache=True, parallel=True)
def _run(x, out, code, constants, registers, bounds, block, workers):
    n = x.size
    blocks = (n + block - 1) // block
    missed = 0
    # Each worker's registers are allocated and the constants' filled once, not per block.
    for w in numba.prange(workers):
        regs = np.empty((registers, block), np.float64)
        for j in range(constants.shape[1]):
            regs[np.int64(constants[0, j])] = constants[1, j]
        for k in range(w, blocks, workers):
            start = k * block
            missed += _block(x, out, start, min(block, n - start), code, regs, bounds)
    return missed
