"""What the NVDLA KMD firmware fixes when it programs the hardware from a loadable.

The ``.dla`` path writes every register value the lowering chose. A loadable goes through the
firmware (nvdla/sw ``kmd/firmware``), which computes some registers itself from the
descriptors: the PDP average-pooling reciprocals come from its own table, ``floor(2^16 / k)``
per kernel dimension (``pdp.c`` ``recip_kernel_size``), where the lowering otherwise picks
the width stage 1.0 and the height stage ``round(2^16 / (kh * kw))`` to round once
(:func:`dlakit.lower.hwparams.pool_reciprocals`). :func:`as_programmed_by_firmware` gives the
graph the firmware's values, so the integer reference and the ``.dla`` path compute what the
firmware-programmed hardware computes (two roundings in an average pool).
"""

from __future__ import annotations

from dataclasses import replace

from dlakit.lower.hwparams import pdp_reciprocal
from dlakit.lower.qgraph import QGraph, QPool


def as_programmed_by_firmware(graph: QGraph) -> QGraph:
    """``graph`` with every register value the firmware fixes set as the firmware sets it."""
    layers = []
    for layer in graph.layers:
        # FP16 pools already take the firmware's FP17 table (lower/fp16params.py).
        if isinstance(layer, QPool) and layer.method == "avg" and layer.precision == "int8":
            kh, kw = layer.kernel
            layer = replace(layer, recip_w=pdp_reciprocal(kw), recip_h=pdp_reciprocal(kh))
        layers.append(layer)
    return replace(graph, layers=layers)
