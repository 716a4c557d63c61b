"""Decode once, replay many: a register program run on a whole batch of memory images.

:class:`Program` feeds a sequence of register programs (one per hardware operation, e.g. a
``.dla`` artifact's) through a register file once; at each launch :mod:`dlakit.sim.decode`
turns the registers into a descriptor. :meth:`Program.run` then executes the descriptors on a
:class:`~dlakit.sim.batch.BatchedMemory`, every image of the batch in the same tensor
operations, without touching a register. An operation the decoder does not cover is kept as its
register snapshot and runs the unit models (the definition), one image after another.

:func:`immediate` is the same decoder as a :class:`~dlakit.sim.nvdla.Nvdla` engine: each
operation is decoded and run the moment it launches (how ``dlakit trace`` runs the official
traces through the fast path).

The fast path runs convolutions as float GEMM-based ``conv2d`` (sums of INT8 products are
integers; the decoder picks float32 when the weights bound every partial sum below 2**24, else
float64), grouped where the weights are block diagonal (the compiler's depthwise blocks), with
NNPACK and cuDNN (which may pick Winograd or FFT algorithms) switched off; then the fused SDP
chain writes INT8 straight into the destination surface.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlakit.errors import DlakitError
from dlakit.sim import pdp
from dlakit.sim.arith import saturate, shift_right_round
from dlakit.sim.batch import BatchedMemory
from dlakit.sim.decode import (
    ConvOp,
    Cube,
    Decoder,
    Descriptor,
    PdpOp,
    Pool,
    SdpOp,
    pack_weights_for_lanes,
)
from dlakit.sim.gemm import exact_float_matmul
from dlakit.sim.lut import LutTables
from dlakit.sim.memory import Memory
from dlakit.sim.nvdla import Launch, Nvdla
from dlakit.sim.sdp_fused import concat_chains, numba_kernels, run_chain

_FAR = float(1 << 40)  # beyond any INT8 value: padded taps never win a max or a min
# Largest float32 accumulator block one conv2d call produces (bytes), so big batches stay bounded.
_CHUNK_BYTES = {"cpu": 2 << 20, "cuda": 2 << 30}


@dataclass
class Fallback:
    """An operation the decoder does not cover: its registers and LUTs at launch."""

    launch: Launch
    registers: dict[str, dict[str, int]]
    luts: dict[str, LutTables]
    reason: str = ""  # why the decoder does not cover it

    @classmethod
    def capture(cls, nv: Nvdla, launch: Launch, reason: str = "") -> Fallback:
        values = nv.regs.values
        registers = {unit: dict(values[(unit, launch.group(unit))]) for unit in nv.regmap.registers}
        luts = {}
        for name, tables in nv.luts.items():
            copy = LutTables()
            copy.le, copy.lo = list(tables.le), list(tables.lo)
            luts[name] = copy
        return cls(launch, registers, luts, reason)


Step = Descriptor | Fallback
# The precision field of each kind of operation the decoder reads first: it covers INT8 only.
_PRECISION_FIELD = {
    "conv": ("CDMA", "D_MISC_CFG", "IN_PRECISION"),
    "sdp": ("SDP", "D_DATA_FORMAT", "PROC_PRECISION"),
    "pdp": ("PDP", "D_DATA_FORMAT", "INPUT_DATA"),
}


def _not_decoded(kind: str, views) -> str:
    """Why the decoder left an operation to the unit models (the definition)."""
    if kind in _PRECISION_FIELD:
        unit, reg, name = _PRECISION_FIELD[kind]
        precision = views[unit].enum(reg, name)
        if precision != "INT8":
            return f"{precision} data path: the fast decoder covers INT8 only"
    return f"{kind}: outside the fast decoder's subset (sim/decode.py)"


class Program:
    """Register programs decoded once for one NVDLA configuration, replayable on any batch.

    ``memory`` holds what the decoder may read (weights, operand tables) in shared regions;
    each program in ``programs`` is one operation's CSB writes and must launch exactly one
    operation (``names`` name them in errors).
    """

    def __init__(
        self,
        target: str,
        memory: BatchedMemory,
        programs: Sequence[Sequence[tuple[int, int]]],
        names: Sequence[str] | None = None,
        decode: bool = True,
        layers: Sequence[str] | None = None,
    ) -> None:
        """``decode=False`` keeps every operation on the unit models (the definition).

        ``layers`` (one per program) lets consecutive operations of one layer that split it by
        output channels or channel blocks (CBUF tiles, a grouped layer's blocks) run fused as one
        descriptor, where none reads what another writes.
        """
        self.steps: list[Step] = []
        self._decode = decode
        nv = Nvdla(target, memory.device, memory=Memory(memory.device), engine=self._record)
        self.target = target
        self.atom = nv.atom
        self._decoder = Decoder(memory, nv.atom, nv.config.atomic_c, nv.config.atomic_k, True)
        self._scratch: Nvdla | None = None
        for index, writes in enumerate(programs):
            before = len(self.steps)
            for address, value in writes:
                nv.write(address, value)
            if len(self.steps) != before + 1:
                name = names[index] if names else f"#{index}"
                raise DlakitError(
                    f"hardware operation {name} launched {len(self.steps) - before} operations, "
                    "not one"
                )
        # Step i covers operations spans[i][0] .. spans[i][1] - 1.
        self.spans = [(i, i + 1) for i in range(len(self.steps))]
        if layers is not None:
            self.steps, self.spans = _fuse(self.steps, list(layers), self.atom)

    def _record(self, nv: Nvdla, launch: Launch) -> None:
        step = None
        reason = "decode=False: every operation runs the unit models"
        if self._decode:
            views = {unit: nv.view(unit, launch.group(unit)) for unit in nv.regmap.registers}
            step = self._decoder.decode(launch.kind, views, launch.pdp_on_the_fly)
            reason = _not_decoded(launch.kind, views)
        self.steps.append(step if step is not None else Fallback.capture(nv, launch, reason))

    @property
    def definition_reasons(self) -> dict[str, int]:
        """Why operations run the unit models instead of the fast path: reason -> count."""
        found: dict[str, int] = {}
        for step, (lo, hi) in zip(self.steps, self.spans, strict=True):
            if isinstance(step, Fallback):
                found[step.reason] = found.get(step.reason, 0) + hi - lo
        return found

    @property
    def decoded(self) -> int:
        """How many operations run on the fast path (the others run the unit models)."""
        return sum(not isinstance(s, Fallback) for s in self.steps)

    @property
    def operations(self) -> int:
        return self.spans[-1][1] if self.spans else 0

    def run(self, memory: BatchedMemory, first: int = 0, last: int | None = None) -> None:
        """Execute operations ``first`` .. ``last - 1`` (all by default) on every image of
        ``memory``; with fused steps, ``first`` and ``last`` must be layer boundaries."""
        last = self.operations if last is None else last
        for step, (lo, hi) in zip(self.steps, self.spans, strict=True):
            if hi <= first or lo >= last:
                continue
            if lo < first or hi > last:
                raise DlakitError(f"operations {first}..{last} split a fused step ({lo}..{hi})")
            if isinstance(step, Fallback):
                self._definition(step, memory)
            else:
                execute(step, memory, self.atom)

    def _definition(self, step: Fallback, memory: BatchedMemory) -> None:
        if self._scratch is None:
            self._scratch = Nvdla(self.target, memory.device)
        nv = self._scratch
        for unit, values in step.registers.items():
            nv.regs.values[(unit, step.launch.group(unit))].update(values)
        nv.luts = step.luts
        for index in range(memory.batch):
            nv.memory = memory.image(index)
            nv.execute(step.launch)


def immediate(nv: Nvdla, launch: Launch) -> None:
    """An :class:`Nvdla` engine: decode the operation now and run it on ``nv.memory``, or run
    the unit models where the decoder does not cover it."""
    memory = BatchedMemory.wrap(nv.memory)
    views = {unit: nv.view(unit, launch.group(unit)) for unit in nv.regmap.registers}
    decoder = Decoder(memory, nv.atom, nv.config.atomic_c, nv.config.atomic_k, False)
    step = decoder.decode(launch.kind, views, launch.pdp_on_the_fly)
    if step is None:
        nv.execute(launch)
    else:
        execute(step, memory, nv.atom)


# ---------------------------------------------------------------- fusing descriptors


def _fuse(
    steps: list[Step], layers: list[str], atom: int
) -> tuple[list[Step], list[tuple[int, int]]]:
    """Consecutive convolutions of one layer merged greedily where :func:`fuse_convs` can."""
    fused: list[Step] = []
    spans: list[tuple[int, int]] = []
    group: list[ConvOp] = []
    start = 0

    def flush(end: int) -> None:
        if group:
            fused.append(group[0] if len(group) == 1 else _must(fuse_convs(group, atom)))
            spans.append((start, end))

    for index, step in enumerate(steps):
        if (
            group
            and isinstance(step, ConvOp)
            and layers[index] == layers[start]
            and fuse_convs([*group, step], atom) is not None
        ):
            group.append(step)
            continue
        flush(index)
        group = []
        start = index
        if isinstance(step, ConvOp):
            group = [step]
        else:
            fused.append(step)
            spans.append((index, index + 1))
    flush(len(steps))
    return fused, spans


def _must(op: ConvOp | None) -> ConvOp:
    assert op is not None
    return op


def _side_by_side(cubes: list[Cube], atom: int) -> Cube | None:
    """The cube the ``cubes`` form when each starts where the previous one's surfaces end."""
    first = cubes[0]
    offset = 0
    for cube in cubes:
        if (cube.line, cube.surf, cube.height, cube.width) != (
            first.line,
            first.surf,
            first.height,
            first.width,
        ) or cube.base != first.base + offset:
            return None
        offset += cube.channels // atom * first.surf
    channels = sum(c.channels for c in cubes)
    return Cube(first.base, channels, first.height, first.width, first.line, first.surf)


def _extent(cube: Cube, atom: int) -> tuple[int, int]:
    shape, strides = cube.layout(atom)
    return cube.base, cube.base + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1


def fuse_convs(ops: list[ConvOp], atom: int) -> ConvOp | None:
    """One convolution doing what ``ops`` do, or None. They must share geometry and SDP chain
    structure and write side-by-side output surfaces; either they read the same input (a layer
    split by output channels) or side-by-side inputs with the same group shape (the channel
    blocks of a grouped layer). No operation may read what another writes."""
    first = ops[0]
    if any(
        op.pool is not None
        or (op.stride, op.dilation, op.pads, op.pad_value, op.out_hw, op.sdp_hw)
        != (first.stride, first.dilation, first.pads, first.pad_value, first.out_hw, first.sdp_hw)
        or op.weights.dtype != first.weights.dtype
        or op.weights.shape[2:] != first.weights.shape[2:]
        or (op.ew is None) != (first.ew is None)
        for op in ops
    ):
        return None
    dst = _side_by_side([op.dst for op in ops if op.dst is not None], atom)
    ew = _side_by_side([op.ew for op in ops if op.ew is not None], atom) if first.ew else None
    if dst is None or (first.ew is not None and ew is None):
        return None
    chain = concat_chains([op.chain for op in ops])
    if chain is None:
        return None
    if all(op.src == first.src and op.groups == 1 for op in ops):
        src, in_channels, groups = first.src, first.in_channels, 1
    else:
        shapes = {(op.weights.shape[0] // op.groups, op.weights.shape[1]) for op in ops}
        src = _side_by_side([op.src for op in ops], atom)
        if src is None or len(shapes) != 1:
            return None
        if any(op.in_channels != op.src.channels for op in ops[:-1]):
            return None
        in_channels = sum(op.in_channels for op in ops)
        groups = sum(op.groups for op in ops)
    reads = [_extent(src, atom)] + ([_extent(ew, atom)] if ew is not None else [])
    lo, hi = _extent(dst, atom)
    if any(a < hi and lo < b for a, b in reads):
        return None
    weights = torch.cat([op.weights for op in ops]).contiguous(memory_format=torch.channels_last)
    lanes, packed = pack_weights_for_lanes(weights, groups, src.channels, atom)
    return ConvOp(
        src=src,
        in_channels=in_channels,
        weights=weights,
        groups=groups,
        stride=first.stride,
        dilation=first.dilation,
        pads=first.pads,
        pad_value=first.pad_value,
        out_hw=first.out_hw,
        sdp_hw=first.sdp_hw,
        chain=chain,
        ew=ew,
        dst=dst,
        pool=None,
        lanes=lanes,
        packed=packed,
    )


# ---------------------------------------------------------------- executing descriptors


def execute(op: Descriptor, memory: BatchedMemory, atom: int) -> None:
    if isinstance(op, ConvOp):
        _conv(op, memory, atom)
    elif isinstance(op, SdpOp):
        _sdp(op, memory, atom)
    else:
        _pdp(op, memory, atom)


def _view(memory: BatchedMemory, cube: Cube, atom: int, writable: bool = False) -> torch.Tensor:
    view = memory.view(cube.base, *cube.layout(atom), writable=writable)
    if view is None:  # the decoder checked every surface against this memory's regions
        raise DlakitError(f"surface at 0x{cube.base:x} is outside the batch's memory regions")
    return view.view(torch.int8)


def _planar(cube5: torch.Tensor) -> torch.Tensor:
    """[B, C/a, H, W, a] -> [B, C, H, W] (a copy)."""
    b, blocks, h, w, a = cube5.shape
    return cube5.permute(0, 1, 4, 2, 3).reshape(b, blocks * a, h, w)


def _atoms(planar: torch.Tensor, atom: int) -> torch.Tensor:
    """[B, C, H, W] -> the view [B, C/a, H, W, a] (C a multiple of the atom)."""
    b, c, h, w = planar.shape
    return planar.view(b, c // atom, atom, h, w).permute(0, 1, 3, 4, 2)


@contextlib.contextmanager
def _exact_convolution(device: torch.device) -> Iterator[None]:
    """conv2d with direct or GEMM algorithms only: no NNPACK, no cuDNN (Winograd, FFT)."""
    if device.type == "cuda":
        exact_float_matmul()
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        with torch.backends.nnpack.flags(enabled=False):
            yield


def _chunks(batch: int, per_image: int, device: torch.device) -> Iterator[slice]:
    step = max(1, _CHUNK_BYTES.get(device.type, _CHUNK_BYTES["cpu"]) // max(per_image, 1))
    for start in range(0, batch, step):
        yield slice(start, min(start + step, batch))


def _stage(
    src5: torch.Tensor,
    channels: int,
    pads: tuple[int, int, int, int],
    value: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The first ``channels`` channels of an INT8 cube [B, C/a, H, W, a] as a padded
    ``dtype`` NHWC tensor [B, H', W', channels]: one pass over the input."""
    b, _, h, w, a = src5.shape
    left, right, top, bottom = pads
    x = torch.empty((b, h + top + bottom, w + left + right, channels), dtype=dtype,
                    device=src5.device)  # fmt: skip
    kernels = numba_kernels()
    if kernels is not None and x.device.type == "cpu":
        kernels.stage(src5.numpy(), x.numpy(), top, left, value, channels)
        return x
    for border in (x[:, :top], x[:, top + h :], x[:, top : top + h, :left],
                   x[:, top : top + h, left + w :]):  # fmt: skip
        if border.numel():
            border.fill_(value)
    inner = x[:, top : top + h, left : left + w]
    full = channels // a
    if full:
        inner[..., : full * a].view(b, h, w, full, a).copy_(src5[:, :full].permute(0, 2, 3, 1, 4))
    if channels % a:
        inner[..., full * a :].copy_(src5[:, full, :, :, : channels % a])
    return x


def _convolve(x: torch.Tensor, op: ConvOp) -> torch.Tensor:
    """Exact sums of the staged NHWC input: [B, OH, OW, K] (NHWC memory).

    A dense convolution is one GEMM over the patches of the whole batch (conv2d without cuDNN
    loops over the images on CUDA); any summation order is exact in the weights' dtype."""
    b, c = x.shape[0], x.shape[3]
    kp, _, r, s = op.weights.shape
    if op.groups == 1:
        oh, ow = op.out_hw
        if (r, s, op.stride) == (1, 1, (1, 1)):
            patches = x[:, :oh, :ow].reshape(-1, c)
        else:
            sb, sh, sw, _ = x.stride()
            (sy, sx), (dy, dx) = op.stride, op.dilation
            view = x.as_strided((b, oh, ow, r, s, c), (sb, sy * sh, sx * sw, dy * sh, dx * sw, 1))
            patches = view.reshape(b * oh * ow, r * s * c)
        # channels-last OIHW weights: [K, R, S, C] is a view
        with _exact_convolution(x.device):
            acc = patches @ op.weights.permute(0, 2, 3, 1).reshape(kp, r * s * c).t()
        return acc.reshape(b, oh, ow, kp)
    with _exact_convolution(x.device):
        acc = F.conv2d(x.permute(0, 3, 1, 2), op.weights, None, op.stride, 0, op.dilation,
                       op.groups)  # fmt: skip
    return acc.permute(0, 2, 3, 1)


def _conv(op: ConvOp, memory: BatchedMemory, atom: int) -> None:
    src = _view(memory, op.src, atom)
    ew = _view(memory, op.ew, atom) if op.ew is not None else None
    dst = _view(memory, op.dst, atom, writable=True) if op.dst is not None else None
    kernels = numba_kernels()
    if kernels is not None and memory.device.type == "cpu" and op.packed is not None:
        _conv_compiled(kernels, op, src, ew, dst, memory, atom)
        return
    kp = op.weights.shape[0]
    sh, sw = op.sdp_hw
    r, s = op.weights.shape[2:]
    columns = kp + (op.in_channels * r * s if op.groups == 1 else 0)  # sums and patches
    per_image = columns * op.out_hw[0] * op.out_hw[1] * op.weights.element_size()
    for part in _chunks(memory.batch, per_image, memory.device):
        x = _stage(src[part], op.in_channels, op.pads, op.pad_value, op.weights.dtype)
        acc = _convolve(x, op)[:, :sh, :sw]
        acc5 = acc.unflatten(3, (kp // atom, atom)).permute(0, 3, 1, 2, 4)
        ew_part = ew[part] if ew is not None else None
        if op.pool is None:
            assert dst is not None
            run_chain(acc5, dst[part], op.chain, ew_part)
        else:
            out = torch.empty(acc5.shape, dtype=torch.int8, device=acc5.device)
            run_chain(acc5, out, op.chain, ew_part)
            _pool_into(out, _view(memory, op.pool.dst, atom, writable=True)[part], op.pool, atom)


def _conv_compiled(kernels, op: ConvOp, src, ew, dst, memory: BatchedMemory, atom: int) -> None:
    """The convolution and its chain in one compiled pass, integer sums, NVDLA layout in and
    out (CPU)."""
    kp = op.weights.shape[0]
    sh, sw = op.sdp_hw
    out = dst
    if op.pool is not None:
        out = torch.empty((memory.batch, kp // atom, sh, sw, atom), dtype=torch.int8)
    assert out is not None
    left, _, top, _ = op.pads
    geo = np.array([*op.stride, *op.dilation, top, left, op.pad_value, op.groups], dtype=np.int64)
    cfg, chan = op.chain.packed()
    dummy = np.zeros((1, 1, 1, 1, 1), dtype=np.int8)
    run = kernels.conv_depthwise if op.lanes == "depthwise" else kernels.conv_dense
    run(src.numpy(), op.packed, out.numpy(), dummy if ew is None else ew.numpy(), geo, cfg, chan)
    if op.pool is not None:
        _pool_into(out, _view(memory, op.pool.dst, atom, writable=True), op.pool, atom)


def _pool_into(x5: torch.Tensor, dst5: torch.Tensor, p: Pool, atom: int) -> None:
    """PDP of the INT8 cube ``x5`` [B, C/a, H, W, a] into the surface view ``dst5``."""
    kernels = numba_kernels()
    if kernels is None or x5.device.type != "cpu":
        dst5.copy_(_atoms(pool_cube(_planar(x5), p).to(torch.int8), atom))
        return
    left, _, top, _ = p.pads
    method = {"MAX": 0, "MIN": 1, "AVERAGE": 2}[p.method]
    geo = np.array([method, *p.kernel, *p.stride, top, left], dtype=np.int64)
    pads = pdp._padding_sums(tuple(x5.shape[2:4]), p.kernel, p.stride, (left, top), p.out_hw,
                             p.pad_table, x5.device)  # fmt: skip
    recip = np.array(p.recip, dtype=np.int64)
    kernels.pool(x5.numpy(), dst5.numpy(), geo, np.ascontiguousarray(pads.numpy()), recip)


def _sdp(op: SdpOp, memory: BatchedMemory, atom: int) -> None:
    src = _view(memory, op.src, atom)
    ew = _view(memory, op.ew, atom) if op.ew is not None else None
    if op.pool is None:
        assert op.dst is not None
        run_chain(src, _view(memory, op.dst, atom, writable=True), op.chain, ew)
    else:
        out = torch.empty(src.shape, dtype=torch.int8, device=src.device)
        run_chain(src, out, op.chain, ew)
        _pool_into(out, _view(memory, op.pool.dst, atom, writable=True), op.pool, atom)


def _pdp(op: PdpOp, memory: BatchedMemory, atom: int) -> None:
    src = _view(memory, op.src, atom)
    _pool_into(src, _view(memory, op.pool.dst, atom, writable=True), op.pool, atom)


def pool_cube(x: torch.Tensor, p: Pool) -> torch.Tensor:
    """PDP on INT8 cubes [B, C, H, W] -> int64 [B, C, OH, OW], as :func:`dlakit.sim.pdp.pool`:
    float32 holds every INT8 value and window sum exactly."""
    left, right, top, bottom = p.pads
    oh, ow = p.out_hw
    xf = x.to(torch.float32)
    if p.method in ("MAX", "MIN"):
        signed = xf if p.method == "MAX" else -xf
        padded = F.pad(signed, (left, right, top, bottom), value=-_FAR)
        y = F.max_pool2d(padded, p.kernel, p.stride)[:, :, :oh, :ow]
        return (y if p.method == "MAX" else -y).to(torch.int64)
    if left or right or top or bottom:
        xf = F.pad(xf, (left, right, top, bottom))
    window = F.avg_pool2d(xf, p.kernel, p.stride, divisor_override=1)[:, :, :oh, :ow]
    pads = pdp._padding_sums(
        tuple(x.shape[2:]), p.kernel, p.stride, (left, top), p.out_hw, p.pad_table, x.device
    )
    total = window.to(torch.int64) + pads
    if total.device.type == "cpu":
        # The pooled cube is small: numpy, without a thread pool to wake for every step.
        return torch.from_numpy(_reciprocal_stages(total.numpy(), p.recip))
    t = shift_right_round(total * p.recip[0], 16, 64, 64)
    return saturate(shift_right_round(t * p.recip[1], 16, 64, 64), 8)


def _reciprocal_stages(total: np.ndarray, recip: tuple[int, int]) -> np.ndarray:
    """``sat8(rnd(rnd(total * recip_w / 2**16) * recip_h / 2**16))``, round half away from zero,
    as ``shift_right_round(..., 16, 64, 64)`` twice (no saturation below 64 bits)."""

    def rnd(v: np.ndarray) -> np.ndarray:
        mag = (np.abs(v) + (1 << 15)) >> 16
        return np.where(v < 0, -mag, mag)

    return np.clip(rnd(rnd(total * recip[0]) * recip[1]), -128, 127)
