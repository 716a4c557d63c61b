"""A compiled model's DLA segments as NVDLA loadables (one per segment).

The layout follows what the nvdla/sw master compiler emits (``umd/core/src/compiler/Compiler.cpp``
``Compiler::emit`` and ``engine-ast/EngineGraph.cpp`` ``prepareMemoryListEntries``):

* memory list: entry 0 a 4 KiB page that address 0 points at; then the pools (the activations,
  the constants holding weights and operand tables as content blobs at their offsets), then one
  entry per bound buffer (a segment input or output: ``ALLOC|INPUT`` / ``ALLOC|OUTPUT`` with its
  bind id and tensor descriptor), then the task's context (network descriptor, dependency
  graph, operation list, surface list, LUT list with at least one slot, a spare page);
  everything 4096-aligned;
* address list: entry 0, one entry per pool or bound buffer (ids 1..Ni), then the task's six
  context entries; the task's own list is ``[addr0, 1..Ni, dep graph, ops, surfaces, LUTs,
  spare]`` and a data cube names its buffer by that list's index plus an offset into it
  (``dla_data_cube.offset``, firmware interface 0.12);
* one DLA task (interface DLA1, any instance) that signals event 0 when done, one submit entry;
* blobs ``task-0-addr0``, ``-dep_graph``, ``-op_list``, ``-surf_list``, ``-lut_list`` (DLA1,
  sub-interfaces 1..5, the firmware interface version), the constant blobs (interface NONE).

The operations come from the compiled register programs (:mod:`dlakit.loadable.from_program`)
in program order, chained so the firmware runs them in that order: each operation's last unit
completing releases the next operation's first unit; the units of one fused operation are
linked as the compiler links them (the consumer programmed releases the producer ... the
producer's fused parent enabled), and each operation names the next one of its own unit, as
the firmware's dequeue needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from dlakit.errors import DlakitError
from dlakit.hw import load_register_map
from dlakit.loadable.descriptors import Version, encode, layout
from dlakit.loadable.firmware.engine import (
    EVENT_COMPLETED,
    EVENT_ENABLED,
    EVENT_PROGRAMMED,
    MEM_HW,
    OP_NAMES,
)
from dlakit.loadable.from_program import Cube, FirmwareOp, firmware_ops
from dlakit.loadable.reader import (
    PIXEL_FORMAT_FEATURE,
    PIXEL_FORMAT_FEATURE_X8,
    AddressEntry,
    Blob,
    BlobKind,
    DataCategory,
    DataType,
    EventEntry,
    Interface,
    Loadable,
    MemoryDomain,
    MemoryEntry,
    MemoryFlags,
    SubmitEntry,
    TaskEntry,
    TensorDesc,
)
from dlakit.loadable.serialize import LOADABLE_VERSION, to_bytes
from dlakit.nvdla.compiler import Compiled, HwOp, Segment
from dlakit.nvdla.surface import Surface

# The firmware interface the nvdla/sw master compiler stamps on its DLA blobs
# (umd/core/src/compiler/include/priv/dla/dla1/A/dla_fw_version.h); the KMD there is 0.12.5.
FIRMWARE_VERSION: Version = (0, 12, 3)
DATA_FORMAT_NCXHWX = 3  # nvdla/sw umd/core/include/nvdla/c/NvDlaType.h NVDLA_DATA_FORMAT_NCxHWx
PAGE = 4096
_CONTEXT = ("addr0", "dep_graph", "op_list", "surf_list", "lut_list")
_CONST_ALIGN = 128


@dataclass(frozen=True)
class Binding:
    """A host tensor of a DLA segment and where it lives in one bound buffer: the buffer holds
    the tensor ``buffer`` (a concatenation's output, or the tensor itself) and the host tensor's
    ``channels`` channels start at channel ``channels_from`` of it."""

    tensor: str
    buffer: str
    bind_id: int
    channels_from: int
    channels: int


@dataclass
class SegmentLoadable:
    segment: str
    loadable: Loadable
    data: bytes
    inputs: list[Binding]
    outputs: list[Binding]
    operations: list[str]  # "CONV 0 (layer#0)" per firmware operation, in list order


@dataclass
class _Memory:
    entry_id: int
    size: int
    flags: int
    contents: list[tuple[str, int]] = field(default_factory=list)
    bind_id: int = 0
    tensor_desc_id: int = 0


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def _extent(s: Surface, atom: int, bpe: int = 1) -> int:
    surfaces = -(-s.channels * bpe // atom)
    return (surfaces - 1) * s.surf_stride + (s.height - 1) * s.line_stride + s.width * atom


class _SegmentWriter:
    def __init__(self, comp: Compiled, seg: Segment) -> None:
        cfg = comp.target.nvdla
        if cfg is None:
            raise DlakitError(f"target {comp.target.name} is not an open NVDLA configuration")
        self.comp = comp
        self.seg = seg
        self.atom = cfg.memory_atomic
        self.regmap = load_register_map(cfg.hw_tree)
        self.where = f"segment {seg.name}"
        self.bound: dict[str, tuple[str, int]] = {}  # buffer tensor -> ("in"|"out", bind id)
        self.bindings: dict[str, list[Binding]] = {"in": [], "out": []}
        self.const_ranges: dict[int, tuple[int, str]] = {}  # offset -> (end, label)
        self.extra: dict[bytes, tuple[int, str]] = {}  # synthesized content -> (offset, name)

    # ---- buffers -------------------------------------------------------------------------
    def root(self, name: str) -> str:
        return self.comp.roots.get(name, name)

    def surface(self, name: str) -> Surface:
        s = self.comp.tensors[name].surface
        if s is None:
            raise DlakitError(f"{self.where}: tensor '{name}' has no DLA surface")
        return s

    def bind(self) -> None:
        """Each segment input and output names its buffer; a buffer is bound one way."""
        for direction, names in (("in", self.seg.inputs), ("out", self.seg.outputs)):
            for name in names:
                if self.comp.tensors[name].surface is None:
                    continue
                buf = self.root(name)
                if buf in self.bound and self.bound[buf][0] != direction:
                    raise DlakitError(
                        f"{self.where}: tensor '{name}' shares buffer '{buf}' with a tensor bound "
                        "the other way; the runtime binds a buffer as an input or an output"
                    )
                if buf not in self.bound:
                    count = sum(d == direction for d, _ in self.bound.values())
                    self.bound[buf] = (direction, count)
                c0 = (
                    (self.surface(name).address - self.surface(buf).address)
                    // max(self.surface(buf).surf_stride, 1)
                    * (self.atom // self.bpe(buf))
                )
                self.bindings[direction].append(
                    Binding(
                        name,
                        buf,
                        self.bound[buf][1],
                        c0 if buf != name else 0,
                        self.surface(name).channels,
                    )
                )

    def bpe(self, name: str) -> int:
        return 2 if self.comp.tensors[name].precision == "fp16" else 1

    def bound_buffers(self) -> list[str]:
        """Inputs first, then outputs, each in bind-id order."""
        return sorted(self.bound, key=lambda b: (self.bound[b][0] != "in", self.bound[b][1]))

    # ---- addresses -----------------------------------------------------------------------
    def note_constant(self, cube: Cube, label: str) -> None:
        """First pass: the constant ranges the cubes read and the tables the loadable adds."""
        comp = self.comp
        if cube.blob is not None:
            self.extra.setdefault(cube.blob, (-1, label))
            return
        addr = cube.address
        if addr is None or not comp.const_base <= addr < comp.const_base + len(comp.constants):
            return
        offset = addr - comp.const_base
        end = offset + max(cube.size, 1)
        if end > len(comp.constants):
            raise DlakitError(f"{self.where}: {label} runs past the constant image")
        prev = self.const_ranges.get(offset)
        self.const_ranges[offset] = (max(end, prev[0]) if prev else end, prev[1] if prev else label)

    def place_extra(self) -> int:
        """Offsets of the added tables, after the constant image's ranges; the pool's size."""
        at = _round_up(max([e for e, _ in self.const_ranges.values()] or [0]), _CONST_ALIGN)
        for blob, (_, label) in self.extra.items():
            self.extra[blob] = (at, label)
            at = _round_up(at + len(blob), _CONST_ALIGN)
        return at

    def place(self, cube: Cube, op: HwOp, label: str) -> tuple[int, int]:
        """(task address-list index, offset) of a cube's first byte."""
        comp = self.comp
        if cube.blob is not None:
            return self.const_index, self.extra[cube.blob][0]
        assert cube.address is not None
        addr = cube.address
        if comp.const_base <= addr < comp.const_base + len(comp.constants):
            return self.const_index, addr - comp.const_base
        for name in [*op.inputs, *op.outputs]:
            s = comp.tensors[name].surface if name in comp.tensors else None
            if s is None or not s.address <= addr < s.address + _extent(
                s, self.atom, self.bpe(name)
            ):
                continue
            buf = self.root(name)
            if buf in self.bound:
                return self.bound_index[buf], addr - self.surface(buf).address
            return self.act_index, addr - comp.act_base
        raise DlakitError(
            f"{self.where}: {label} at 0x{addr:x} lies in none of the tensors of {op.name}"
        )

    def cube(self, cube: Cube, op: HwOp, label: str) -> dict[str, Any]:
        doc = {
            "type": cube.kind,
            "address": -1,
            "offset": 0,
            "size": cube.size,
            "width": cube.width,
            "height": cube.height,
            "channel": cube.channel,
            "line_stride": cube.line_stride,
            "surf_stride": cube.surf_stride,
            "plane_stride": 0,
        }
        if cube.kind != MEM_HW:
            doc["address"], doc["offset"] = self.place(cube, op, label)
        return doc

    # ---- the loadable --------------------------------------------------------------------
    def build(self) -> SegmentLoadable:
        comp, seg, v = self.comp, self.seg, FIRMWARE_VERSION
        self.bind()
        # Instruction address entries 1..Ni: the activation pool, the constant pool, bound buffers.
        self.act_index, self.const_index = 1, 2
        buffers = self.bound_buffers()
        self.bound_index = {b: 3 + i for i, b in enumerate(buffers)}
        groups = [
            (op, firmware_ops(op.name, op.writes, self.regmap, self.atom,
                              (comp.const_base, comp.constants)))
            for op in seg.ops
        ]  # fmt: skip
        ops = [(op, f) for op, fw in groups for f in fw]
        if not ops:
            raise DlakitError(f"{self.where} has no hardware operation to put in a loadable")

        def cubes():
            for op, f in ops:
                for key, value in f.surface.items():
                    if isinstance(value, Cube):
                        yield op, f, key, value, f"{op.name}.{OP_NAMES[f.unit].lower()}.{key}"

        for _, _, _, cube, label in cubes():
            self.note_constant(cube, label)
        const_size = self.place_extra()
        luts: list[bytes] = []
        op_blobs, surf_blobs = [], []
        for op, f in ops:
            surface = {
                key: self.cube(value, op, f"{op.name}.{OP_NAMES[f.unit].lower()}.{key}")
                if isinstance(value, Cube) else value
                for key, value in f.surface.items()
            }  # fmt: skip
            desc = dict(f.op)
            if f.lut is not None:
                raw = encode("dla_lut_param", f.lut, v)
                if raw not in luts:
                    luts.append(raw)
                desc["lut_index"] = luts.index(raw)
            name = OP_NAMES[f.unit].lower()
            op_blobs.append(_container("dla_operation_container", f"dla_{name}_op_desc", desc, v))
            surf_blobs.append(
                _container("dla_surface_container", f"dla_{name}_surface_desc", surface, v)
            )
        deps = _dependencies(groups, v)
        return self.assemble(ops, deps, b"".join(op_blobs), b"".join(surf_blobs), luts, buffers,
                             const_size)  # fmt: skip

    def assemble(self, ops, deps, op_list, surf_list, luts, buffers, const_size):
        comp, v = self.comp, FIRMWARE_VERSION
        blobs: list[Blob] = []
        memory: list[_Memory] = [_Memory(0, PAGE, MemoryFlags.ALLOC)]
        memory.append(_Memory(1, _round_up(max(comp.act_bytes, 1), PAGE), MemoryFlags.ALLOC))
        const = _Memory(2, _round_up(max(const_size, 1), PAGE), MemoryFlags.ALLOC)
        for offset, (end, label) in sorted(_merge(self.const_ranges).items()):
            blobs.append(_data_blob(label, comp.constants[offset:end]))
            const.contents.append((label, offset))
        for blob, (offset, label) in self.extra.items():
            name = f"{label}.table"
            blobs.append(_data_blob(name, blob))
            const.contents.append((name, offset))
        if const.contents:
            const.flags |= MemoryFlags.SET
        memory.append(const)
        tensors: list[TensorDesc] = []
        for buf in buffers:
            direction, bind_id = self.bound[buf]
            s = self.surface(buf)
            info = comp.tensors[buf]
            bpe = 2 if info.precision == "fp16" else 1
            size = _round_up(_extent(s, self.atom, bpe), self.atom)
            flag = MemoryFlags.INPUT if direction == "in" else MemoryFlags.OUTPUT
            mem = _Memory(len(memory), size, MemoryFlags.ALLOC | flag, bind_id=bind_id,
                          tensor_desc_id=len(tensors))  # fmt: skip
            memory.append(mem)
            tensors.append(
                TensorDesc(
                    name=buf, id=len(tensors), mem_id=mem.entry_id, size=size, offset=0,
                    data_format=DATA_FORMAT_NCXHWX,
                    data_type=DataType.HALF if bpe == 2 else DataType.INT8,
                    data_category=DataCategory.FEATURE,
                    pixel_format=PIXEL_FORMAT_FEATURE_X8 if self.atom == 8 else
                    PIXEL_FORMAT_FEATURE,
                    pixel_mapping=0, n=1, c=s.channels, h=s.height, w=s.width,
                    strides=(bpe, s.line_stride, s.surf_stride, 0, 0, 0, 0, 0),
                )
            )  # fmt: skip
        ni = len(memory) - 1  # instruction address entries 1..Ni, one per memory after the page
        net = _network(ops, ni, len(luts))
        context = [
            encode("dla_network_desc", net, v),
            b"".join(deps),
            op_list,
            surf_list,
            b"".join(luts) or bytes(layout("dla_lut_param", v).size),
        ]
        first_context = len(memory)
        for kind, (stem, data) in enumerate(zip(_CONTEXT, context, strict=True), 1):
            name = f"task-0-{stem}"
            blobs.append(Blob(name, len(data), Interface.DLA1, kind, v, data))
            memory.append(_Memory(len(memory), len(data), MemoryFlags.ALLOC | MemoryFlags.SET,
                                  [(name, 0)]))  # fmt: skip
        memory.append(_Memory(len(memory), PAGE, MemoryFlags.ALLOC))
        addresses = [AddressEntry(i, m.entry_id, 0, m.size) for i, m in enumerate(memory)]
        task_list = [ni + 1, *range(1, ni + 1), *range(ni + 2, ni + 7)]
        assert first_context == ni + 1 and len(addresses) == ni + 7
        ld = Loadable(
            path=Path(f"{self.seg.name}.nvdla"),
            version=LOADABLE_VERSION,
            tasks=(TaskEntry(0, Interface.DLA1, -1, tuple(task_list), (), (0,)),),
            memory=tuple(
                MemoryEntry(
                    m.entry_id,
                    MemoryDomain.SYSTEM,
                    int(m.flags),
                    m.size,
                    PAGE,
                    tuple(n for n, _ in m.contents),
                    tuple(o for _, o in m.contents),
                    m.bind_id,
                    m.tensor_desc_id,
                )
                for m in memory
            ),
            addresses=tuple(addresses),
            events=(EventEntry(0, 0, 0, 1, 1),),  # target 0 signals 1 when the task is done
            blobs=tuple(blobs),
            tensors=tuple(tensors),
            relocs=(),
            submits=(SubmitEntry(0, (0,)),),
        )
        names = [f"{OP_NAMES[f.unit]} {i} ({op.name})" for i, (op, f) in enumerate(ops)]
        return SegmentLoadable(self.seg.name, ld, to_bytes(ld), self.bindings["in"],
                               self.bindings["out"], names)  # fmt: skip


def _data_blob(name: str, data: bytes) -> Blob:
    return Blob(name, len(data), Interface.NONE, BlobKind.NONE, (0, 0, 0), bytes(data))


def _merge(ranges: dict[int, tuple[int, str]]) -> dict[int, tuple[int, str]]:
    """Overlapping constant ranges (tiles of one operand table) as one blob each."""
    merged: dict[int, tuple[int, str]] = {}
    start = end = -1
    for offset in sorted(ranges):
        stop, label = ranges[offset]
        if offset < end:
            merged[start] = (max(end, stop), merged[start][1])
            end = max(end, stop)
            continue
        start, end = offset, stop
        merged[start] = (stop, label)
    return merged


def _container(union: str, member: str, values: dict[str, Any], v: Version) -> bytes:
    raw = encode(member, values, v)
    return raw + bytes(layout(union, v).size - len(raw))


def _network(ops: list[tuple[HwOp, FirmwareOp]], ni: int, num_luts: int) -> dict[str, Any]:
    """``dla_network_desc`` as ``Compiler::emit`` fills it."""
    heads = [-1] * len(OP_NAMES)
    for index, (_, f) in enumerate(ops):
        if heads[f.unit] == -1:
            heads[f.unit] = index
    return {
        "operation_desc_index": ni + 2,
        "surface_desc_index": ni + 3,
        "dependency_graph_index": ni + 1,
        "lut_data_index": ni + 4,
        "roi_array_index": -1,
        "surface_index": -1,
        "stat_list_index": -1,
        "op_head": heads,
        "num_rois": 1,
        "num_operations": len(ops),
        "num_luts": num_luts,
        "num_addresses": ni + 6,
        "input_layer": 0,
        "dynamic_roi": 0,
    }


def _dependencies(groups: list[tuple[HwOp, list[FirmwareOp]]], v: Version) -> list[bytes]:
    """``dla_common_op_desc`` per firmware operation: the program order as a chain."""
    flat: list[FirmwareOp] = [f for _, fw in groups for f in fw]
    n = len(flat)
    consumers = [[(-1, 0)] * len(OP_NAMES) for _ in range(n)]
    parent = [(-1, 0)] * n
    count = [0] * n

    def edge(src: int, dst: int, event: int) -> None:
        slot = flat[dst].unit
        if consumers[src][slot][0] == dst:
            return  # one edge per pair: the chain's completion already holds the order
        if consumers[src][slot][0] != -1:
            raise DlakitError(
                f"operation {src} already releases {OP_NAMES[slot]} operation "
                f"{consumers[src][slot][0]}; the firmware holds one consumer per unit"
            )
        consumers[src][slot] = (dst, event)
        count[dst] += 1

    index = 0
    spans = []
    for _, fw in groups:
        spans.append((index, index + len(fw) - 1))
        for k in range(1, len(fw)):
            a, b = index + k - 1, index + k
            if fw[k].fused_parent != fw[k - 1].unit:
                raise DlakitError(f"operation {b} is not fed on the fly by operation {a}")
            edge(a, b, EVENT_PROGRAMMED)  # the producer programmed lets the consumer go
            parent[b] = (a, EVENT_ENABLED)  # the consumer enabled lets the producer go
            count[a] += 1
        index += len(fw)
    # An operation's last unit is the first the firmware enables (the others follow through
    # their fused parents) and the last to finish: it waits for the previous one to complete.
    for (_, tail), (_, head) in pairwise(spans):
        edge(tail, head, EVENT_COMPLETED)
    for i in range(n):
        later = next((j for j in range(i + 1, n) if flat[j].unit == flat[i].unit), None)
        if later is not None:
            edge(i, later, EVENT_PROGRAMMED)  # the firmware dequeues a unit's next operation
    return [
        encode(
            "dla_common_op_desc",
            {
                "index": i,
                "roi_index": 0,
                "op_type": flat[i].unit,
                "dependency_count": count[i],
                "consumers": [{"index": c, "event": e} for c, e in consumers[i]],
                "fused_parent": {"index": parent[i][0], "event": parent[i][1]},
            },
            v,
        )
        for i in range(n)
    ]


def segment_loadable(comp: Compiled, segment: Segment) -> SegmentLoadable:
    """The loadable of one DLA segment of ``comp``."""
    if segment.kind != "dla":
        raise DlakitError(f"segment {segment.name} runs on the {segment.kind}, not the DLA")
    return _SegmentWriter(comp, segment).build()
