"""The cost of handing a tensor between the DLA and the GPU, and of starting work on a DLA.

A DLA<->GPU handoff costs (a) a fixed switch: synchronisation and the next engine's start,
0.05-0.07 ms per switch as measured for GoogleNet on Xavier (the partition policy's
``handoff_ms``, one fact in one place), and (b) a reformat on the GPU: the handed tensor read and
written once more (DLA-native CHW32/CHW16 to the GPU layout, or a sub-batch copied into the
gathered batch), at the GPU's achievable bandwidth plus one kernel launch. Model inputs and
outputs are taken in the DLA's own format (reformat-free I/O, as in NVIDIA's measurements), so
only handoffs inside a plan pay (b). A DLA inference submitted by the GPU waits one switch.
"""

from __future__ import annotations

from dlakit.partition.policy import load_policy
from dlakit.perf.contention import Phase
from dlakit.perf.gpu_model import GpuParams, JetsonGpu


def switch_s() -> float:
    """The fixed part of one DLA<->GPU switch, in seconds."""
    return float(load_policy()["handoff_ms"]) * 1e-3


def switch_source() -> str:
    return str(load_policy()["handoff_source"])


def reformat_phase(elems: float, gpu: JetsonGpu, params: GpuParams) -> Phase:
    """The GPU kernel that re-lays ``elems`` handed-over elements (read once, written once)."""
    return Phase(params.launch_us * 1e-6, 0.0, 2.0 * elems * gpu.bytes_per_elem)
