"""One call from an ONNX model and its scales to a compiled model."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.lower.firmware import as_programmed_by_firmware
from dlakit.lower.lowering import ScaleSource, quantize_model
from dlakit.lower.lowering_fp16 import lower_fp16
from dlakit.nvdla.compiler import Compiled, compile_graph
from dlakit.nvdla.config import nvdla_target


def compile_model(
    loaded: LoadedModel,
    scales: ScaleSource | Mapping[str, float],
    target: str,
    fp16_layers: Iterable[str] = (),
    fallback_layers: Iterable[str] = (),
    preprocess: str | None = None,
    output_precision: str | None = None,
    via_firmware: bool = False,
    precision: str = "int8",
) -> Compiled:
    """Quantize ``loaded`` with ``scales`` (the integer reference's lowering), then compile it;
    ``output_precision`` as :func:`dlakit.lower.lowering.quantize_model` takes it. With
    ``via_firmware`` the registers the KMD firmware computes itself take its values
    (:mod:`dlakit.lower.firmware`): what a loadable needs. ``precision="fp16"`` compiles the
    DLA layers in FP16 (nv_full; :mod:`dlakit.lower.lowering_fp16`): no scales are read."""
    t0 = time.perf_counter()
    tgt = nvdla_target(target)  # refuse a non-NVDLA target before any work
    if precision == "fp16":
        graph = lower_fp16(loaded, target, fp16_layers, fallback_layers)
    elif precision == "int8":
        graph = quantize_model(loaded, scales, target, fp16_layers, fallback_layers,
                               output_precision=output_precision)  # fmt: skip
    else:
        raise DlakitError(f"--precision {precision!r}: choose int8 or fp16")
    if via_firmware:
        graph = as_programmed_by_firmware(graph)
    comp = compile_graph(graph, tgt)
    comp.preprocess = preprocess
    comp.stats["compile_seconds"] = round(time.perf_counter() - t0, 3)
    return comp
