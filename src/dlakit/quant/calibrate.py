"""Post-training calibration: an FP32 model and calibration inputs give a :class:`Scales`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.quant.calibrators import HISTOGRAMS, METHODS, clipped_fraction, compute_amax
from dlakit.quant.observe import (
    ChannelMeans,
    InputSource,
    Observer,
    Store,
    observe_histograms,
    observe_ranges,
)
from dlakit.quant.scales import ActivationRange, InputMean, Scales, graph_sha256
from dlakit.quant.weights import weight_ranges
from dlakit.system import memory_budget

DEFAULT_PERCENTILE = 99.99
# Called once per pass with its label and number of runs; returns the per-run step callback.
ProgressHook = Callable[[str, int], Callable[[], None]]


@dataclass
class CalibrationRun:
    """The scales and what producing them cost."""

    scales: Scales
    runs: int  # model runs per pass
    passes: int
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: ranges, histograms, amax
    clipped: dict[str, float] = field(default_factory=dict)  # share of values beyond amax

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def inputs_per_second(self) -> float:
        """Calibration inputs processed per second, all passes included."""
        return self.runs / self.total_seconds if self.total_seconds > 0 else float("inf")


def corrected_nodes(loaded: LoadedModel) -> dict[str, str]:
    """The nodes bias correction applies to, with the tensor each reads: every Conv and Gemm
    (not transA) whose weights are an initializer, so the lowering quantizes them per channel."""
    inits = loaded.initializers
    nodes: dict[str, str] = {}
    for node in loaded.nodes:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
            continue
        if node.input[1] not in inits or node.input[0] in inits:
            continue
        if any(a.name == "transA" and a.i for a in node.attribute):
            continue
        nodes[node.name] = node.input[0]
    return nodes


def calibrate(
    loaded: LoadedModel,
    inputs: InputSource,
    method: str = "entropy",
    percentile: float | None = None,
    model_name: str | None = None,
    progress: ProgressHook | None = None,
    bias_correction: bool = False,
) -> CalibrationRun:
    """Scales for every float tensor of ``loaded`` (and its weights) from ``inputs``;
    ``bias_correction`` adds the input means the lowering's bias correction needs."""
    if method not in METHODS:
        raise DlakitError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if percentile is not None and method != "percentile":
        raise DlakitError(f"--percentile applies to --method percentile, not {method}")
    if method == "percentile" and percentile is None:
        percentile = DEFAULT_PERCENTILE
    runs = len(inputs)
    if runs == 0:
        raise DlakitError(f"no calibration inputs in {inputs.description}")

    def step(label: str) -> Callable[[], None] | None:
        return progress(label, runs) if progress else None

    seconds: dict[str, float] = {}
    observer = Observer(loaded)
    start = time.perf_counter()
    # Pass 2 bins what pass 1 saw while it fits in memory, instead of running the model again.
    store = Store(observer.layout, runs, memory_budget()) if method != "max" else None
    corrected = corrected_nodes(loaded) if bias_correction else {}
    means = ChannelMeans(set(corrected.values())) if bias_correction else None
    stats = observe_ranges(observer, inputs, step("ranges"), store, means)
    seconds["ranges"] = time.perf_counter() - start
    passes = 1
    if method != "max":
        start = time.perf_counter()
        observe_histograms(observer, inputs, stats, step("histograms"), store, HISTOGRAMS[method])
        seconds["histograms"] = time.perf_counter() - start
        passes = 2

    start = time.perf_counter()
    activations = {}
    clipped = {}
    for name, entry in stats.items():
        amax = compute_amax(entry.histogram(), method, percentile)
        clipped[name] = clipped_fraction(entry.histogram(), amax) if method != "max" else 0.0
        if amax <= 0:
            # A tensor that was always 0 (or mostly 0 at this percentile): any positive scale
            # represents its values; keep the observed extremes, or 1.0 if there are none.
            amax = entry.absmax if entry.absmax > 0 else 1.0
        activations[name] = ActivationRange(amax=amax, min=entry.min, max=entry.max)
    weights = weight_ranges(loaded)
    observed = means.means() if means is not None else {}
    table = {
        node: InputMean(tensor, [float(v) for v in observed[tensor]])
        for node, tensor in corrected.items()
        if tensor in observed
    }
    seconds["amax"] = time.perf_counter() - start

    scales = Scales(
        model_name=model_name or loaded.path.stem,
        graph_sha256=graph_sha256(loaded),
        method=method,
        percentile=percentile,
        num_inputs=runs,
        data=inputs.description,
        activations=activations,
        weights=weights,
        bias_correction=table,
    )
    return CalibrationRun(scales, runs, passes, seconds, clipped)
