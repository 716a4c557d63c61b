"""The NVDLA compiler: a quantized graph -> hardware operations (register programs), CBUF
tiling, a memory plan, the ``.dla`` artifact, and its execution on the simulator."""

from dlakit.nvdla.api import compile_model
from dlakit.nvdla.artifact import read_artifact, write_artifact
from dlakit.nvdla.config import HwConfig, hw_config
from dlakit.nvdla.plan import Compiled, compile_graph

__all__ = [
    "Compiled",
    "HwConfig",
    "compile_graph",
    "compile_model",
    "hw_config",
    "read_artifact",
    "write_artifact",
]
