"""Write a :class:`~dlakit.loadable.reader.Loadable` as the flatbuffer the NVDLA runtime loads.

Schema facts: nvdla/sw ``umd/core/src/common/loadable.fbs`` (tables, field order, types; root
``Loadable`` with its required ``version``); ``umd/core/src/common/Loadable.cpp``
``Loadable::serialize`` (the file identifier ``"NVDA"`` passed to ``Finish``, blobs in name order
as its symbol map keeps them, every blob with its version struct). Field slots are the schema's
declaration order; fields equal to their default are left out, as flatbuffers builders do.
"""

from __future__ import annotations

import flatbuffers

from dlakit.loadable.reader import Loadable

FILE_IDENTIFIER = b"NVDA"
LOADABLE_VERSION = (0, 7, 0)  # loadable.fbs LoadableVersionMajor/Minor/SubMinor


def _vector(b: flatbuffers.Builder, width: int, values, prepend) -> int:
    b.StartVector(width, len(values), width)
    for v in reversed(values):
        prepend(v)
    return b.EndVector()


def _u16s(b: flatbuffers.Builder, values) -> int:
    return _vector(b, 2, list(values), b.PrependUint16)


def _u64s(b: flatbuffers.Builder, values) -> int:
    return _vector(b, 8, list(values), b.PrependUint64)


def _tables(b: flatbuffers.Builder, offsets) -> int:
    return _vector(b, 4, list(offsets), b.PrependUOffsetTRelative)


def _version(b: flatbuffers.Builder, v: tuple[int, int, int]) -> int:
    """The ``Version`` struct, built inline just before the slot that holds it."""
    b.Prep(1, 3)
    for x in reversed(v):
        b.PrependUint8(x)
    return b.Offset()


def to_bytes(ld: Loadable) -> bytes:
    """The flatbuffer of ``ld``, with the runtime's file identifier."""
    b = flatbuffers.Builder(1 << 16)
    tasks = []
    for t in ld.tasks:
        al, pre, post = (_u16s(b, x) for x in (t.address_list, t.pre_actions, t.post_actions))
        b.StartObject(6)
        b.PrependUint16Slot(0, t.id, 0)
        b.PrependUint32Slot(1, t.interface, 0)
        b.PrependInt16Slot(2, t.instance, 0)
        b.PrependUOffsetTRelativeSlot(3, al, 0)
        b.PrependUOffsetTRelativeSlot(4, pre, 0)
        b.PrependUOffsetTRelativeSlot(5, post, 0)
        tasks.append(b.EndObject())
    mems = []
    for m in ld.memory:
        names = _tables(b, [b.CreateString(c) for c in m.contents])
        offs = _u64s(b, m.offsets)
        b.StartObject(9)
        b.PrependUint16Slot(0, m.id, 0)
        b.PrependUint8Slot(1, m.domain, 0)
        b.PrependUint16Slot(2, m.flags, 0)
        b.PrependUint64Slot(3, m.size, 0)
        b.PrependUint32Slot(4, m.alignment, 0)
        b.PrependUOffsetTRelativeSlot(5, names, 0)
        b.PrependUOffsetTRelativeSlot(6, offs, 0)
        b.PrependUint16Slot(7, m.bind_id, 0)
        b.PrependUint16Slot(8, m.tensor_desc_id, 0)
        mems.append(b.EndObject())
    addrs = []
    for a in ld.addresses:
        b.StartObject(4)
        b.PrependUint16Slot(0, a.id, 0)
        b.PrependUint16Slot(1, a.mem_id, 0)
        b.PrependUint64Slot(2, a.offset, 0)
        b.PrependUint64Slot(3, a.size, 0)
        addrs.append(b.EndObject())
    events = []
    for e in ld.events:
        b.StartObject(5)
        b.PrependUint16Slot(0, e.id, 0)
        b.PrependUint8Slot(1, e.type, 0)
        b.PrependUint16Slot(2, e.target, 0)
        b.PrependUint32Slot(3, e.val, 0)
        b.PrependUint8Slot(4, e.op, 0)
        events.append(b.EndObject())
    blobs = []
    for blob in sorted(ld.blobs, key=lambda x: x.name):
        name = b.CreateString(blob.name)
        data = b.CreateByteVector(blob.data)
        b.StartObject(6)
        b.PrependUOffsetTRelativeSlot(0, name, 0)
        b.PrependUint64Slot(1, blob.size, 0)
        b.PrependUint32Slot(2, blob.interface, 0)
        b.PrependUint32Slot(3, blob.sub_interface, 0)
        b.PrependStructSlot(4, _version(b, blob.version), 0)
        b.PrependUOffsetTRelativeSlot(5, data, 0)
        blobs.append(b.EndObject())
    tensors = []
    for t in ld.tensors:
        name = b.CreateString(t.name)
        b.StartObject(22)
        b.PrependUOffsetTRelativeSlot(0, name, 0)
        b.PrependUint16Slot(1, t.id, 0)
        b.PrependUint16Slot(2, t.mem_id, 0)
        b.PrependUint64Slot(3, t.size, 0)
        b.PrependUint64Slot(4, t.offset, 0)
        for slot, value in enumerate(
            (t.data_format, t.data_type, t.data_category, t.pixel_format, t.pixel_mapping), 5
        ):
            b.PrependUint8Slot(slot, value, 0)
        for slot, value in enumerate((t.n, t.c, t.h, t.w), 10):
            b.PrependInt32Slot(slot, value, 0)
        for i, stride in enumerate(t.strides):
            b.PrependUint32Slot(14 + i, stride, 0)
        tensors.append(b.EndObject())
    relocs = []
    for r in ld.relocs:
        b.StartObject(6)
        b.PrependUint16Slot(0, r.address_id, 0)
        b.PrependUint16Slot(1, r.write_id, 0)
        b.PrependUint64Slot(2, r.offset, 0)
        b.PrependUint32Slot(3, r.interface, 0)
        b.PrependUint32Slot(4, r.sub_interface, 0)
        b.PrependUint8Slot(5, r.reloc_type, 0)
        relocs.append(b.EndObject())
    submits = []
    for s in ld.submits:
        ids = _u16s(b, s.task_ids)
        b.StartObject(2)
        b.PrependUint16Slot(0, s.id, 0)
        b.PrependUOffsetTRelativeSlot(1, ids, 0)
        submits.append(b.EndObject())
    lists = [_tables(b, x) for x in (tasks, mems, addrs, events, blobs, tensors, relocs, submits)]
    b.StartObject(9)
    b.PrependStructSlot(0, _version(b, ld.version), 0)
    for slot, offset in enumerate(lists, 1):
        b.PrependUOffsetTRelativeSlot(slot, offset, 0)
    b.Finish(b.EndObject(), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())
