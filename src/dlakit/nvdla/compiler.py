"""Compile a quantized graph into hardware operations, fallback segments and a memory allocation.

Input: a :class:`~dlakit.lower.qgraph.QGraph` (every register value already explicit). Output:
a :class:`Compiled` model that :mod:`dlakit.nvdla.artifact` writes and :mod:`dlakit.run.runner`
executes. Per layer:

* :class:`QConv` -> one direct-convolution operation per CBUF tile (:mod:`.tiling`) with its
  SDP chain on the fly (bias, BatchNorm, ReLU/clip, PReLU, EW add). Grouped convolutions run in
  channel blocks: each block holds as many whole groups as make its input and output channels
  start on a surface, with block-diagonal (zero) kernels inside the block, so a depthwise layer
  costs ``memory_atomic`` times its MACs, as on the hardware.
* :class:`QSdp` -> an SDP pass from memory; :class:`QPool` -> a PDP pass from memory;
  :class:`QLrn` -> a CDP pass from memory (its LUT written before it).
* :class:`QConcat` -> no operation: its inputs are placed in the output surface (a fallback op when
  an input other than the last does not end on a surface: its padding would overlap the next).
  Consecutive channel views that cover one tensor in order (a C2f block's Split outputs) place
  that tensor instead.
* :class:`QView` -> no operation where the channel range starts on a surface (it is a surface at
  an offset of its parent) or where only concatenations placing its parent read it; else a copy:
  a 1x1 convolution with 0/1 kernels over the surfaces holding the range (exact: one tap of
  weight 1, no rounding anywhere on the way).
* :class:`QContract` -> a RUBIK contract (a deconvolution's de-interleave after its phase
  convolution).
* :class:`QReshape` -> no operation when the feature layout does not change, else a fallback op.
* :class:`QQuantize`, :class:`QDequantize`, :class:`QFloat`, :class:`QToFp16` -> fallback
  (GPU/CPU) segments.

FP16 layers (``precision="fp16"``, nv_full) take the same operations in FP16 mode: FP16 tensors
are surfaces of ``memory_atomic // 2`` channels per atom, weights 2-byte elements in kernel groups
of the 16-bit atomic K, SDP operands FP16 numbers (:mod:`dlakit.lower.lowering_fp16`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from dlakit.errors import DlakitError
from dlakit.hw import load_register_map
from dlakit.lower.lint import lint
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
    QToFp16,
    QView,
    SdpChain,
)
from dlakit.nvdla import program
from dlakit.nvdla.allocate import Buffer, align, place
from dlakit.nvdla.fallback import writes_fp16
from dlakit.nvdla.images import pack_operands, pack_weights
from dlakit.nvdla.surface import (
    Surface,
    channel_view,
    cube_of,
    packed_bytes,
    packed_surface,
    row_view,
)
from dlakit.nvdla.tiling import ConvShape, split_tiles
from dlakit.support.verdict import Engine
from dlakit.targets import NvdlaSpec, Target

ACT_BASE = 0x8000_0000  # activations first, constants after them
_DLA_TYPES = (QConv, QSdp, QPool, QConcat, QLrn, QView, QContract)
# Floating-point DLA layers (FP16) and their conversions run in the fallback segments, in FP32,
# until the compiler emits FP16 hardware layers (the simulator's nv_full FP16 conv/SDP/PDP datapath
# is sim/fp16*.py; ConvSpec.precision programs it); compile reports them (stats "fp16_on_fallback").
FLOAT_ON_DLA = (QFloat, QQuantize, QDequantize, QToFp16)


def element_bytes(precision: str) -> int:
    """Bytes of one element of a DLA tensor of this precision (FP16 surfaces: 2)."""
    return 2 if precision == "fp16" else 1


@dataclass
class HwOp:
    """One hardware operation and the register writes that launch it."""

    name: str
    kind: str  # conv | sdp | pdp | cdp | rubik
    layer: str
    onnx_nodes: list[str]
    inputs: list[str]
    outputs: list[str]
    info: dict[str, Any]  # shapes and tiling, for inspect
    writes: list[program.Write]


@dataclass
class Segment:
    kind: Engine
    name: str
    layers: list[str]
    inputs: list[str]
    outputs: list[str]
    ops: list[HwOp] = field(default_factory=list)
    model: onnx.ModelProto | None = None


@dataclass
class TensorInfo:
    shape: tuple[int, ...]
    precision: str
    scale: float | None
    surface: Surface | None = None


@dataclass
class Compiled:
    model: str
    target: Target
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, TensorInfo]
    segments: list[Segment]
    constants: bytes
    const_base: int
    act_base: int
    act_bytes: int
    stats: dict[str, Any]
    preprocess: str | None = None  # the model's input preset, when known (zoo models)
    # Tensor -> the tensor whose buffer holds it (itself, or the concatenation/reshape it is a
    # view of), for writers that give buffers their own memory (loadables). Not in the .dla.
    roots: dict[str, str] = field(default_factory=dict)

    @property
    def peak_bytes(self) -> int:
        return len(self.constants) + self.act_bytes


class _Constants:
    def __init__(self, base: int) -> None:
        self.base = base
        self.data = bytearray()
        self.index: dict[bytes, int] = {}

    def add(self, blob: bytes) -> int:
        if blob in self.index:
            return self.index[blob]
        offset = align(len(self.data), 128)
        self.data.extend(b"\0" * (offset - len(self.data)))
        self.data.extend(blob)
        self.index[blob] = self.base + offset
        return self.base + offset


def _is_layout_noop(layer: QReshape, graph: QGraph) -> bool:
    a, b = graph.tensors[layer.inputs[0]], graph.tensors[layer.outputs[0]]
    if a.precision not in ("int8", "fp16") or b.precision != a.precision or a.scale != b.scale:
        return False
    try:
        return cube_of(a.shape, a.name) == cube_of(b.shape, b.name)
    except DlakitError:
        return False


def dla_views(graph: QGraph) -> dict[str, QView]:
    """Output tensor -> the DLA channel view that makes it."""
    return {x.outputs[0]: x for x in graph.layers if isinstance(x, QView) and x.engine == "dla"}


def covers(graph: QGraph, group: list[str], views: dict[str, QView]) -> bool:
    """Whether the views ``group`` are, in order, every channel of one parent tensor."""
    parent = views[group[0]].inputs[0]
    end = 0
    for name in group:
        v = views.get(name)
        if v is None or v.inputs[0] != parent or v.start != end:
            return False
        end += v.channels
    return end == cube_of(graph.tensors[parent].shape, parent)[0]


def concat_groups(graph: QGraph, layer: QConcat, views: dict[str, QView]) -> list[list[str]]:
    """A concatenation's inputs grouped: consecutive views covering one parent (not a graph
    input) form one group, placed as that parent; every other input is a group of its own."""
    groups: list[list[str]] = []
    i = 0
    names = layer.inputs
    while i < len(names):
        j = i + 1
        v = views.get(names[i])
        if v is not None and v.start == 0 and v.inputs[0] not in graph.inputs:
            for k in range(i + 1, len(names) + 1):
                if covers(graph, names[i:k], views):
                    j = k
                    break
        groups.append(list(names[i:j]))
        i = j
    return groups


def _concat_aligned(layer: QConcat, graph: QGraph, atom: int) -> bool:
    """Every input but the last must end on a surface, or its padding would overwrite the next
    (a group of views covering their parent counts as the parent)."""
    per_surface = atom // element_bytes(graph.tensors[layer.outputs[0]].precision)
    groups = concat_groups(graph, layer, dla_views(graph))
    return all(
        sum(cube_of(graph.tensors[n].shape, n)[0] for n in group) % per_surface == 0
        for group in groups[:-1]
    )


def _engine_of(layer: QLayer, graph: QGraph, atom: int) -> Engine:
    """The lowering's engine, after checking the compiler can place it there (the support
    verdicts carry these conditions as rules: concat.aligned, reshape.noop)."""
    if layer.engine == "dla" and isinstance(layer, FLOAT_ON_DLA):
        return "fallback"  # the compiler emits no FP16 hardware layers yet; listed in stats
    if layer.engine == "dla" and writes_fp16(layer):
        return "fallback"  # FP16 network outputs: emulated on the fallback; listed in stats
    if layer.engine == "dla":
        if isinstance(layer, QConcat) and not _concat_aligned(layer, graph, atom):
            raise RuntimeError(f"layer {layer.name}: a DLA concatenation with unaligned inputs")
        if isinstance(layer, QReshape) and not _is_layout_noop(layer, graph):
            raise RuntimeError(f"layer {layer.name}: a DLA reshape that changes the layout")
        if not isinstance(layer, (*_DLA_TYPES, QReshape)):
            raise RuntimeError(f"layer {layer.name}: {type(layer).__name__} cannot run on the DLA")
    return layer.engine


def layer_engines(graph: QGraph, cfg: NvdlaSpec) -> list[Engine]:
    """Per layer of ``graph``, where the compiler runs it: ``"dla"`` or ``"fallback"``."""
    return [_engine_of(layer, graph, cfg.memory_atomic) for layer in graph.layers]


def block_ranges(layer: QConv, atom: int) -> list[tuple[int, int, int, int, int]]:
    """(first input channel, channels, first kernel, kernels, groups) of each block: the
    fewest whole groups whose input and output channels start on a surface."""
    atom //= element_bytes(layer.precision)  # channels per surface
    k_total, cg = layer.weight.shape[:2]
    kg = k_total // layer.groups
    n = 1
    while n < layer.groups and ((n * cg) % atom or (n * kg) % atom):
        n += 1
    return [
        (b0 * cg, min(n, layer.groups - b0) * cg, b0 * kg, min(n, layer.groups - b0) * kg,
         min(n, layer.groups - b0))
        for b0 in range(0, layer.groups, n)
    ]  # fmt: skip


def conv_shape(layer: QConv, graph: QGraph, cin: int, kn: int) -> ConvShape:
    """The geometry of one channel block of ``layer`` (``cin`` channels, ``kn`` kernels)."""
    _, h, w = cube_of(graph.tensors[layer.inputs[0]].shape, layer.inputs[0])
    _, oh, ow = cube_of(graph.tensors[layer.outputs[0]].shape, layer.outputs[0])
    r, s = layer.weight.shape[2:]
    return ConvShape(cin, h, w, kn, r, s, layer.stride, layer.dilation, layer.pads, oh, ow)


def pools_on_the_fly(graph: QGraph, target: Target, engines: list[Engine]) -> dict[str, QPool]:
    """Convolution layer -> the pooling layer it feeds on the fly (SDP OUTPUT_DST=PDP).

    A convolution whose only reader is a pooling layer of the same DLA segment hands its result
    to PDP on the fly, unless CBUF splits it by rows (a pooling window would straddle two
    operations).
    """
    atom = _nvdla(target).memory_atomic
    users = graph.readers()
    fused: dict[str, QPool] = {}
    for i, layer in enumerate(graph.layers):
        if not isinstance(layer, QConv) or engines[i] != "dla":
            continue
        out = layer.outputs[0]
        readers = users.get(out, [])
        if len(readers) != 1 or out in graph.outputs:
            continue
        j = readers[0]
        pool = graph.layers[j]
        if not isinstance(pool, QPool) or any(e != "dla" for e in engines[i : j + 1]):
            continue
        try:
            rows_split = any(
                t.out_rows != conv_shape(layer, graph, cin, kn).out_h
                for _, cin, _, kn, _ in block_ranges(layer, atom)
                for t in split_tiles(
                    conv_shape(layer, graph, cin, kn),
                    target,
                    layer.name,
                    element_bytes(layer.precision),
                )
            )
        except DlakitError:
            continue  # does not fit CBUF at all: refused, with the reason, when its ops are made
        if not rows_split:
            fused[layer.name] = pool
    return fused


@dataclass
class Placement:
    """Where the compiler puts the DLA tensors that no operation of their own writes."""

    alias: dict[str, tuple[str, int]]  # tensor -> (parent tensor, channel offset)
    copies: set[str]  # QView layers that run as a copy operation
    unplaced: set[str]  # view outputs read only as part of a placed parent


def place_tensors(graph: QGraph, engines: list[Engine], atom: int) -> Placement:
    """Reshapes, concatenation inputs and channel views as surfaces of their parents, and the
    views that need a copy operation (also the performance model's rule for views)."""
    placement = Placement({}, set(), set())
    alias = placement.alias
    layers = [x for x, e in zip(graph.layers, engines, strict=True) if e == "dla"]
    views = dla_views(graph)
    in_run: dict[str, str] = {}  # view output -> the concatenation that places its parent
    for layer in layers:
        if isinstance(layer, QReshape):
            alias[layer.outputs[0]] = (layer.inputs[0], 0)
        elif isinstance(layer, QConcat):
            c0 = 0
            for group in concat_groups(graph, layer, views):
                placed = views[group[0]].inputs[0] if len(group) > 1 or (
                    group[0] in views and covers(graph, group, views)
                ) else group[0]  # fmt: skip
                if placed in alias or placed in graph.inputs:
                    raise DlakitError(
                        f"layer {layer.name}: input '{placed}' is already placed elsewhere; "
                        "a tensor can be placed in one concatenation only"
                    )
                alias[placed] = (layer.outputs[0], c0)
                c0 += cube_of(graph.tensors[placed].shape, placed)[0]
                if placed not in group:
                    in_run.update(dict.fromkeys(group, layer.name))
    readers = graph.readers()
    for out, view in views.items():
        others = [i for i in readers.get(out, []) if graph.layers[i].name != in_run.get(out)]
        parent_c = cube_of(graph.tensors[view.inputs[0]].shape, view.inputs[0])[0]
        on_surface = view.start % atom == 0 and (
            view.channels % atom == 0 or view.start + view.channels == parent_c
        )  # its padding channels are the parent's padding, or none
        if out in alias:
            placement.copies.add(view.name)  # placed in a concatenation as itself
        elif not others and out not in graph.outputs:
            placement.unplaced.add(out)
        elif on_surface:
            alias[out] = (view.inputs[0], view.start)
        else:
            placement.copies.add(view.name)
    return placement


def _nvdla(target: Target) -> NvdlaSpec:
    if target.nvdla is None:
        raise DlakitError(f"target {target.name} is not an open NVDLA configuration")
    return target.nvdla


class _Compiler:
    def __init__(self, graph: QGraph, target: Target) -> None:
        self.g = graph
        self.target = target
        self.cfg = cfg = _nvdla(target)
        self.regmap = load_register_map(cfg.hw_tree)
        self.engines = layer_engines(graph, cfg)
        self.alias: dict[str, tuple[str, int]] = {}  # tensor -> (parent tensor, channel offset)
        self.surfaces: dict[str, Surface] = {}
        self.consts = _Constants(ACT_BASE)
        self.tiling = {"layers": 0, "split_layers": 0, "operations": 0, "max_tiles": 0}
        self.fused: dict[str, QPool] = {}  # conv layer -> the pooling it feeds on the fly
        self.copies: set[str] = set()  # QView layers that run as a copy operation
        self.unplaced: set[str] = set()  # view outputs read only as part of a placed parent

    def bpe(self, tensor: str) -> int:
        return element_bytes(self.g.tensors[tensor].precision)

    # ---- which tensors live in DLA memory, and where
    def dla_tensors(self) -> set[str]:
        names: set[str] = set()
        for layer, engine in zip(self.g.layers, self.engines, strict=True):
            if engine == "dla":
                names.update(layer.inputs)
                names.update(layer.outputs)
        names -= self.unplaced
        return names - {self.g.layers[i].outputs[0] for i in self.fused_conv_indices()}

    def fused_conv_indices(self) -> list[int]:
        return [i for i, layer in enumerate(self.g.layers) if layer.name in self.fused]

    def find_fusions(self) -> None:
        self.fused = pools_on_the_fly(self.g, self.target, self.engines)

    def root(self, name: str) -> tuple[str, int]:
        offset = 0
        while name in self.alias:
            name, c0 = self.alias[name]
            offset += c0
        return name, offset

    def build_aliases(self) -> None:
        placement = place_tensors(self.g, self.engines, self.cfg.memory_atomic)
        self.alias, self.copies, self.unplaced = (
            placement.alias,
            placement.copies,
            placement.unplaced,
        )

    def allocate_memory(self, names: set[str]) -> int:
        atom = self.cfg.memory_atomic
        end = len(self.g.layers)
        life: dict[str, list[int]] = {}
        for index, layer in enumerate(self.g.layers):
            for name in layer.outputs:
                if name in names:
                    span = life.setdefault(self.root(name)[0], [index, index])
                    span[0] = min(span[0], index)
            for name in layer.inputs:
                if name in names:
                    r = self.root(name)[0]
                    span = life.setdefault(r, [index, index])
                    span[0], span[1] = min(span[0], index), max(span[1], index)
        for name in self.g.outputs:
            if name in names:
                life[self.root(name)[0]][1] = end
        for i in self.fused_conv_indices():
            # A pooling fed on the fly is written while its convolution runs.
            pooled = self.fused[self.g.layers[i].name].outputs[0]
            span = life[self.root(pooled)[0]]
            span[0] = min(span[0], i)
        buffers = {
            r: Buffer(r, packed_bytes(cube_of(self.g.tensors[r].shape, r), atom, self.bpe(r)), a, b)
            for r, (a, b) in life.items()
        }
        peak = place(list(buffers.values()))
        for name in names:
            r, c0 = self.root(name)
            parent = packed_surface(
                ACT_BASE + buffers[r].offset, cube_of(self.g.tensors[r].shape, r), atom
            )
            c = cube_of(self.g.tensors[name].shape, name)[0]
            self.surfaces[name] = (
                channel_view(parent, c0, c, atom, self.bpe(r)) if c0 or r != name else parent
            )
        return peak

    # ---- operations
    def operand_images(self, chain: SdpChain, channels: int, fp16: bool) -> program.Operands:
        addrs: dict[str, int | None] = {}
        for key, unit in (("bs", chain.x1), ("bn", chain.x2)):
            alu_mem, mul_mem = program.x_uses_memory(unit)
            if unit is None or not (alu_mem or mul_mem):
                addrs[key] = None
                continue
            cols = [c for c, use in ((unit.alu_operand, alu_mem), (unit.mul, mul_mem)) if use]
            if fp16:  # FP16 operands: their bit patterns, as 16-bit table entries
                cols = [np.asarray(col, dtype=np.float16).view(np.int16) for col in cols]
            padded = -(-channels // self.cfg.memory_atomic) * self.cfg.memory_atomic
            blob = pack_operands(
                np.asarray(cols[0]), np.asarray(cols[1]) if len(cols) > 1 else None, padded
            )
            addrs[key] = self.consts.add(blob)
        return program.Operands(bs=addrs["bs"], bn=addrs["bn"])

    def check_engines(self, layer: QLayer) -> None:
        chain = getattr(layer, "sdp", None)
        need = []
        if chain is not None and chain.y is not None:
            need.append("sdp_ew")
        if isinstance(layer, QPool):
            need.append("pdp")
        if isinstance(layer, QLrn):
            need.append("cdp")
        if isinstance(layer, QContract):
            need.append("rubik")
        if chain is not None and chain.lut is not None:
            need.append("sdp_lut")
        for engine in need:
            if not self.cfg.has(engine):
                raise DlakitError(
                    f"layer {layer.name} needs {engine}, which {self.target.name} lacks"
                )

    def conv_ops(self, layer: QConv, src_all: Surface | None = None) -> list[HwOp]:
        atom, cfg = self.cfg.memory_atomic, self.cfg
        src_all = self.surfaces[layer.inputs[0]] if src_all is None else src_all
        pool = self.fused.get(layer.name)
        if pool is not None:
            # The conv output exists only inside the pipe: dims for the registers, no bytes.
            pool_all = self.surfaces[pool.outputs[0]]
            cube = cube_of(self.g.tensors[layer.outputs[0]].shape, layer.outputs[0])
            dst_all = packed_surface(pool_all.address, cube, atom)
        else:
            dst_all = self.surfaces[layer.outputs[0]]
        ew_all = self.surfaces[layer.inputs[1]] if layer.sdp.y is not None else None
        fp16 = layer.precision == "fp16"
        bpe = element_bytes(layer.precision)
        w = np.asarray(layer.weight, dtype=np.float16 if fp16 else np.int8)
        atomic_k = cfg.atomic_k_int16 if fp16 and cfg.atomic_k_int16 else cfg.atomic_k
        k_total, cg, r, s = w.shape
        c, wd = src_all.channels, src_all.width
        if w.shape[1] * layer.groups != c:
            raise DlakitError(
                f"layer {layer.name}: weights {list(w.shape)} do not match {c} channels"
            )
        kg = k_total // layer.groups
        operands = self.operand_images(layer.sdp, k_total, fp16)
        ops: list[HwOp] = []
        blocks = block_ranges(layer, self.cfg.memory_atomic)
        left, right = layer.pads[1], layer.pads[3]
        for cin0, cin, k0, kn, gn in blocks:
            wb = np.zeros((kn, cin, r, s), dtype=w.dtype)
            for gi in range(gn):  # block-diagonal: group gi sees only its own channels
                wb[gi * kg : (gi + 1) * kg, gi * cg : (gi + 1) * cg] = w[
                    k0 + gi * kg : k0 + (gi + 1) * kg
                ]
            tiles = split_tiles(conv_shape(layer, self.g, cin, kn), self.target, layer.name, bpe)
            images: dict[int, tuple[int, int]] = {}
            for t in tiles:
                if t.k0 not in images:
                    blob = pack_weights(wb[t.k0 : t.k0 + t.kernels], atomic_k, cfg.atomic_c)
                    images[t.k0] = (self.consts.add(blob), len(blob))
                waddr, wsize = images[t.k0]
                kabs = k0 + t.k0
                src = row_view(channel_view(src_all, cin0, cin, atom, bpe), t.ih0, t.in_rows)
                dst = row_view(channel_view(dst_all, kabs, t.kernels, atom, bpe), t.oh0,
                               t.out_rows)  # fmt: skip
                ew = None
                if ew_all is not None:
                    ew = row_view(channel_view(ew_all, kabs, t.kernels, atom), t.oh0, t.out_rows)
                ops_at = program.Operands(
                    bs=None if operands.bs is None else operands.bs + kabs * _stride(layer.sdp.x1),
                    bn=None if operands.bn is None else operands.bn + kabs * _stride(layer.sdp.x2),
                )
                pooled = None
                if pool is not None:
                    pooled = (pool, channel_view(pool_all, kabs, t.kernels, atom, bpe))
                writes = program.conv_program(
                    self.regmap, layer, t, src, dst, waddr, wsize, (r, s), layer.dilation,
                    (left, right), ops_at, ew, atom, pooled,
                )  # fmt: skip
                info = {
                    "in": [cin, t.in_rows, wd],
                    "out": [t.kernels, t.out_rows, dst.width],
                    "kernel": [r, s],
                    "stride": list(layer.stride),
                    "groups": layer.groups,
                    "memory": _memory(src, dst if pooled is None else pooled[1], waddr, wsize),
                    "tile": {
                        "channels_from": cin0,
                        "kernels_from": kabs,
                        "rows_from": t.oh0,
                        "input_rows_from": t.ih0,
                        "pad_top": t.pad_top,
                        "pad_bottom": t.pad_bottom,
                        "data_banks": t.data_banks,
                        "weight_banks": t.weight_banks,
                        "entry_per_slice": t.entries,
                    },
                }
                outputs = list(layer.outputs)
                if pool is not None:
                    info["pool"] = {
                        "layer": pool.name,
                        "method": pool.method,
                        "kernel": list(pool.kernel),
                        "stride": list(pool.stride),
                    }
                    outputs = list(pool.outputs)
                ops.append(HwOp(f"{layer.name}#{len(ops)}", "conv", layer.name,
                                layer.onnx_nodes + (pool.onnx_nodes if pool else []),
                                list(layer.inputs), outputs, info, writes))  # fmt: skip
        self.tiling["layers"] += 1
        self.tiling["operations"] += len(ops)
        self.tiling["max_tiles"] = max(self.tiling["max_tiles"], len(ops))
        if len(ops) > len(blocks):
            self.tiling["split_layers"] += 1
        for op in ops:
            op.info["tile"]["of"] = len(ops)
        return ops

    def sdp_op(self, layer: QSdp) -> HwOp:
        src, dst = self.surfaces[layer.inputs[0]], self.surfaces[layer.outputs[0]]
        ew = self.surfaces[layer.inputs[1]] if layer.sdp.y is not None else None
        operands = self.operand_images(layer.sdp, dst.channels, layer.precision == "fp16")
        writes = program.sdp_program(self.regmap, layer.name, layer.sdp, src, dst, operands, ew,
                                     layer.precision.upper())  # fmt: skip
        info = _io_info(src, dst)
        return HwOp(layer.name, "sdp", layer.name, layer.onnx_nodes, list(layer.inputs),
                    list(layer.outputs), info, writes)  # fmt: skip

    def copy_ops(self, view: QView) -> list[HwOp]:
        """A channel range that no surface holds: a 1x1 convolution over the surfaces that do,
        each kernel one weight of 1 on its channel (the accumulator is the INT8 value itself)."""
        atom = self.cfg.memory_atomic
        parent = self.surfaces[view.inputs[0]]
        first = view.start // atom * atom
        end = min(-(-(view.start + view.channels) // atom) * atom, parent.channels)
        weight = np.zeros((view.channels, end - first, 1, 1), dtype=np.int8)
        weight[np.arange(view.channels), view.start - first + np.arange(view.channels)] = 1
        conv = QConv(view.name, list(view.inputs), list(view.outputs), onnx_nodes=view.onnx_nodes,
                     weight=weight)  # fmt: skip
        ops = self.conv_ops(conv, channel_view(parent, first, end - first, atom))
        for op in ops:
            op.info["copy"] = {"channels_from": view.start, "channels": view.channels}
        return ops

    def rubik_op(self, layer: QContract) -> HwOp:
        src, dst = self.surfaces[layer.inputs[0]], self.surfaces[layer.outputs[0]]
        writes = program.rubik_contract_program(self.regmap, layer, src, dst)
        info = _io_info(src, dst) | {"stride": list(layer.stride)}
        return HwOp(layer.name, "rubik", layer.name, layer.onnx_nodes, list(layer.inputs),
                    list(layer.outputs), info, writes)  # fmt: skip

    def pdp_op(self, layer: QPool) -> HwOp:
        src, dst = self.surfaces[layer.inputs[0]], self.surfaces[layer.outputs[0]]
        writes = program.pdp_program(self.regmap, layer, src, dst)
        info = _io_info(src, dst) | {
            "kernel": list(layer.kernel),
            "stride": list(layer.stride),
            "method": layer.method,
        }
        return HwOp(layer.name, "pdp", layer.name, layer.onnx_nodes, list(layer.inputs),
                    list(layer.outputs), info, writes)  # fmt: skip

    def cdp_op(self, layer: QLrn) -> HwOp:
        src, dst = self.surfaces[layer.inputs[0]], self.surfaces[layer.outputs[0]]
        writes = program.cdp_program(self.regmap, layer, src, dst)
        info = _io_info(src, dst) | {"size": layer.size}
        return HwOp(layer.name, "cdp", layer.name, layer.onnx_nodes, list(layer.inputs),
                    list(layer.outputs), info, writes)  # fmt: skip

    # ---- segments
    def segments(self) -> list[Segment]:
        from dlakit.nvdla.fallback import fallback_segment_model

        runs: list[tuple[str, list[int]]] = []
        for index, engine in enumerate(self.engines):
            if runs and runs[-1][0] == engine:
                runs[-1][1].append(index)
            else:
                runs.append((engine, [index]))
        consumers = self.g.readers()
        segments = []
        for number, (engine, indices) in enumerate(runs):
            layers = [self.g.layers[i] for i in indices]
            made = {n for layer in layers for n in layer.outputs}
            made |= {k for layer in layers if isinstance(layer, QFloat) for k in layer.initializers}
            inside = set(indices)
            inputs = _unique(n for layer in layers for n in layer.inputs if n not in made)
            outputs = [
                n
                for layer in layers
                for n in layer.outputs
                if n in self.g.outputs or any(i not in inside for i in consumers.get(n, []))
            ]
            seg = Segment(engine, f"{engine}{number}", [x.name for x in layers], inputs, outputs)
            pooled_on_the_fly = {p.name for p in self.fused.values()}
            if engine == "fallback":
                seg.model = fallback_segment_model(self.g, layers, inputs, outputs, seg.name)
            else:
                for layer in layers:
                    self.check_engines(layer)
                    if isinstance(layer, QConv):
                        seg.ops += self.conv_ops(layer)
                    elif isinstance(layer, QSdp):
                        seg.ops.append(self.sdp_op(layer))
                    elif isinstance(layer, QPool) and layer.name not in pooled_on_the_fly:
                        seg.ops.append(self.pdp_op(layer))
                    elif isinstance(layer, QLrn):
                        seg.ops.append(self.cdp_op(layer))
                    elif isinstance(layer, QView) and layer.name in self.copies:
                        seg.ops += self.copy_ops(layer)
                    elif isinstance(layer, QContract):
                        seg.ops.append(self.rubik_op(layer))
            segments.append(seg)
        return segments


def _io_info(src: Surface, dst: Surface) -> dict:
    """Shapes and addresses of a one-input operation, for inspect."""
    return {
        "in": [src.channels, src.height, src.width],
        "out": [dst.channels, dst.height, dst.width],
        "memory": _memory(src, dst),
    }


def _memory(src: Surface, dst: Surface, weights: int | None = None, size: int = 0) -> dict:
    """Where an operation reads and writes (first byte addresses), for inspect."""
    doc = {"src": f"0x{src.address:x}", "dst": f"0x{dst.address:x}"}
    if weights is not None:
        doc["weights"] = f"0x{weights:x}+{size}"
    return doc


def _stride(unit) -> int:
    """Bytes per channel of an X unit's operand table."""
    alu_mem, mul_mem = program.x_uses_memory(unit)
    return 2 * (int(alu_mem) + int(mul_mem))


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))


def compile_graph(graph: QGraph, target: Target) -> Compiled:
    """Lower ``graph`` for ``target``: hardware operations, fallback segments, memory allocation."""
    lint(graph)  # a broken invariant fails here by name, not as wrong bytes in the simulator
    c = _Compiler(graph, target)
    if "dla" not in c.engines:
        raise DlakitError(
            f"model {graph.model_name}: no layer runs on the {target.name} DLA "
            "(every layer falls back); nothing to compile"
        )
    c.build_aliases()
    c.find_fusions()
    names = c.dla_tensors()
    act_bytes = c.allocate_memory(names)
    c.consts = _Constants(align(ACT_BASE + act_bytes, 1 << 16))
    segments = c.segments()
    tensors = {
        name: TensorInfo(t.shape, t.precision, t.scale, c.surfaces.get(name))
        for name, t in graph.tensors.items()
    }
    ops = [op for s in segments for op in s.ops]
    stats = {
        "hardware_ops": len(ops),
        "ops_by_kind": {
            k: sum(op.kind == k for op in ops) for k in ("conv", "sdp", "pdp", "cdp", "rubik")
        },
        "dla_segments": sum(s.kind == "dla" for s in segments),
        "fallback_segments": sum(s.kind == "fallback" for s in segments),
        "tiling": dict(c.tiling),
        "register_writes": sum(len(op.writes) for op in ops),
        "pools_on_the_fly": len(c.fused),
        "fp16_on_fallback": [
            layer.name
            for layer in graph.layers
            if layer.engine == "dla" and isinstance(layer, QFloat)
        ],
        # FP16 hardware layers (compile --precision fp16)
        "fp16_layers": sum(getattr(layer, "precision", "int8") == "fp16" for layer in graph.layers),
        # INT8 layers whose output converter writes FP16 (network outputs): emulated exactly on
        # the fallback until the simulator has SDP FP16 output.
        "fp16_output_on_fallback": [
            layer.name for layer in graph.layers if layer.engine == "dla" and writes_fp16(layer)
        ],
        # Why each ONNX node off the DLA is there: the support verdicts the lowering followed.
        "fallback_nodes": {
            name: {"op": v.op, "rule": v.reasons[0].rule, "message": v.reasons[0].message}
            for name, v in graph.verdicts.items()
            if v.engine == "fallback" and v.reasons
        },
    }
    return Compiled(graph.model_name, target, list(graph.inputs), list(graph.outputs), tensors,
                    segments, bytes(c.consts.data), c.consts.base, ACT_BASE, act_bytes,
                    stats, roots={n: c.root(n)[0] for n in c.surfaces})  # fmt: skip
