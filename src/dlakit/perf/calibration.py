"""The calibration set as data, and the model's predictions for each of its points.

Used by the fit (``dlakit.perf.fit``) and by ``dlakit profile --validate``. Every network is
rebuilt from the zoo's architectures at the published size; its hardware layers are built once
and re-costed for each power mode or parameter set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel, load_model
from dlakit.perf.cost import LayerCost, dla_layer_cost
from dlakit.perf.hw import Params, dla_config, perf_data
from dlakit.perf.layers import HwLayer, build_layers
from dlakit.perf.model import sram_resident
from dlakit.targets import load_target


@dataclass
class Point:
    network: str
    input: tuple[int, ...]
    batch: int
    power_mode: str
    cores: int
    predicted: float
    measured: float | None

    @property
    def error(self) -> float | None:
        return None if self.measured is None else self.predicted / self.measured - 1.0


@dataclass
class LayerPoint:
    label: str
    layer: str
    predicted_ms: float
    measured_ms: float

    @property
    def error(self) -> float:
        return self.predicted_ms / self.measured_ms - 1.0


def calibration_set() -> dict[str, Any]:
    return perf_data("calibration.toml")


@cache
def network(arch: str, shape: tuple[int, ...], target: str) -> tuple[LoadedModel, list[HwLayer]]:
    """The zoo architecture at ``shape``, loaded, with its DLA hardware layers for ``target``
    (every node on the DLA: NVIDIA ran these networks wholly on the DLA, NMS excluded)."""
    from dlakit.zoo.arch import export_onnx

    model = load_model(export_onnx(arch, input_shape=shape))
    layers = build_layers(model, target, whole_model_on_dla=True)
    return model, [layer for layer in layers if layer.engine == "dla"]


def throughput_points(params: Params, modes: list[str] | None = None) -> list[Point]:
    data = calibration_set()
    target = load_target(data["target"])
    points = []
    for entry in data["throughput"]:
        shape = tuple(entry["input"])
        model, layers = network(entry["arch"], shape, target.name)
        wanted = modes or [*entry["measured"], *data["unmeasured_modes"]]
        for mode in wanted:
            hw = dla_config(target, mode, cores=data["cores"], sram_bytes=data["sram_bytes"])
            in_sram = sram_resident(layers, model, hw)
            per_image = sum(dla_layer_cost(lay, hw, params, in_sram).time_s for lay in layers)
            points.append(
                Point(
                    network=entry["network"],
                    input=shape,
                    batch=int(entry["batch"]),
                    power_mode=mode,
                    cores=int(data["cores"]),
                    predicted=data["cores"] / per_image,
                    measured=entry["measured"].get(mode),
                )
            )
    return points


def layerwise_points(params: Params) -> list[LayerPoint]:
    data = calibration_set()
    sample = data["layerwise"]
    model, layers = network(sample["arch"], tuple(sample["input"]), data["target"])
    hw = dla_config(
        load_target(data["target"]),
        sample["power_mode"],
        cores=sample["cores"],
        sram_bytes=sample["sram_bytes"],
        clock_mhz=sample["clock_mhz"],
    )
    in_sram = sram_resident(layers, model, hw)
    costs = [dla_layer_cost(layer, hw, params, in_sram) for layer in layers]
    points = []
    start = 0
    for row in sample["rows"]:
        first, end = _row_span(costs, start, list(row["ops"]))
        points.append(
            LayerPoint(
                label=row["label"],
                layer="+".join(c.layer.name for c in costs[first:end]),
                predicted_ms=sum(c.time_s for c in costs[first:end]) * 1e3,
                measured_ms=row["end_ms"] - row["start_ms"],
            )
        )
        start = end
    return points


def _row_span(costs: list[LayerCost], start: int, ops: list[str]) -> tuple[int, int]:
    """The model's hardware layers that make up one fused layer of the sample: the first run of
    consecutive layers from ``start`` on whose ops, joined, are ``ops`` (TensorRT runs the ReLU
    after a residual Add in the same layer; dlakit's compiler runs it as its own SDP pass)."""
    for first in range(start, len(costs)):
        covered: list[str] = []
        end = first
        while end < len(costs) and covered != ops:
            step = costs[end].layer.ops
            if covered + step != ops[: len(covered) + len(step)]:
                break
            covered += step
            end += 1
        if covered == ops:
            return first, end
    raise DlakitError(f"calibration row {'+'.join(ops)}: no run of model layers makes it up")


def mape(errors: list[float]) -> float:
    return sum(abs(e) for e in errors) / len(errors) if errors else 0.0


def with_params(params: Params, **changes: float) -> Params:
    return replace(params, **changes)
