"""Write a (possibly altered) :class:`dlakit.loadable.reader.Loadable` back to flatbuffer bytes,
following nvdla/sw ``loadable.fbs``: the tests' way to make corrupt and adversarial loadables
from real ones. Independent of the reader: it uses only the flatbuffers Builder."""

from __future__ import annotations

import dataclasses

import flatbuffers

from dlakit.loadable.reader import Loadable


def _u16_vector(b: flatbuffers.Builder, values) -> int:
    b.StartVector(2, len(values), 2)
    for v in reversed(values):
        b.PrependUint16(v)
    return b.EndVector()


def _u64_vector(b: flatbuffers.Builder, values) -> int:
    b.StartVector(8, len(values), 8)
    for v in reversed(values):
        b.PrependUint64(v)
    return b.EndVector()


def _offsets(b: flatbuffers.Builder, offsets) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _version(b: flatbuffers.Builder, v) -> int:
    b.Prep(1, 3)
    for x in reversed(v):
        b.PrependUint8(x)
    return b.Offset()


def build(ld: Loadable) -> bytes:
    b = flatbuffers.Builder(1024)
    tasks = []
    for t in ld.tasks:
        al, pre, post = (
            _u16_vector(b, list(x)) for x in (t.address_list, t.pre_actions, t.post_actions)
        )
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
        names = _offsets(b, [b.CreateString(c) for c in m.contents])
        offs = _u64_vector(b, list(m.offsets))
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
    for bl in ld.blobs:
        name = b.CreateString(bl.name)
        data = b.CreateByteVector(bl.data)
        b.StartObject(6)
        b.PrependUOffsetTRelativeSlot(0, name, 0)
        b.PrependUint64Slot(1, bl.size, 0)
        b.PrependUint32Slot(2, bl.interface, 0)
        b.PrependUint32Slot(3, bl.sub_interface, 0)
        b.PrependStructSlot(4, _version(b, bl.version), 0)
        b.PrependUOffsetTRelativeSlot(5, data, 0)
        blobs.append(b.EndObject())
    tensors = []
    for t in ld.tensors:
        name = b.CreateString(t.name)
        b.StartObject(22)
        b.PrependUOffsetTRelativeSlot(0, name, 0)
        for slot, v in ((1, t.id), (2, t.mem_id)):
            b.PrependUint16Slot(slot, v, 0)
        b.PrependUint64Slot(3, t.size, 0)
        b.PrependUint64Slot(4, t.offset, 0)
        for slot, v in (
            (5, t.data_format),
            (6, t.data_type),
            (7, t.data_category),
            (8, t.pixel_format),
            (9, t.pixel_mapping),
        ):
            b.PrependUint8Slot(slot, v, 0)
        for slot, v in ((10, t.n), (11, t.c), (12, t.h), (13, t.w)):
            b.PrependInt32Slot(slot, v, 0)
        for i, v in enumerate(t.strides):
            b.PrependUint32Slot(14 + i, v, 0)
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
        ids = _u16_vector(b, list(s.task_ids))
        b.StartObject(2)
        b.PrependUint16Slot(0, s.id, 0)
        b.PrependUOffsetTRelativeSlot(1, ids, 0)
        submits.append(b.EndObject())
    lists = [_offsets(b, x) for x in (tasks, mems, addrs, events, blobs, tensors, relocs, submits)]
    b.StartObject(9)
    b.PrependStructSlot(0, _version(b, ld.version), 0)
    for slot, off in enumerate(lists, start=1):
        b.PrependUOffsetTRelativeSlot(slot, off, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def replace(ld: Loadable, **changes) -> Loadable:
    return dataclasses.replace(ld, **changes)
