"""Run a loadable end to end: load (runtime), bind input and output, submit every task of the
submit list in order (DLA tasks through the firmware model on the simulated NVDLA, EMU tasks on
the CPU emulator) and read the bound output back.

As the runtime test application does (nvdla/sw ``umd/apps/runtime/RuntimeTest.cpp``): the output
buffer starts zeroed; the input buffer holds the caller's tensor, or zeros when there is none
(the KMD regression tests run without an image: ``dla_client.py`` sends only the flatbuffer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dlakit.errors import DlakitError
from dlakit.loadable.descriptors import Version
from dlakit.loadable.emulator import run_emu_task
from dlakit.loadable.firmware import Firmware, FirmwareConfig
from dlakit.loadable.reader import Interface, Loadable, MemoryFlags, TensorDesc
from dlakit.loadable.runtime import Placement
from dlakit.sim.nvdla import Nvdla

if TYPE_CHECKING:  # torch comes with the 'sim' extra, named by dlakit.sim's import
    import torch


@dataclass
class TaskRun:
    task_id: int
    interface: str
    operations: int
    seconds: float
    programmed: list[str] = field(default_factory=list)


@dataclass
class LoadableRun:
    output: bytes
    output_tensor: TensorDesc
    tasks: list[TaskRun]
    seconds: float


def firmware_config(nv: Nvdla) -> FirmwareConfig:
    """``nvdla_config`` of the Linux port for this target (atom size, BDMA, RUBIK)."""
    return FirmwareConfig(
        atom_size=nv.config.memory_atomic,
        bdma_enable=nv.config.has("bdma"),
        rubik_enable=nv.config.has("rubik"),
        weight_compress_support=nv.config.has("weight_compression"),
    )


def firmware_version(ld: Loadable, placement: Placement, task_addresses: list[int]) -> Version:
    """The descriptor interface version: that of the blob holding the network descriptor
    (address-list entry 0 of the task)."""
    if not task_addresses:
        raise DlakitError(f"{ld.path}: a DLA task with an empty address list has no network")
    entry = ld.addresses[task_addresses[0]]
    mem = next(m for m in ld.memory if m.id == entry.mem_id)
    if not mem.contents:
        raise DlakitError(
            f"{ld.path}: memory {mem.id} (the network descriptor of a DLA task) has no content"
        )
    return ld.blob(mem.contents[0]).version


@dataclass
class BoundRun:
    """Every bound output buffer's bytes (by bind id) after a run."""

    outputs: dict[int, bytes]
    tasks: list[TaskRun]
    seconds: float


def run_bound(
    ld: Loadable,
    target: str = "nv_full",
    inputs: dict[int, bytes] | None = None,
    device: str | torch.device | None = "cpu",
) -> BoundRun:
    """Run ``ld`` with ``inputs`` (bind id -> the bytes of that input buffer; an input left
    out is zero) and return every bound output buffer."""
    start = time.perf_counter()
    nv = Nvdla(target, device=device)
    placement = Placement(ld, nv.memory)
    placement.fill_contents()
    bound_in = {m.bind_id: m for m in ld.bound(MemoryFlags.INPUT)}
    for bind_id, data in (inputs or {}).items():
        if bind_id not in bound_in:
            raise DlakitError(f"{ld.path}: the loadable binds no input {bind_id}")
        mem = bound_in[bind_id]
        tensor = ld.tensor_of(mem)
        if tensor.offset + len(data) > mem.size:
            raise DlakitError(
                f"{ld.path}: input {bind_id} ({tensor.name!r}) takes {mem.size - tensor.offset} "
                f"bytes, got {len(data)}"
            )
        placement.write(mem.id, tensor.offset, data)
    placement.reload_dep_graphs()
    config = firmware_config(nv)
    runs: list[TaskRun] = []
    for submit in ld.submits:
        for task_id in submit.task_ids:
            task = ld.tasks[task_id]
            t0 = time.perf_counter()
            where = f"{ld.path.name} task {task.id}"
            if task.interface == Interface.DLA1:
                version = firmware_version(ld, placement, list(task.address_list))
                fw = Firmware(nv, placement.task_addresses(task), config, version, where)
                ops = fw.execute()
                runs.append(TaskRun(task.id, "DLA1", ops, time.perf_counter() - t0, fw.programmed))
            else:
                ops = run_emu_task(ld, placement, task, where)
                runs.append(TaskRun(task.id, "EMU1", ops, time.perf_counter() - t0))
    outputs = {}
    for mem in ld.bound(MemoryFlags.OUTPUT):
        tensor = ld.tensor_of(mem)
        outputs[mem.bind_id] = placement.read(mem.id, tensor.offset, tensor.size)
    return BoundRun(outputs, runs, time.perf_counter() - start)


def run_loadable(
    ld: Loadable,
    target: str = "nv_full",
    input_data: bytes | None = None,
    device: str | torch.device | None = "cpu",
) -> LoadableRun:
    """Run ``ld`` as the runtime test application does: ``input_data`` in the first bound
    input (zeros without it), the first bound output returned."""
    inputs = ld.bound(MemoryFlags.INPUT)
    outputs = ld.bound(MemoryFlags.OUTPUT)
    if not outputs:
        raise DlakitError(f"{ld.path}: the loadable binds no output tensor")
    feeds = {}
    if input_data is not None:
        if not inputs:
            raise DlakitError(f"{ld.path}: the loadable binds no input tensor to take --input")
        tensor = ld.tensor_of(inputs[0])
        if len(input_data) != tensor.size:
            raise DlakitError(
                f"{ld.path}: input tensor {tensor.name!r} takes {tensor.size} bytes, got "
                f"{len(input_data)}"
            )
        feeds[inputs[0].bind_id] = input_data
    run = run_bound(ld, target, feeds, device)
    tensor = ld.tensor_of(outputs[0])
    return LoadableRun(run.outputs[outputs[0].bind_id], tensor, run.tasks, run.seconds)
