"""``profile_model``: the performance model's entry point for one model, target and mode."""

from __future__ import annotations

from dataclasses import replace

from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel
from dlakit.perf.cost import dla_layer_cost
from dlakit.perf.hw import dla_config, gpu_config, load_params, model_version
from dlakit.perf.layers import HwLayer, build_layers
from dlakit.perf.model import (
    Profile,
    check_batch,
    cost_layers,
    model_batch,
    sram_resident,
)
from dlakit.targets import Target, load_target


def profile_model(
    model: LoadedModel,
    target: str | Target = "orin",
    power_mode: str | None = None,
    *,
    batch: int | None = None,
    cores: int = 1,
    sparse: bool = False,
    precision: str = "int8",
    sram_bytes: int | None = None,
    layers: list[HwLayer] | None = None,
) -> Profile:
    """Predict per-layer time of ``model`` (one image per DLA loop pass, ``batch`` passes).

    ``layers`` lets a caller reuse hardware layers (:func:`dlakit.perf.layers.build_layers`).
    """
    tgt = load_target(target) if isinstance(target, str) else target
    if tgt.kind == "host":
        raise DlakitError("target 'host' is measured, not modeled: use dlakit.perf.host")
    batch = batch or model_batch(model)
    check_batch(tgt, batch)
    notes: list[str] = []
    if layers is None:
        layers = build_layers(model, tgt)
    has_dla = any(layer.engine == "dla" for layer in layers)
    hw = (
        dla_config(
            tgt, power_mode, cores=cores, sparse=sparse, precision=precision, sram_bytes=sram_bytes
        )
        if has_dla or tgt.dla_cores
        else None
    )
    gpu = gpu_config(tgt, power_mode) if tgt.gpu else None
    params = load_params()
    costs = cost_layers(layers, model, hw, gpu, params)
    on_cpu = [c for c in costs if c.engine == "cpu"]
    if on_cpu:
        notes.append(
            f"{len(on_cpu)} layer(s) fall back to the host CPU ({on_cpu[0].layer.label}, ...): "
            "not modeled, counted as 0"
        )
    mode = hw.power_mode if hw else (gpu.power_mode if gpu else "default")
    return Profile(
        model_version=model_version(),
        target=tgt.name,
        power_mode=mode,
        batch=batch,
        cores=cores,
        sparse=sparse,
        precision=precision,
        dla=hw,
        gpu=gpu,
        costs=costs,
        params=params,
        notes=notes,
    )


def images_per_second(profile: Profile, model: LoadedModel, cores: int) -> float:
    """Whole-DLA throughput with ``cores`` cores each running its own stream (DRAM shared)."""
    if profile.dla is None or profile.params is None:
        return 0.0
    hw = replace(profile.dla, cores=cores)
    layers = [c.layer for c in profile.costs if c.engine == "dla"]
    in_sram = sram_resident(layers, model, hw)
    per_image = sum(dla_layer_cost(layer, hw, profile.params, in_sram).time_s for layer in layers)
    return cores / per_image if per_image else 0.0
