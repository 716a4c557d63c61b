"""Bit-exact, register-level NVDLA simulator (INT8), batched on torch (CPU or CUDA).

Python API for other stages::

    from dlakit.sim import Nvdla, write_feature, read_feature, pack_weights
    nv = Nvdla("nv_small", device="cpu")            # register file + memory image
    write_feature(nv.memory, 0x8000_0000, x)         # INT8 cube [C, H, W] in feature layout
    nv.memory.write(0x8100_0000, pack_weights(w))    # DC weights [K, C, R, S]
    nv.write_reg("CDMA", "D_CONV_STRIDE", CONV_X_STRIDE=0, CONV_Y_STRIDE=0)  # ... all registers
    nv.write_reg("CDMA", "D_OP_ENABLE", OP_EN="ENABLE")  # last enable runs the operation
    y = read_feature(nv.memory, 0x8200_0000, (K, OH, OW))

``program_conv`` writes a whole convolution; ``run_trace`` runs an official ``.cfg`` trace.
"""

from dlakit.extras import missing_extra

try:  # every unit of the simulator computes on torch: say which extra that is, here, once
    import torch  # noqa: F401
except ModuleNotFoundError as exc:
    raise missing_extra(exc, "the NVDLA simulator") from None

from dlakit.sim.layout import pack_weights, read_feature, write_feature
from dlakit.sim.memory import Memory
from dlakit.sim.nvdla import Nvdla
from dlakit.sim.program import ConvSpec, program_conv
from dlakit.sim.regs import NotModelled
from dlakit.sim.trace import TraceResult, find_traces, run_trace

__all__ = [
    "ConvSpec",
    "Memory",
    "NotModelled",
    "Nvdla",
    "TraceResult",
    "find_traces",
    "pack_weights",
    "program_conv",
    "read_feature",
    "run_trace",
    "write_feature",
]
