"""The KMD firmware's scheduler, modelled on nvdla/sw ``kmd/firmware`` (scheduler.c, cache.c,
engine.c, engine_isr.c, engine_data.c).

One task: read the network descriptor (address-list entry 0), then for each of the six
processors (BDMA, CONV, SDP, PDP, CDP, RUBIK) submit the head of its operation list. An operation
is *prepared* into a free register group (two ping-pong groups per processor), *programmed*
(register writes through the CSB, the same path as a trace), and *enabled* once its dependency
count reaches zero. Dependencies are the graph's consumer edges: each operation names, per
processor, the consumer it unblocks and on which event (programmed, enabled, completed, CDMA
weight/data done). The interrupt handler turns GLB ``S_INTR_STATUS`` bits into group events;
``process_events`` completes operations, which decrements their consumers, programs the next
pending group and dequeues the next operation of the same type (the op graph's own-type
consumer). Dependency-graph entries live in DLA memory and are cached with reference counts;
an entry's count is written back when its last reference goes (cache.c).

The simulator finishes an operation as soon as its last unit is enabled, so interrupts are pending
right after an enable; the event loop (as the Linux port's submit loop) handles them until every
operation has completed, and names the operations left when nothing can progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from dlakit.errors import DlakitError
from dlakit.loadable.descriptors import Record, Version, decode, layout

if TYPE_CHECKING:
    from dlakit.loadable.runtime import TaskAddress
    from dlakit.sim.nvdla import Nvdla

OP_NAMES = ("BDMA", "CONV", "SDP", "PDP", "CDP", "RUBIK")
BDMA, CONV, SDP, PDP, CDP, RUBIK = range(6)
MEM_MC, MEM_CV, MEM_HW = 0, 1, 2
EVENT_COMPLETED, EVENT_PROGRAMMED, EVENT_ENABLED, EVENT_CDMA_WT, EVENT_CDMA_DT = 1, 2, 3, 4, 5
EVENT_NAMES = {1: "completed", 2: "programmed", 3: "enabled", 4: "CDMA weights", 5: "CDMA data"}
PRECISION_INT8, PRECISION_INT16, PRECISION_FP16 = 0, 1, 2
DCUBE_MAX = 8192
_MAX_STEPS = 1_000_000


class FirmwareError(DlakitError):
    """The firmware refused a descriptor (it would return ERR(INVALID_INPUT))."""


@dataclass(frozen=True)
class FirmwareConfig:
    """``struct nvdla_config`` of the Linux port: what this NVDLA has."""

    atom_size: int
    bdma_enable: bool
    rubik_enable: bool
    weight_compress_support: bool


@dataclass
class OpDesc:
    """A cached dependency-graph entry (``dla_common_op_desc``) with its mutable count."""

    index: int
    roi_index: int
    op_type: int
    dependency_count: int
    consumers: list[tuple[int, int]]  # (index, event) per processor
    fused_parent: tuple[int, int]
    refcount: int = 0


@dataclass
class Group:
    id: int
    op_desc: OpDesc | None = None
    operation: Record | None = None
    surface: Record | None = None
    consumers: list[OpDesc | None] = field(default_factory=lambda: [None] * 6)
    fused_parent: OpDesc | None = None
    rdma_id: int = 0
    roi_index: int = 0
    active: bool = False
    pending: bool = False
    programming: bool = False
    is_rdma_needed: bool = False
    lut_index: int = -1
    events: int = 0


class Unit(Protocol):
    """One processor's hardware programming (bdma.c, conv.c, sdp.c, pdp.c, cdp.c, rubik.c)."""

    def set_producer(self, fw: Firmware, group_id: int, rdma_id: int) -> None: ...
    def program(self, fw: Firmware, group: Group) -> None: ...
    def enable(self, fw: Firmware, group: Group) -> None: ...
    def rdma_check(self, fw: Firmware, group: Group) -> None: ...
    def is_ready(self, fw: Firmware, proc: Processor, group: Group) -> bool: ...


@dataclass
class Processor:
    op_type: int
    unit: Unit
    groups: list[Group] = field(default_factory=lambda: [Group(0), Group(1)])
    group_status: int = 0
    rdma_status: int = 0
    roi_index: int = 0
    tail_op: OpDesc | None = None
    last_group: int = 1
    consumer_ptr: int = 0

    @property
    def name(self) -> str:
        return OP_NAMES[self.op_type]


class Firmware:
    """The firmware running one DLA task against a simulated NVDLA."""

    def __init__(
        self,
        nv: Nvdla,
        addresses: list[TaskAddress],
        config: FirmwareConfig,
        version: Version,
        where: str,
    ) -> None:
        from dlakit.loadable.firmware import units

        self.nv = nv
        self.addresses = addresses
        self.config = config
        self.version = version
        self.where = where
        self.processors = [Processor(i, units.UNITS[i]) for i in range(6)]
        self.cache: dict[tuple[int, int], OpDesc] = {}
        self.num_proc_hwl = 0
        self.status: DlakitError | None = None
        self.network: Record | None = None
        self.op_list_addr = self.surf_list_addr = self.dep_graph_addr = self.lut_addr = 0
        self.op_size = layout("dla_operation_container", version).size
        self.surf_size = layout("dla_surface_container", version).size
        self.dep_size = layout("dla_common_op_desc", version).size
        self.programmed: list[str] = []  # "SDP 3" in program order, for reports

    # -- memory and registers ----------------------------------------------------------------
    def fail(self, what: str) -> FirmwareError:
        return FirmwareError(f"{self.where}: {what}")

    def dma_address(self, index: int, what: str) -> int:
        """IOVA of task address-list entry ``index`` (``dla_get_dma_address``)."""
        if not 0 <= index < len(self.addresses):
            raise self.fail(
                f"{what}: address index {index} is not in the task's address list "
                f"({len(self.addresses)} entries)"
            )
        return self.addresses[index].iova

    def cube_address(self, cube: Record, what: str, extent: int | None = None) -> int:
        """Address of a data cube (``dla_get_dma_cube_address``), checked against its memory."""
        index = int(cube.address)
        base = self.dma_address(index, what)
        addr = base + int(cube.get("offset", 0))
        limit = self.addresses[index].limit
        size = int(cube.size) if extent is None else extent
        if addr + max(size, 1) > limit:
            raise self.fail(
                f"{what}: {size} bytes at address index {index} + offset "
                f"{addr - base} run past the end of memory {self.addresses[index].mem_id}"
            )
        return addr

    def check_align(self, value: int, align: int, what: str) -> None:
        if value % align:
            raise self.fail(f"{what}={value} is not a multiple of {align} (CHECK_ALIGN)")

    def read(self, addr: int, size: int, what: str) -> bytes:
        try:
            return self.nv.memory.read(addr, size)
        except DlakitError as exc:
            raise self.fail(f"{what}: {exc}") from None

    def decode(self, struct_name: str, addr: int, index: int, stride: int, what: str) -> Record:
        lay = layout(struct_name, self.version)
        data = self.read(addr + index * stride, lay.size, what)
        return decode(struct_name, data, 0, self.version)

    def reg(self, unit: str, name: str) -> int:
        return self.nv.read_reg(unit, name)

    def write(self, unit: str, name: str, value: int) -> None:
        r = self.nv.regmap.register(unit, name)
        self.nv.write(r.address, value & 0xFFFFFFFF)

    def word(self, unit: str, name: str, **fields: int | str) -> int:
        """Fields shifted into place and OR-ed, as the firmware builds register values: enum
        names resolve through the register map; values are not masked to their field width."""
        r = self.nv.regmap.register(unit, name)
        value = 0
        for fname, v in fields.items():
            fld = r.field(fname)
            if isinstance(v, str):
                if v not in fld.enums:
                    raise DlakitError(f"{unit}.{name}.{fname} has no value {v}")
                v = fld.enums[v]
            value |= (int(v) << fld.lsb) & 0xFFFFFFFF
        return value

    def field_mask(self, unit: str, name: str, fname: str) -> int:
        return self.nv.regmap.register(unit, name).field(fname).mask

    def enum(self, unit: str, name: str, fname: str, value: str) -> int:
        return self.nv.regmap.register(unit, name).field(fname).enums[value]

    def enable_intr(self, *masks: str) -> None:
        r = self.nv.regmap.register("GLB", "S_INTR_MASK")
        value = self.reg("GLB", "S_INTR_MASK")
        for m in masks:
            value &= ~r.field(m).mask
        self.write("GLB", "S_INTR_MASK", value)

    # -- the dependency-graph cache (cache.c) --------------------------------------------------
    def get_op_desc(self, index: int, op_type: int, roi: int) -> OpDesc | None:
        if index == -1:
            return None
        assert self.network is not None
        num_ops = int(self.network.num_operations)
        if not 0 <= index < num_ops:
            raise self.fail(
                f"dependency graph: operation index {index} is outside the network's "
                f"{num_ops} operations"
            )
        key = (index, roi)
        desc = self.cache.get(key)
        if desc is not None:
            if desc.op_type != op_type:
                raise self.fail(
                    f"dependency graph entry {index} is a {OP_NAMES[desc.op_type]} operation, "
                    f"referenced as {OP_NAMES[op_type]}"
                )
            desc.refcount += 1
            return desc
        base = self.dep_graph_addr + self.dep_size * num_ops * roi
        rec = self.decode("dla_common_op_desc", base, index, self.dep_size, "dependency graph")
        if int(rec.op_type) != op_type:
            raise self.fail(
                f"dependency graph entry {index} has op_type {rec.op_type}, expected "
                f"{op_type} ({OP_NAMES[op_type]})"
            )
        desc = OpDesc(
            index=index,
            roi_index=roi,
            op_type=op_type,
            dependency_count=int(rec.dependency_count),
            consumers=[(int(c.index), int(c.event)) for c in rec.consumers],
            fused_parent=(int(rec.fused_parent.index), int(rec.fused_parent.event)),
            refcount=1,
        )
        for i, (ci, _) in enumerate([*desc.consumers, desc.fused_parent]):
            if ci != -1 and not 0 <= ci < num_ops:
                edge = f"consumers[{i}]" if i < 6 else "fused_parent"
                raise self.fail(
                    f"dependency graph entry {index}.{edge}: operation {ci} is outside the "
                    f"network's {num_ops} operations"
                )
        self.cache[key] = desc
        return desc

    def get_refcount(self, desc: OpDesc | None) -> None:
        if desc is not None:
            desc.refcount += 1

    def put_op_desc(self, desc: OpDesc | None) -> None:
        if desc is None or self.cache.get((desc.index, desc.roi_index)) is not desc:
            return
        desc.refcount -= 1
        if desc.refcount == 0:
            # Flush the (decremented) dependency count back to DLA memory, then forget it.
            assert self.network is not None
            base = self.dep_graph_addr + self.dep_size * int(self.network.num_operations) * (
                desc.roi_index
            )
            self.nv.memory.write(
                base + desc.index * self.dep_size + 4, bytes([desc.dependency_count])
            )
            del self.cache[(desc.index, desc.roi_index)]

    # -- scheduler.c ---------------------------------------------------------------------------
    def read_network(self) -> Record:
        net = self.decode(
            "dla_network_desc",
            self.dma_address(0, "network descriptor"),
            0,
            0,
            "network descriptor",
        )
        self.network = net
        if int(net.num_operations) == 0:
            return net
        self.op_list_addr = self.dma_address(int(net.operation_desc_index), "operation list")
        self.surf_list_addr = self.dma_address(int(net.surface_desc_index), "surface list")
        self.dep_graph_addr = self.dma_address(int(net.dependency_graph_index), "dependency graph")
        if int(net.num_luts):
            self.lut_addr = self.dma_address(int(net.lut_data_index), "LUT list")
        lists = [
            (
                "operation list",
                int(net.operation_desc_index),
                self.op_size,
                int(net.num_operations),
            ),
            ("surface list", int(net.surface_desc_index), self.surf_size, int(net.num_operations)),
            (
                "dependency graph",
                int(net.dependency_graph_index),
                self.dep_size,
                int(net.num_operations),
            ),
        ]
        if int(net.num_luts):
            lut_size = layout("dla_lut_param", self.version).size
            lists.append(("LUT list", int(net.lut_data_index), lut_size, int(net.num_luts)))
        for what, index, size, count in lists:
            room = self.addresses[index].limit - self.addresses[index].iova
            if size * count > room:
                raise self.fail(
                    f"network descriptor: {count} entries of the {what} ({size} bytes each) do "
                    f"not fit its memory ({room} bytes at address index {index})"
                )
        if int(net.dynamic_roi):
            raise self.fail("network descriptor: dynamic ROI is not modelled")
        if int(net.num_rois) > 1:
            raise self.fail(f"network descriptor: {net.num_rois} ROIs (only one is modelled)")
        return net

    def read_lut(self, index: int) -> Record:
        assert self.network is not None
        if not 0 <= index < int(self.network.num_luts):
            raise self.fail(
                f"LUT index {index} is outside the network's {self.network.num_luts} LUTs"
            )
        lay = layout("dla_lut_param", self.version)
        return self.decode("dla_lut_param", self.lut_addr, index, lay.size, "LUT list")

    def read_config(self, proc: Processor, group: Group) -> None:
        assert group.op_desc is not None and self.network is not None
        index = group.op_desc.index
        name = OP_NAMES[proc.op_type].lower()
        where = f"{proc.name} operation {index}"
        group.operation = self.decode(
            f"dla_{name}_op_desc", self.op_list_addr, index, self.op_size, f"{where} descriptor"
        )
        group.surface = self.decode(
            f"dla_{name}_surface_desc",
            self.surf_list_addr,
            index,
            self.surf_size,
            f"{where} surface descriptor",
        )

    def free_group(self, proc: Processor) -> tuple[int, int] | None:
        """``utils_get_free_group``: (group, rdma group), or None when both are programmed."""
        units = self.nv.regmap.registers
        hw_consumer = hw_rdma = 0  # a block this configuration lacks reads as zero
        if proc.op_type == BDMA:
            if "BDMA" in units:
                busy = units["BDMA"]["STATUS"].field("GRP0_BUSY")
                hw_consumer = 1 if busy.get(self.reg("BDMA", "STATUS")) else 0
        else:
            unit = _POINTER_UNIT[proc.op_type]
            if unit in units:
                hw_consumer = (self.reg(unit, "S_POINTER") >> 16) & 1
            rdma = _RDMA_UNIT.get(proc.op_type)
            if rdma:
                hw_rdma = (self.reg(rdma, "S_POINTER") >> 16) & 1
        if proc.group_status == 0x3:
            return None
        group_id = hw_consumer if not proc.group_status else int(not (proc.group_status >> 1))
        rdma_id = hw_rdma if not proc.rdma_status else int(not (proc.rdma_status >> 1))
        return group_id, rdma_id

    def prepare(self, proc: Processor, op: OpDesc, roi: int) -> int | None:
        free = self.free_group(proc)
        if free is None:
            return None  # PROCESSOR_BUSY: the completion of a group submits it later
        group_id, rdma_id = free
        group = proc.groups[group_id]
        group.op_desc = op
        self.get_refcount(op)
        group.id = group_id
        group.roi_index = roi
        group.rdma_id = rdma_id
        self.read_config(proc, group)
        group.pending = True
        proc.group_status |= 1 << group_id
        proc.unit.rdma_check(self, group)
        if group.is_rdma_needed:
            group.rdma_id = rdma_id
            proc.rdma_status |= 1 << rdma_id
        proc.tail_op = op
        return group_id

    def program_op(self, proc: Processor, group: Group) -> None:
        assert group.op_desc is not None
        group.programming = True
        op = group.op_desc
        proc.unit.set_producer(self, group.id, group.rdma_id)
        proc.unit.program(self, group)
        self.programmed.append(f"{proc.name} {op.index}")
        for i in range(6):
            group.consumers[i] = self.get_op_desc(op.consumers[i][0], i, group.roi_index)
        parent = op.fused_parent[0]
        group.fused_parent = self.get_op_desc(parent, op.op_type - 1, group.roi_index)
        group.pending = False
        self.update_consumers(group, op, EVENT_PROGRAMMED)
        group.programming = False

    def enable_op(self, proc: Processor, op: OpDesc) -> None:
        if self.status is not None:
            return
        for group in proc.groups:
            if (
                proc.group_status & (1 << group.id)
                and group.op_desc is not None
                and group.op_desc.index == op.index
                and group.roi_index == op.roi_index
                and not group.pending
            ):
                break
        else:
            return  # not programmed yet: programming enables it when the count is zero
        if group.programming or group.active:
            return
        proc.unit.set_producer(self, group.id, group.rdma_id)
        proc.unit.enable(self, group)
        group.active = True
        self.update_consumers(group, op, EVENT_ENABLED)

    def submit_op(self, proc: Processor, op: OpDesc, roi: int) -> None:
        group_id = self.prepare(proc, op, roi)
        if group_id is None:
            return
        group = proc.groups[group_id]
        if not proc.unit.is_ready(self, proc, group):
            return
        self.program_op(proc, group)
        if op.dependency_count == 0:
            self.enable_op(proc, op)

    def dequeue(self, proc: Processor) -> None:
        if self.status is not None or proc.tail_op is None:
            return
        index = proc.tail_op.consumers[proc.op_type][0]
        if index == -1:
            return
        proc.roi_index = 0
        op = self.get_op_desc(index, proc.op_type, 0)
        assert op is not None
        self.submit_op(proc, op, 0)
        self.put_op_desc(op)

    def update_dependency(self, edge: tuple[int, int], op: OpDesc | None, event: int) -> None:
        index, want = edge
        if index == -1 or event != want:
            return
        if op is None:
            raise self.fail(f"consumer {index} was not fetched before its event")
        if op.dependency_count == 0:
            raise self.fail(
                f"{OP_NAMES[op.op_type]} operation {op.index}: more events arrive than its "
                "dependency count"
            )
        op.dependency_count -= 1
        if op.dependency_count == 0:
            self.enable_op(self.processors[op.op_type], op)

    def update_consumers(self, group: Group, op: OpDesc, event: int) -> None:
        if self.status is not None:
            return
        for i in range(6):
            self.update_dependency(op.consumers[i], group.consumers[i], event)
        self.update_dependency(op.fused_parent, group.fused_parent, event)

    def complete(self, proc: Processor, group: Group) -> None:
        """``dla_op_completion``."""
        assert group.op_desc is not None and self.network is not None
        self.num_proc_hwl += 1
        op = group.op_desc
        self.get_refcount(op)
        proc.group_status &= ~(1 << group.id)
        if group.is_rdma_needed:
            group.is_rdma_needed = False
            proc.rdma_status &= ~(1 << group.rdma_id)
            group.rdma_id = 0
        group.active = False
        group.lut_index = -1
        proc.last_group = group.id
        proc.consumer_ptr = int(not group.id)
        self.update_consumers(group, op, EVENT_COMPLETED)
        for i in range(6):
            self.put_op_desc(group.consumers[i])
            group.consumers[i] = None
        self.put_op_desc(group.fused_parent)
        group.fused_parent = None
        self.put_op_desc(group.op_desc)
        group.op_desc = None
        if int(self.network.num_operations) == self.num_proc_hwl:
            self.put_op_desc(op)
            return
        nxt = proc.groups[int(not group.id)]
        if nxt.pending and self.status is None and proc.unit.is_ready(self, proc, nxt):
            self.program_op(proc, nxt)
            assert nxt.op_desc is not None
            if nxt.op_desc.dependency_count == 0:
                self.enable_op(proc, nxt.op_desc)
        self.dequeue(proc)
        self.put_op_desc(op)

    def isr(self) -> bool:
        """``dla_isr_handler``: GLB status bits to group events; True if any bit was set."""
        status = self.reg("GLB", "S_INTR_STATUS")
        if not status:
            return False
        r = self.nv.regmap.register("GLB", "S_INTR_STATUS")
        for stem, op_type, event in _INTERRUPTS:
            for g in (0, 1):
                if status & r.field(f"{stem}{g}").mask:
                    self.processors[op_type].groups[g].events |= 1 << event
        self.write("GLB", "S_INTR_STATUS", status)
        return True

    def process_events(self) -> bool:
        """``dla_process_events``; True if some event was handled."""
        handled = False
        for proc in self.processors:
            group_id = int(not proc.last_group)
            for _ in range(2):
                group = proc.groups[group_id]
                if group.events:
                    handled = True
                    events, group.events = group.events, 0
                    assert group.op_desc is not None
                    if events & (1 << EVENT_CDMA_WT):
                        self.update_consumers(group, group.op_desc, EVENT_CDMA_WT)
                    if events & (1 << EVENT_CDMA_DT):
                        self.update_consumers(group, group.op_desc, EVENT_CDMA_DT)
                    if events & (1 << EVENT_COMPLETED):
                        self.complete(proc, group)
                group_id = int(not group_id)
        return handled

    def execute(self) -> int:
        """Run the task to completion; returns the number of hardware operations."""
        net = self.read_network()
        num_ops = int(net.num_operations)
        if num_ops == 0:
            return 0
        for i, head in enumerate(net.op_head):
            if head >= num_ops:
                raise self.fail(
                    f"network descriptor op_head[{i}]={head}: only {num_ops} operations"
                )
        for i, head in enumerate(net.op_head):
            if head == -1:
                continue
            op = self.get_op_desc(int(head), i, 0)
            assert op is not None
            proc = self.processors[op.op_type]
            self.submit_op(proc, op, 0)
            self.put_op_desc(op)
            self.dequeue(proc)
        for _ in range(_MAX_STEPS):
            if self.num_proc_hwl >= num_ops:
                return self.num_proc_hwl
            interrupted = self.isr()
            if not self.process_events() and not interrupted:
                break
        left = [
            f"{p.name} {g.op_desc.index}" + (" (programmed, waiting)" if not g.active else "")
            for p in self.processors
            for g in p.groups
            if g.op_desc is not None
        ]
        raise self.fail(
            f"the task stopped after {self.num_proc_hwl} of {num_ops} operations: nothing can "
            f"progress (in the register groups: {', '.join(left) or 'none'}); the dependency "
            "graph waits on events that never come"
        )


_POINTER_UNIT = {CONV: "CACC", SDP: "SDP", PDP: "PDP", CDP: "CDP", RUBIK: "RBK"}
_RDMA_UNIT = {SDP: "SDP_RDMA", PDP: "PDP_RDMA", CDP: "CDP_RDMA"}
# (GLB S_INTR_STATUS field stem, processor, event), in engine_isr.c's order.
_INTERRUPTS = (
    ("CACC_DONE_STATUS", CONV, EVENT_COMPLETED),
    ("SDP_DONE_STATUS", SDP, EVENT_COMPLETED),
    ("CDP_DONE_STATUS", CDP, EVENT_COMPLETED),
    ("RUBIK_DONE_STATUS", RUBIK, EVENT_COMPLETED),
    ("PDP_DONE_STATUS", PDP, EVENT_COMPLETED),
    ("BDMA_DONE_STATUS", BDMA, EVENT_COMPLETED),
    ("CDMA_DAT_DONE_STATUS", CONV, EVENT_CDMA_DT),
    ("CDMA_WT_DONE_STATUS", CONV, EVENT_CDMA_WT),
)
