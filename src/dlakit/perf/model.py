"""Profile a model: hardware layers, per-layer cost on the DLA or the GPU, totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlakit.errors import DlakitError, ModelError
from dlakit.graph import LoadedModel
from dlakit.perf.cost import LayerCost, dla_layer_cost, gpu_layer_cost
from dlakit.perf.hw import DlaConfig, GpuConfig, Params
from dlakit.perf.layers import HwLayer
from dlakit.targets import Target


@dataclass
class Profile:
    model_version: str
    target: str
    power_mode: str
    batch: int
    cores: int
    sparse: bool
    precision: str
    dla: DlaConfig | None
    gpu: GpuConfig | None
    costs: list[LayerCost]
    params: Params | None
    notes: list[str] = field(default_factory=list)

    @property
    def dla_time_s(self) -> float:
        """One image through the DLA layers on one core (with ``cores`` sharing DRAM)."""
        return sum(c.time_s for c in self.costs if c.engine == "dla")

    @property
    def gpu_time_s(self) -> float:
        return sum(c.time_s for c in self.costs if c.engine == "gpu")

    @property
    def latency_s(self) -> float:
        """One inference of ``batch`` images: the DLA batch is a loop, so time is linear in it."""
        return self.batch * (self.dla_time_s + self.gpu_time_s)

    @property
    def images_per_second_per_core(self) -> float:
        return 1.0 / self.dla_time_s if self.dla_time_s else 0.0

    @property
    def images_per_second(self) -> float:
        """The whole DLA side: every core runs its own stream of images."""
        return self.cores * self.images_per_second_per_core

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.costs)

    @property
    def math_utilization(self) -> float:
        """DLA MACs done over what the array could do in the DLA time."""
        dla = [c for c in self.costs if c.engine == "dla"]
        if not dla or not self.dla_time_s:
            return 0.0
        return sum(c.macs for c in dla) / (self.dla_time_s * dla[0].peak_macs_per_s)


def sram_resident(layers: list[HwLayer], model: LoadedModel, hw: DlaConfig) -> set[str]:
    """Intermediate DLA tensors small enough for the managed SRAM pool stay on chip."""
    io = set(model.input_names) | set(model.output_names)
    return {
        layer.output
        for layer in layers
        if layer.engine == "dla"
        and layer.output not in io
        and layer.written_elems * hw.bytes_per_elem <= hw.sram_bytes
    }


def check_batch(target: Target, batch: int) -> None:
    limit = target.dla.max_batch
    if batch < 1:
        raise DlakitError(f"--batch {batch}: the batch must be at least 1")
    if limit and batch > limit:
        raise DlakitError(f"--batch {batch}: target '{target.name}' allows at most {limit}")


def cost_layers(
    layers: list[HwLayer],
    model: LoadedModel,
    hw: DlaConfig | None,
    gpu: GpuConfig | None,
    params: Params | None,
) -> list[LayerCost]:
    in_sram = sram_resident(layers, model, hw) if hw else set()
    costs = []
    for layer in layers:
        if layer.engine == "dla" and hw is not None and params is not None:
            costs.append(dla_layer_cost(layer, hw, params, in_sram))
        elif gpu is not None:
            costs.append(gpu_layer_cost(layer, gpu))
        else:
            # Open-NVDLA boards fall back to the host CPU, which dlakit does not model.
            costs.append(LayerCost(layer, "cpu", layer.macs, 0, 0.0, 0.0, 0.0, 0.0, 0.0))
    return costs


def model_batch(model: LoadedModel) -> int:
    batches = {shape[0] for shape in model.input_shapes.values() if shape}
    if len(batches) > 1:
        raise ModelError(f"{model.path}: inputs disagree on the batch size ({sorted(batches)})")
    return batches.pop() if batches else 1


def summary(profile: Profile) -> dict[str, Any]:
    return {
        "latency_ms": profile.latency_s * 1e3,
        "dla_ms_per_image": profile.dla_time_s * 1e3,
        "gpu_ms_per_image": profile.gpu_time_s * 1e3,
        "images_per_second_one_core": profile.images_per_second_per_core,
        "images_per_second": profile.images_per_second,
        "math_utilization": profile.math_utilization,
        "macs_per_image": profile.macs,
    }
