"""Read an NVDLA loadable (the flatbuffer the NVDLA compiler writes) into typed data.

Schema facts: nvdla/sw ``umd/core/src/common/loadable.fbs`` (namespace ``nvdla.loadable``,
root ``Loadable``, schema version 0.7.0). Tables are read through the ``flatbuffers`` runtime's
``Table`` API; every offset, length and count is checked against the file before it is followed,
so a truncated or corrupt file ends in one :class:`DlakitError` naming the table and field.
Cross references (address list -> memory, task -> address list, memory contents -> blobs,
tensor descriptor -> memory) are checked by :func:`validate`, which ``read_loadable`` runs.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from enum import IntEnum, IntFlag
from pathlib import Path
from typing import Any

from flatbuffers import number_types as N
from flatbuffers.table import Table

from dlakit.errors import DlakitError

MAX_FILE_BYTES = 1 << 30  # the runtime's socket server takes at most 512 MiB; leave headroom


class Interface(IntEnum):
    NONE = 0
    DLA1 = 1
    EMU1 = 2


class BlobKind(IntEnum):
    """``Blob.sub_interface`` of DLA1 blobs (nvdla/sw ``ILoadable.h``)."""

    NONE = 0
    NETWORK_DESC = 1
    DEP_GRAPH = 2
    OP_LIST = 3
    SURF_LIST = 4
    LUT_LIST = 5


class MemoryFlags(IntFlag):
    NONE = 0
    ALLOC = 1
    SET = 2
    INPUT = 4
    OUTPUT = 8


class MemoryDomain(IntEnum):
    SYSTEM = 0
    SRAM = 1


class DataType(IntEnum):
    UNKNOWN = 0
    FLOAT = 1
    HALF = 2
    INT16 = 3
    INT8 = 4


class DataFormat(IntEnum):
    UNKNOWN = 0
    NCHW = 1
    NHWC = 2


class DataCategory(IntEnum):
    IMAGE = 0
    WEIGHT = 1
    FEATURE = 2
    PLANAR = 3
    BIAS = 4


PIXEL_FORMAT_FEATURE = 36
PIXEL_FORMAT_FEATURE_X8 = 37


@dataclass(frozen=True)
class Blob:
    name: str
    size: int
    interface: int
    sub_interface: int
    version: tuple[int, int, int]
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class MemoryEntry:
    id: int
    domain: int
    flags: int
    size: int
    alignment: int
    contents: tuple[str, ...]
    offsets: tuple[int, ...]
    bind_id: int
    tensor_desc_id: int

    @property
    def bindable(self) -> bool:
        return bool(self.flags & (MemoryFlags.INPUT | MemoryFlags.OUTPUT))


@dataclass(frozen=True)
class AddressEntry:
    id: int
    mem_id: int
    offset: int
    size: int


@dataclass(frozen=True)
class EventEntry:
    id: int
    type: int
    target: int
    val: int
    op: int  # 0 wait, 1 signal


@dataclass(frozen=True)
class TaskEntry:
    id: int
    interface: int
    instance: int
    address_list: tuple[int, ...]
    pre_actions: tuple[int, ...]
    post_actions: tuple[int, ...]


@dataclass(frozen=True)
class TensorDesc:
    name: str
    id: int
    mem_id: int
    size: int
    offset: int
    data_format: int
    data_type: int
    data_category: int
    pixel_format: int
    pixel_mapping: int
    n: int
    c: int
    h: int
    w: int
    strides: tuple[int, ...]


@dataclass(frozen=True)
class RelocEntry:
    address_id: int
    write_id: int
    offset: int
    interface: int
    sub_interface: int
    reloc_type: int


@dataclass(frozen=True)
class SubmitEntry:
    id: int
    task_ids: tuple[int, ...]


@dataclass(frozen=True)
class Loadable:
    path: Path
    version: tuple[int, int, int]
    tasks: tuple[TaskEntry, ...]
    memory: tuple[MemoryEntry, ...]
    addresses: tuple[AddressEntry, ...]
    events: tuple[EventEntry, ...]
    blobs: tuple[Blob, ...]
    tensors: tuple[TensorDesc, ...]
    relocs: tuple[RelocEntry, ...]
    submits: tuple[SubmitEntry, ...]

    def blob(self, name: str) -> Blob:
        for b in self.blobs:
            if b.name == name:
                return b
        raise DlakitError(f"{self.path}: no blob named {name!r}")

    def bound(self, flag: MemoryFlags) -> list[MemoryEntry]:
        """Input or output memories in bind-id order."""
        return sorted((m for m in self.memory if m.flags & flag), key=lambda m: m.bind_id)

    def tensor_of(self, mem: MemoryEntry) -> TensorDesc:
        for t in self.tensors:
            if t.id == mem.tensor_desc_id:
                return t
        raise DlakitError(
            f"{self.path}: memory {mem.id} names tensor descriptor {mem.tensor_desc_id}, "
            "which the tensor list lacks"
        )

    def to_json(self) -> dict[str, Any]:
        def plain(obj: Any) -> Any:
            doc = asdict(obj)
            doc.pop("data", None)
            return doc

        return {
            "path": str(self.path),
            "version": ".".join(map(str, self.version)),
            "tasks": [plain(t) for t in self.tasks],
            "memory": [plain(m) for m in self.memory],
            "addresses": [plain(a) for a in self.addresses],
            "events": [plain(e) for e in self.events],
            "blobs": [{**plain(b), "version": ".".join(map(str, b.version))} for b in self.blobs],
            "tensors": [plain(t) for t in self.tensors],
            "relocs": [plain(r) for r in self.relocs],
            "submits": [plain(s) for s in self.submits],
        }


class _Reader:
    """Bounds-checked access to flatbuffer tables of one file."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.buf = bytearray(data)
        self.size = len(data)

    def fail(self, where: str, what: str) -> DlakitError:
        return DlakitError(f"{self.path}: {where}: {what}")

    def need(self, pos: int, width: int, where: str) -> None:
        if pos < 0 or pos + width > self.size:
            raise self.fail(
                where, f"offset {pos}+{width} lies outside the file ({self.size} bytes)"
            )

    def u32(self, pos: int, where: str) -> int:
        self.need(pos, 4, where)
        return int(struct.unpack_from("<I", self.buf, pos)[0])

    def table(self, pos: int, where: str) -> Table:
        """The table at ``pos``, after checking its vtable lies in the file."""
        self.need(pos, 4, where)
        vt = pos - struct.unpack_from("<i", self.buf, pos)[0]
        self.need(vt, 4, f"{where} vtable")
        vt_size, obj_size = struct.unpack_from("<HH", self.buf, vt)
        if vt_size < 4 or vt_size % 2:
            raise self.fail(where, f"vtable size {vt_size} is not valid")
        self.need(vt, vt_size, f"{where} vtable")
        self.need(pos, max(obj_size, 4), where)
        return Table(self.buf, pos)

    def slot(self, t: Table, index: int, where: str) -> int:
        """Absolute position of field ``index`` (0 when absent)."""
        off = t.Offset(4 + 2 * index)
        return t.Pos + off if off else 0

    def scalar(self, t: Table, index: int, flags: Any, where: str, default: int = 0) -> int:
        pos = self.slot(t, index, where)
        if not pos:
            return default
        self.need(pos, flags.bytewidth, where)
        return int(t.Get(flags, pos))

    def _vector(self, t: Table, index: int, width: int, where: str) -> tuple[int, int]:
        """(start, length) of a vector field, both checked; (0, 0) when absent."""
        pos = self.slot(t, index, where)
        if not pos:
            return 0, 0
        ref = pos + self.u32(pos, where)
        n = self.u32(ref, where)
        start = ref + 4
        if n > self.size or start + n * width > self.size:
            raise self.fail(where, f"{n} entries of {width} bytes run past the end of the file")
        return start, n

    def scalars(self, t: Table, index: int, flags: Any, where: str) -> tuple[int, ...]:
        start, n = self._vector(t, index, flags.bytewidth, where)
        return tuple(int(t.Get(flags, start + i * flags.bytewidth)) for i in range(n))

    def raw_bytes(self, t: Table, index: int, where: str) -> bytes:
        start, n = self._vector(t, index, 1, where)
        return bytes(self.buf[start : start + n])

    def string_at(self, pos: int, where: str) -> str:
        ref = pos + self.u32(pos, where)
        n = self.u32(ref, where)
        self.need(ref + 4, n, where)
        try:
            return bytes(self.buf[ref + 4 : ref + 4 + n]).decode()
        except UnicodeDecodeError:
            raise self.fail(where, "string is not UTF-8") from None

    def string(self, t: Table, index: int, where: str) -> str:
        pos = self.slot(t, index, where)
        return self.string_at(pos, where) if pos else ""

    def strings(self, t: Table, index: int, where: str) -> tuple[str, ...]:
        start, n = self._vector(t, index, 4, where)
        return tuple(self.string_at(start + 4 * i, f"{where}[{i}]") for i in range(n))

    def tables(self, t: Table, index: int, where: str) -> list[tuple[str, Table]]:
        start, n = self._vector(t, index, 4, where)
        out = []
        for i in range(n):
            pos = start + 4 * i
            out.append((f"{where}[{i}]", self.table(pos + self.u32(pos, where), f"{where}[{i}]")))
        return out

    def version(self, t: Table, index: int, where: str, required: bool) -> tuple[int, int, int]:
        pos = self.slot(t, index, where)
        if not pos:
            if required:
                raise self.fail(where, "the required version is missing")
            return (0, 0, 0)
        self.need(pos, 3, where)
        return (self.buf[pos], self.buf[pos + 1], self.buf[pos + 2])


U8, U16, I16, U32, I32, U64 = (
    N.Uint8Flags,
    N.Uint16Flags,
    N.Int16Flags,
    N.Uint32Flags,
    N.Int32Flags,
    N.Uint64Flags,
)


def read_loadable(path: Path | str, validate_refs: bool = True) -> Loadable:
    """Parse ``path``; raises :class:`DlakitError` naming the file and field on bad input."""
    path = Path(path)
    if not path.is_file():
        raise DlakitError(f"loadable {path} not found")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DlakitError(f"{path}: {size} bytes is larger than any loadable ({MAX_FILE_BYTES})")
    data = path.read_bytes()
    if len(data) < 8:
        raise DlakitError(f"{path}: {len(data)} bytes is too short for a loadable")
    r = _Reader(path, data)
    root = r.table(r.u32(0, "root"), "Loadable")
    loadable = Loadable(
        path=path,
        version=r.version(root, 0, "Loadable.version", required=True),
        tasks=tuple(_task(r, w, t) for w, t in r.tables(root, 1, "task_list")),
        memory=tuple(_memory(r, w, t) for w, t in r.tables(root, 2, "memory_list")),
        addresses=tuple(_address(r, w, t) for w, t in r.tables(root, 3, "address_list")),
        events=tuple(_event(r, w, t) for w, t in r.tables(root, 4, "event_list")),
        blobs=tuple(_blob(r, w, t) for w, t in r.tables(root, 5, "blobs")),
        tensors=tuple(_tensor(r, w, t) for w, t in r.tables(root, 6, "tensor_desc_list")),
        relocs=tuple(_reloc(r, w, t) for w, t in r.tables(root, 7, "reloc_list")),
        submits=tuple(_submit(r, w, t) for w, t in r.tables(root, 8, "submit_list")),
    )
    if validate_refs:
        validate(loadable)
    return loadable


def _task(r: _Reader, w: str, t: Table) -> TaskEntry:
    return TaskEntry(
        id=r.scalar(t, 0, U16, f"{w}.id"),
        interface=r.scalar(t, 1, U32, f"{w}.interface"),
        instance=r.scalar(t, 2, I16, f"{w}.instance"),
        address_list=r.scalars(t, 3, U16, f"{w}.address_list"),
        pre_actions=r.scalars(t, 4, U16, f"{w}.pre_actions"),
        post_actions=r.scalars(t, 5, U16, f"{w}.post_actions"),
    )


def _memory(r: _Reader, w: str, t: Table) -> MemoryEntry:
    return MemoryEntry(
        id=r.scalar(t, 0, U16, f"{w}.id"),
        domain=r.scalar(t, 1, U8, f"{w}.domain"),
        flags=r.scalar(t, 2, U16, f"{w}.flags"),
        size=r.scalar(t, 3, U64, f"{w}.size"),
        alignment=r.scalar(t, 4, U32, f"{w}.alignment"),
        contents=r.strings(t, 5, f"{w}.contents"),
        offsets=r.scalars(t, 6, U64, f"{w}.offsets"),
        bind_id=r.scalar(t, 7, U16, f"{w}.bind_id"),
        tensor_desc_id=r.scalar(t, 8, U16, f"{w}.tensor_desc_id"),
    )


def _address(r: _Reader, w: str, t: Table) -> AddressEntry:
    return AddressEntry(
        id=r.scalar(t, 0, U16, f"{w}.id"),
        mem_id=r.scalar(t, 1, U16, f"{w}.mem_id"),
        offset=r.scalar(t, 2, U64, f"{w}.offset"),
        size=r.scalar(t, 3, U64, f"{w}.size"),
    )


def _event(r: _Reader, w: str, t: Table) -> EventEntry:
    return EventEntry(
        id=r.scalar(t, 0, U16, f"{w}.id"),
        type=r.scalar(t, 1, U8, f"{w}.type"),
        target=r.scalar(t, 2, U16, f"{w}.target"),
        val=r.scalar(t, 3, U32, f"{w}.val"),
        op=r.scalar(t, 4, U8, f"{w}.op"),
    )


def _blob(r: _Reader, w: str, t: Table) -> Blob:
    name = r.string(t, 0, f"{w}.name")
    data = r.raw_bytes(t, 5, f"{w}.data")
    size = r.scalar(t, 1, U64, f"{w}.size")
    if size != len(data):
        raise r.fail(f"{w} ({name}).size", f"says {size} bytes, its data has {len(data)}")
    return Blob(
        name=name,
        size=size,
        interface=r.scalar(t, 2, U32, f"{w}.interface"),
        sub_interface=r.scalar(t, 3, U32, f"{w}.sub_interface"),
        version=r.version(t, 4, f"{w}.version", required=False),
        data=data,
    )


def _tensor(r: _Reader, w: str, t: Table) -> TensorDesc:
    return TensorDesc(
        name=r.string(t, 0, f"{w}.name"),
        id=r.scalar(t, 1, U16, f"{w}.id"),
        mem_id=r.scalar(t, 2, U16, f"{w}.mem_id"),
        size=r.scalar(t, 3, U64, f"{w}.size"),
        offset=r.scalar(t, 4, U64, f"{w}.offset"),
        data_format=r.scalar(t, 5, U8, f"{w}.data_format"),
        data_type=r.scalar(t, 6, U8, f"{w}.data_type"),
        data_category=r.scalar(t, 7, U8, f"{w}.data_category"),
        pixel_format=r.scalar(t, 8, U8, f"{w}.pixel_format"),
        pixel_mapping=r.scalar(t, 9, U8, f"{w}.pixel_mapping"),
        n=r.scalar(t, 10, I32, f"{w}.n"),
        c=r.scalar(t, 11, I32, f"{w}.c"),
        h=r.scalar(t, 12, I32, f"{w}.h"),
        w=r.scalar(t, 13, I32, f"{w}.w"),
        strides=tuple(r.scalar(t, 14 + i, U32, f"{w}.stride_{i}") for i in range(8)),
    )


def _reloc(r: _Reader, w: str, t: Table) -> RelocEntry:
    return RelocEntry(
        address_id=r.scalar(t, 0, U16, f"{w}.address_id"),
        write_id=r.scalar(t, 1, U16, f"{w}.write_id"),
        offset=r.scalar(t, 2, U64, f"{w}.offset"),
        interface=r.scalar(t, 3, U32, f"{w}.interface"),
        sub_interface=r.scalar(t, 4, U32, f"{w}.sub_interface"),
        reloc_type=r.scalar(t, 5, U8, f"{w}.reloc_type"),
    )


def _submit(r: _Reader, w: str, t: Table) -> SubmitEntry:
    return SubmitEntry(
        id=r.scalar(t, 0, U16, f"{w}.id"), task_ids=r.scalars(t, 1, U16, f"{w}.task_id")
    )


def validate(ld: Loadable) -> None:
    """Check every cross reference the runtime follows (nvdla/sw ``Runtime::load``)."""
    p = ld.path
    if not ld.submits or not ld.tasks or not ld.memory:
        raise DlakitError(
            f"{p}: a loadable needs at least one submit entry, task and memory entry "
            f"(has {len(ld.submits)}, {len(ld.tasks)}, {len(ld.memory)})"
        )
    names = {b.name for b in ld.blobs}
    mem_ids = {m.id: m for m in ld.memory}
    if len(mem_ids) != len(ld.memory):
        raise DlakitError(f"{p}: memory_list has duplicate ids")
    for i, m in enumerate(ld.memory):
        where = f"{p}: memory_list[{i}] (id {m.id})"
        if m.flags & MemoryFlags.SET and not m.bindable:
            if len(m.contents) != len(m.offsets):
                raise DlakitError(
                    f"{where}: {len(m.contents)} contents but {len(m.offsets)} offsets"
                )
            for name, off in zip(m.contents, m.offsets, strict=True):
                if name not in names:
                    raise DlakitError(f"{where}: content blob {name!r} is not in the blob list")
                size = ld.blob(name).size
                if off + size > m.size:
                    raise DlakitError(
                        f"{where}: content {name!r} ({size} bytes at offset {off}) does not fit "
                        f"its {m.size} bytes"
                    )
    for i, a in enumerate(ld.addresses):
        where = f"{p}: address_list[{i}] (id {a.id})"
        mem = mem_ids.get(a.mem_id)
        if mem is None:
            raise DlakitError(f"{where}: mem_id {a.mem_id} is not in the memory list")
        if a.offset > mem.size or a.offset + a.size > mem.size:
            raise DlakitError(
                f"{where}: [{a.offset}, {a.offset + a.size}) lies outside memory {mem.id} "
                f"({mem.size} bytes)"
            )
    task_ids = {t.id for t in ld.tasks}
    for i, t in enumerate(ld.tasks):
        where = f"{p}: task_list[{i}]"
        if t.interface not in (Interface.DLA1, Interface.EMU1):
            raise DlakitError(f"{where}.interface: {t.interface} is neither DLA1 (1) nor EMU1 (2)")
        for j, ali in enumerate(t.address_list):
            if ali >= len(ld.addresses):
                raise DlakitError(
                    f"{where}.address_list[{j}]: address {ali} is not in the address list "
                    f"({len(ld.addresses)} entries)"
                )
        for name, actions in (("pre_actions", t.pre_actions), ("post_actions", t.post_actions)):
            for j, ev in enumerate(actions):
                if ev >= len(ld.events):
                    raise DlakitError(
                        f"{where}.{name}[{j}]: event {ev} is not in the event list "
                        f"({len(ld.events)} entries)"
                    )
    for i, s in enumerate(ld.submits):
        for j, tid in enumerate(s.task_ids):
            if tid >= len(ld.tasks) or tid not in task_ids:
                raise DlakitError(f"{p}: submit_list[{i}].task_id[{j}]: no task {tid}")
    for i, t in enumerate(ld.tensors):
        mem = mem_ids.get(t.mem_id)
        if mem is None:
            raise DlakitError(f"{p}: tensor_desc_list[{i}] ({t.name}): no memory {t.mem_id}")
        if min(t.n, t.c, t.h, t.w) < 0:
            raise DlakitError(f"{p}: tensor_desc_list[{i}] ({t.name}): negative dimensions")
    for m in ld.memory:
        if m.bindable:
            ld.tensor_of(m)
