"""The calibration set as data, and the model's predictions for each of its points.

Used by the fit (``dlakit.perf.fit``) and by ``dlakit profile --validate``. Every network is
rebuilt from the zoo's architectures at the published size; its hardware layers are built once
and re-costed for each power mode or parameter set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import Any

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
def network(arch: str, shape: tuple[int, ...]) -> tuple[LoadedModel, list[HwLayer]]:
    """The zoo architecture at ``shape``, loaded, with its hardware layers (all on the DLA:
    NVIDIA ran these networks wholly on the DLA, NMS excluded)."""
    from dlakit.zoo.arch import export_onnx

    model = load_model(export_onnx(arch, input_shape=shape))
    return model, build_layers(model)


def throughput_points(params: Params, modes: list[str] | None = None) -> list[Point]:
    data = calibration_set()
    target = load_target(data["target"])
    points = []
    for entry in data["throughput"]:
        shape = tuple(entry["input"])
        model, layers = network(entry["arch"], shape)
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
    sample = calibration_set()["layerwise"]
    model, layers = network(sample["arch"], tuple(sample["input"]))
    target = load_target(calibration_set()["target"])
    hw = dla_config(
        target,
        sample["power_mode"],
        cores=sample["cores"],
        sram_bytes=sample["sram_bytes"],
        clock_mhz=sample["clock_mhz"],
    )
    in_sram = sram_resident(layers, model, hw)
    costs = iter(dla_layer_cost(layer, hw, params, in_sram) for layer in layers)
    points = []
    for row in sample["rows"]:
        cost = next(c for c in costs if _matches(c, row))
        points.append(
            LayerPoint(
                label=row["label"],
                layer=cost.layer.name,
                predicted_ms=cost.time_s * 1e3,
                measured_ms=row["end_ms"] - row["start_ms"],
            )
        )
    return points


def _matches(cost: LayerCost, row: dict[str, Any]) -> bool:
    layer = cost.layer
    if row["kind"] == "pdp":
        return layer.kind == "pdp"
    has_relu = "Relu" in layer.ops
    has_add = any(op in ("Add", "Sum") for op in layer.ops)
    return layer.kind == "conv" and has_relu and has_add == row["add"]


def mape(errors: list[float]) -> float:
    return sum(abs(e) for e in errors) / len(errors) if errors else 0.0


def with_params(params: Params, **changes: float) -> Params:
    return replace(params, **changes)
