"""Fit the GPU energy model to seed 001's DLA-vs-GPU perf/W table; write ``data/power.toml``.

Run ``python -m dlakit.perf.power_fit``. For each dense row and power mode the table gives
``r = (DLA images/s / DLA W) / (GPU images/s / GPU W)``. Predicted: both devices' watts from
:mod:`dlakit.perf.power` at the images/s of dlakit's models (the DLA model's one core, the GPU
model at the table's GPU batch). The three GPU numbers minimise the mean squared log error of
the predicted ratios over the 24 dense entries.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from dlakit.graph import load_model
from dlakit.perf.calibration import calibration_set, throughput_points
from dlakit.perf.fit import nelder_mead
from dlakit.perf.gpu_model import gpu_kernels, jetson_gpu, load_gpu_params, network_time
from dlakit.perf.hw import load_params, perf_data
from dlakit.perf.power import PowerModel, load_power_model
from dlakit.targets import load_target
from dlakit.zoo.arch import export_onnx


@dataclass
class RatioPoint:
    network: str
    power_mode: str
    dla_ips: float  # one DLA core
    gpu_ips: float
    macs: int  # per image
    measured: float
    predicted: float = 0.0

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1.0


@cache
def _rates() -> tuple[RatioPoint, ...]:
    data = perf_data("power_calibration.toml")
    target = load_target(data["target"])
    archs = {e["network"]: e for e in calibration_set()["throughput"]}
    dla = {
        (p.network, p.power_mode): p.predicted / p.cores for p in throughput_points(load_params())
    }
    params = load_gpu_params()
    rows = []
    for row in data["rows"]:
        entry = archs[row["network"]]
        model = load_model(export_onnx(entry["arch"], input_shape=tuple(entry["input"])))
        kernels = gpu_kernels(model)
        macs = sum(k.macs for k in kernels)
        b = int(row["gpu_batch"])
        for mode, ratio in zip(data["modes"], row["ratio"], strict=True):
            gpu = jetson_gpu(target, mode, "int8")
            gpu_ips = b / float(network_time(kernels, gpu, params, b))
            rows.append(
                RatioPoint(row["network"], mode, dla[(row["network"], mode)], gpu_ips, macs, ratio)
            )
    return tuple(rows)


def ratio_points(model: PowerModel) -> list[RatioPoint]:
    target = load_target(perf_data("power_calibration.toml")["target"])
    out = []
    for pt in _rates():
        dla_w = pt.dla_ips * pt.macs * model.dla_joules_per_mac(target, pt.power_mode)
        gpu_w = pt.gpu_ips * pt.macs * model.gpu_joules_per_mac(
            target, pt.power_mode
        ) + model.gpu_static_watts(target)
        out.append(replace(pt, predicted=(pt.dla_ips / dla_w) / (pt.gpu_ips / gpu_w)))
    return out


def _model(x: np.ndarray, base: PowerModel) -> PowerModel:
    return replace(
        base,
        gpu_mac_joules_1ghz=math.exp(x[0]),
        gpu_static_w=math.exp(x[1]),
        voltage_c=math.exp(x[2]),
    )


def fit() -> tuple[PowerModel, float]:
    base = load_power_model()
    x0 = np.log([base.gpu_mac_joules_1ghz, base.gpu_static_w, base.voltage_c])

    def objective(x: np.ndarray) -> float:
        pts = ratio_points(_model(x, base))
        return sum(math.log(p.predicted / p.measured) ** 2 for p in pts) / len(pts)

    x, value = nelder_mead(objective, x0, iters=800)
    return _model(x, base), value


def write(model: PowerModel, value: float, path: Path) -> None:
    pts = ratio_points(model)
    errors = [abs(p.error) for p in pts]
    dla = perf_data("power.toml")["dla"]
    lines = [
        "# Accelerator power (dlakit.perf.power), written by python -m dlakit.perf.power_fit.",
        "# [gpu] fitted ONLY to perf/data/power_calibration.toml (seed 001's perf/W table).",
        "",
        "[dla]",
        f"tops_per_watt = {dla['tops_per_watt']}",
        f"reference_mhz = {dla['reference_mhz']}",
        f'source = "{dla["source"]}"',
        "",
        "[fit]",
        f'date = "{datetime.now(UTC).strftime("%Y-%m-%d")}"',
        'method = "Nelder-Mead on log parameters; mean squared log error of the 24 ratios"',
        f"objective = {value:.6f}",
        f"ratio_mape = {sum(errors) / len(errors):.4f}",
        f"ratio_max_abs_error = {max(errors):.4f}",
        "",
        "[gpu.joules_per_mac]",
        f"value = {model.gpu_mac_joules_1ghz:.6g}",
        'meaning = "GPU energy per MAC at 1 GHz (INT8, dense)"',
        "",
        "[gpu.static_w]",
        f"value = {model.gpu_static_w:.6g}",
        'meaning = "W a busy 16-SM GPU draws whatever it computes"',
        "",
        "[gpu.voltage_c]",
        f"value = {model.voltage_c:.6g}",
        'meaning = "energy per MAC scales as (1 + c f^2) / (1 + c), f in GHz (both devices)"',
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    model, value = fit()
    path = Path(str(resources.files("dlakit.perf") / "data" / "power.toml"))
    write(model, value, path)
    perf_data.cache_clear()
    load_power_model.cache_clear()
    for p in ratio_points(load_power_model()):
        print(
            f"{p.network:22} {p.power_mode:5} {p.predicted:5.2f} "
            f"vs {p.measured:4.1f} ({100 * p.error:+.1f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
