"""Random-weight standard architectures, exported to ONNX for profiling and checking.

These are the networks NVIDIA measured on the Orin DLA (DLA-SW README) plus common classifiers.
Weights are random with a fixed seed: the DLA's speed does not depend on weight values (dense
INT8), and the layer structure is what the support checker and the performance model read.

``ARCHS`` names each architecture with its default input; :func:`export_onnx` writes (and caches)
the ONNX file.
"""

from dlakit.zoo.arch.export import ARCHS, ArchSpec, export_onnx

__all__ = ["ARCHS", "ArchSpec", "export_onnx"]
