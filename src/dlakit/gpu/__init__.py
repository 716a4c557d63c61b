"""Host/GPU side of a compiled model: fallback segments as ONNX, executed in PyTorch."""

from dlakit.gpu.segment import host_segment_model
from dlakit.gpu.torch_exec import TorchGraph

__all__ = ["TorchGraph", "host_segment_model"]
