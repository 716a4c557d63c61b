"""The firmware view of a loadable's DLA tasks, read without running them: network descriptor,
dependency graph and each operation's op and surface descriptors, resolved through the task's
address list to the memory contents the runtime would load (for ``loadable inspect``)."""

from __future__ import annotations

from dataclasses import dataclass

from dlakit.errors import DlakitError
from dlakit.loadable.descriptors import Record, Version, decode, layout
from dlakit.loadable.firmware.engine import OP_NAMES
from dlakit.loadable.reader import Interface, Loadable, TaskEntry


@dataclass(frozen=True)
class Operation:
    index: int
    op_type: str
    dependency: Record
    op: Record
    surface: Record


@dataclass(frozen=True)
class DlaNetwork:
    task_id: int
    version: Version
    network: Record
    operations: tuple[Operation, ...]
    luts: int


def _memory_bytes(ld: Loadable, task: TaskEntry, index: int, what: str) -> bytes:
    """The initial contents of the memory that task address ``index`` points into, from there."""
    where = f"{ld.path}: task {task.id} {what}"
    if not 0 <= index < len(task.address_list):
        raise DlakitError(
            f"{where}: address index {index} is not in the task's address list "
            f"({len(task.address_list)} entries)"
        )
    entry = ld.addresses[task.address_list[index]]
    mem = next(m for m in ld.memory if m.id == entry.mem_id)
    data = bytearray(mem.size)
    for name, off in zip(mem.contents, mem.offsets, strict=False):
        blob = ld.blob(name).data
        data[off : off + len(blob)] = blob
    return bytes(data[entry.offset :])


def _version(ld: Loadable, task: TaskEntry) -> Version:
    entry = ld.addresses[task.address_list[0]]
    mem = next(m for m in ld.memory if m.id == entry.mem_id)
    if not mem.contents:
        raise DlakitError(f"{ld.path}: task {task.id}: its network descriptor memory is empty")
    return ld.blob(mem.contents[0]).version


def read_network(ld: Loadable, task: TaskEntry) -> DlaNetwork:
    if task.interface != Interface.DLA1:
        raise DlakitError(f"{ld.path}: task {task.id} is not a DLA task")
    if not task.address_list:
        raise DlakitError(f"{ld.path}: task {task.id} has an empty address list")
    v = _version(ld, task)
    net = decode("dla_network_desc", _memory_bytes(ld, task, 0, "network descriptor"), 0, v)
    n = int(net.num_operations)
    deps = _memory_bytes(ld, task, int(net.dependency_graph_index), "dependency graph")
    ops = _memory_bytes(ld, task, int(net.operation_desc_index), "operation list")
    surfs = _memory_bytes(ld, task, int(net.surface_desc_index), "surface list")
    dep_size = layout("dla_common_op_desc", v).size
    op_size = layout("dla_operation_container", v).size
    surf_size = layout("dla_surface_container", v).size
    operations = []
    for i in range(n):
        dep = decode("dla_common_op_desc", deps, i * dep_size, v)
        kind = int(dep.op_type)
        if kind >= len(OP_NAMES):
            raise DlakitError(f"{ld.path}: task {task.id} operation {i}: op_type {kind} is unknown")
        name = OP_NAMES[kind].lower()
        operations.append(
            Operation(
                index=i,
                op_type=OP_NAMES[kind],
                dependency=dep,
                op=decode(f"dla_{name}_op_desc", ops, i * op_size, v),
                surface=decode(f"dla_{name}_surface_desc", surfs, i * surf_size, v),
            )
        )
    return DlaNetwork(task.id, v, net, tuple(operations), int(net.num_luts))


def dla_networks(ld: Loadable) -> list[DlaNetwork]:
    return [read_network(ld, t) for t in ld.tasks if t.interface == Interface.DLA1]
