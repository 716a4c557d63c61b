"""The NVDLA compiler: a quantized graph -> hardware operations (register programs), CBUF
tiling, a memory allocation, the ``.dla`` artifact, and its execution on the simulator."""

from dlakit.nvdla.api import compile_model
from dlakit.nvdla.artifact import read_artifact, write_artifact
from dlakit.nvdla.compiler import Compiled, compile_graph
from dlakit.nvdla.config import nvdla_target

__all__ = [
    "Compiled",
    "compile_graph",
    "compile_model",
    "nvdla_target",
    "read_artifact",
    "write_artifact",
]
