"""Per-output-channel weight ranges of the layers that multiply by weights.

The output-channel axis depends on the op and its attributes (ONNX operator spec):

* Conv: W is (M, C/group, kH, kW): axis 0.
* ConvTranspose: W is (C, M/group, kH, kW): axis 1 (per column of the weight tensor; with
  groups > 1 each column serves one output channel of every group).
* Gemm: B is (K, N), or (N, K) with transB=1: axis 1, or 0 with transB=1.
* MatMul with a 2-D constant right operand (K, N): axis 1.
"""

from __future__ import annotations

import numpy as np
import onnx

from dlakit.graph.load import LoadedModel
from dlakit.quant.scales import WeightRange


def _weight_axis(node: onnx.NodeProto, weight: np.ndarray) -> int | None:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul" and weight.ndim == 2:
        return 1
    return None


def weight_ranges(loaded: LoadedModel) -> dict[str, WeightRange]:
    """amax per output channel of each weight initializer, keyed by initializer name."""
    inits = loaded.initializers
    out: dict[str, WeightRange] = {}
    for node in loaded.nodes:
        if len(node.input) < 2 or node.input[1] not in inits:
            continue
        weight = np.asarray(inits[node.input[1]])
        axis = _weight_axis(node, weight)
        if axis is None or not np.issubdtype(weight.dtype, np.floating):
            continue
        others = tuple(d for d in range(weight.ndim) if d != axis)
        amax = np.abs(weight.astype(np.float64)).max(axis=others) if others else np.abs(weight)
        out[node.input[1]] = WeightRange(axis=axis, amax=[float(v) for v in amax])
    return out
