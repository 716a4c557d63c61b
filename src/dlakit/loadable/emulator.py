"""The runtime's CPU emulator for EMU1 tasks (nvdla/sw ``umd/core/runtime/Emulator.cpp``, the
version of the regression loadables: commit 537e0e8^).

A task's address-list entry 0 holds an ``emu_network_desc``; its operation and buffer lists hold
one operation (that emulator executes operation 0 only). POWER: ``y = (shift + scale * x) **
power`` per element; SOFTMAX: over the channels of a 1x1xC cube. Data is FP16 in the feature
layout (16 channels per 32-byte atom). Arithmetic is float32 as in the C++ (``powf``, ``expf``,
float sums in channel order); results go back to FP16 through ``half.h`` 1.11's conversion,
which rounds to nearest with ties away from zero.
"""

from __future__ import annotations

import math

import numpy as np

from dlakit.errors import DlakitError
from dlakit.loadable.descriptors import Record, decode, layout
from dlakit.loadable.half import float_to_half, half_to_float
from dlakit.loadable.reader import Loadable, TaskEntry
from dlakit.loadable.runtime import Placement, TaskAddress

EMU_POWER, EMU_SOFTMAX = 0, 1
FORMAT_FF16 = 2  # NVDLA_FF16_F_FORMAT: the only format that emulator reads


def _offsets(buf: Record, where: str) -> np.ndarray:
    """Byte offsets (c, h, w order) of an FF16 buffer's elements (``getAddrOffset``)."""
    if int(buf.format) != FORMAT_FF16:
        raise DlakitError(f"{where}: buffer format {buf.format} is not FF16 ({FORMAT_FF16})")
    c = np.arange(int(buf.channel))[:, None, None]
    h = np.arange(int(buf.height))[None, :, None]
    w = np.arange(int(buf.width))[None, None, :]
    return (c // 16) * int(buf.surf_stride) + h * int(buf.line_stride) + w * 32 + (c % 16) * 2


def run_emu_task(ld: Loadable, placement: Placement, task: TaskEntry, where: str) -> int:
    """Execute one EMU1 task; returns the number of operations it ran (0 or 1)."""
    addrs = placement.task_addresses(task)
    if not addrs:
        raise DlakitError(f"{where}: an EMU task with an empty address list")
    mem = placement.memory

    def read_struct(name: str, index: int) -> Record:
        a = _address(addrs, index, where)
        size = layout(name).size
        if a.iova + size > a.limit:
            raise DlakitError(f"{where}: {name} at address index {index} runs past its memory")
        return decode(name, mem.read(a.iova, size))

    net = read_struct("emu_network_desc", 0)
    if int(net.num_operations) == 0:
        return 0
    common = read_struct("emu_common_op_desc", int(net.operation_desc_index))
    bufs = read_struct("emu_buffer_descs", int(net.operation_buffer_desc_index))
    src, dst = bufs.src_data, bufs.dst_data
    s_addr = _address(addrs, int(src.address_index), f"{where} source")
    d_addr = _address(addrs, int(dst.address_index), f"{where} destination")
    if int(common.op_type) == EMU_POWER:
        op = read_struct("emu_power_op_desc", int(net.operation_desc_index))
        s_off, d_off = _offsets(src, f"{where} source"), _offsets(dst, f"{where} destination")
        x = half_to_float(_gather(mem, s_addr, s_off, where))
        with np.errstate(all="ignore"):
            base = np.float32(op.shift) + np.float32(op.scale) * x
            y = np.power(base, np.float32(op.power), dtype=np.float32)
        _scatter(
            mem,
            d_addr,
            d_off[: s_off.shape[0], : s_off.shape[1], : s_off.shape[2]],
            float_to_half(y),
        )
    elif int(common.op_type) == EMU_SOFTMAX:
        n = int(src.channel)
        x = half_to_float(_gather(mem, s_addr, np.arange(n) * 2, where))
        maxval = np.float32(-np.inf)
        for v in x:
            if v > maxval:
                maxval = v
        exps = np.array([_expf(float(v - maxval)) for v in x], dtype=np.float32)
        total = np.float32(0.0)
        for e in exps:
            total = np.float32(total + e)
        _scatter(mem, d_addr, np.arange(n) * 2, float_to_half(exps / total))
    else:
        raise DlakitError(f"{where}: EMU operation type {common.op_type} is unknown")
    return 1


def _expf(x: float) -> np.float32:
    """``expf``: exp rounded to float32 (glibc's expf is correctly rounded in practice)."""
    try:
        return np.float32(math.exp(x))
    except OverflowError:
        return np.float32(np.inf)


def _address(addrs: list[TaskAddress], index: int, where: str) -> TaskAddress:
    if not 0 <= index < len(addrs):
        raise DlakitError(
            f"{where}: address index {index} is not in the task's address list "
            f"({len(addrs)} entries)"
        )
    return addrs[index]


def _gather(mem: object, a: TaskAddress, offsets: np.ndarray, where: str) -> np.ndarray:
    hi = int(offsets.max()) + 2 if offsets.size else 0
    if a.iova + hi > a.limit:
        raise DlakitError(f"{where}: the buffer runs past the end of memory {a.mem_id}")
    raw = np.frombuffer(mem.read(a.iova, hi), dtype=np.uint8)  # type: ignore[attr-defined]
    lo = raw[offsets].astype(np.uint16)
    return lo | (raw[offsets + 1].astype(np.uint16) << 8)


def _scatter(mem: object, a: TaskAddress, offsets: np.ndarray, values: np.ndarray) -> None:
    hi = int(offsets.max()) + 2 if offsets.size else 0
    if a.iova + hi > a.limit:
        raise DlakitError(f"EMU destination runs past the end of memory {a.mem_id}")
    raw = np.frombuffer(mem.read(a.iova, hi), dtype=np.uint8).copy()  # type: ignore[attr-defined]
    v = values.astype(np.uint16).reshape(offsets.shape)
    raw[offsets] = (v & 0xFF).astype(np.uint8)
    raw[offsets + 1] = (v >> 8).astype(np.uint8)
    mem.write(a.iova, raw.tobytes())  # type: ignore[attr-defined]
