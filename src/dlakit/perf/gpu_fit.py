"""Fit the GPU model (``gpu_model``) to the GPU calibration set and write ``data/gpu.toml``.

Run ``python -m dlakit.perf.gpu_fit``. Three parameters: the per-kernel launch cost and the
Ampere efficiency, fitted to NVIDIA's six YOLOv5s 672x672 INT8 batch times on Orin (mean squared
log error); the Volta efficiency, fitted to the one Xavier NX MobileNet plateau (seed 004), which
it then meets exactly: one point, one parameter, so that point is no test of the model.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from dlakit.graph import load_model
from dlakit.perf.fit import nelder_mead
from dlakit.perf.gpu_model import (
    GpuParams,
    gpu_data,
    gpu_kernels,
    jetson_gpu,
    load_gpu_params,
    network_time,
)
from dlakit.perf.hw import perf_data
from dlakit.perf.layers import HwLayer
from dlakit.targets import load_target


@dataclass
class GpuPoint:
    network: str
    target: str
    batch: int
    predicted_ms: float
    measured_ms: float

    @property
    def error(self) -> float:
        return self.predicted_ms / self.measured_ms - 1.0


def calibration() -> dict:
    return perf_data("gpu_calibration.toml")


def table_kernels(entry: dict) -> list[HwLayer]:
    """The per-image kernels a calibration entry lists as rows (see its ``fields``)."""
    layers = []
    for i, row in enumerate(entry["kernels"]):
        doc = dict(zip(entry["fields"], row, strict=True))
        doc["in_shape"] = tuple(doc["in_shape"])
        layers.append(HwLayer(name=f"k{i}", ops=[doc["kind"]], nodes=[], engine="fallback", **doc))
    return layers


@cache
def mobilenet_kernels(arch: str) -> tuple[HwLayer, ...]:
    from dlakit.zoo.arch import export_onnx

    return tuple(gpu_kernels(load_model(export_onnx(arch))))


def points(params: GpuParams) -> list[GpuPoint]:
    data = calibration()
    yolo = data["yolov5s"]
    gpu = jetson_gpu(
        load_target(yolo["target"]), yolo["power_mode"], yolo["precision"], yolo["gpu_mhz"]
    )
    batches = np.array(yolo["batch"])
    times = network_time(table_kernels(yolo), gpu, params, batches)
    found = [
        GpuPoint(yolo["network"], yolo["target"], int(b), 1e3 * t, m)
        for b, t, m in zip(batches, times, yolo["measured_ms"], strict=True)
    ]
    mob = data["mobilenet"]
    gpu = jetson_gpu(load_target(mob["target"]), mob["power_mode"], mob["precision"])
    batch = int(mob["batch"])
    t = float(network_time(list(mobilenet_kernels(mob["arch"])), gpu, params, batch))
    found.append(
        GpuPoint(
            mob["network"],
            mob["target"],
            batch,
            1e3 * t,
            1e3 * batch / mob["measured_images_per_second"],
        )
    )
    return found


def _params(x: np.ndarray) -> GpuParams:
    return GpuParams(
        launch_us=math.exp(x[0]),
        efficiency={"ampere": 1 / (1 + math.exp(-x[1])), "volta": 1 / (1 + math.exp(-x[2]))},
    )


def _x(p: GpuParams) -> np.ndarray:
    logit = [math.log(e / (1 - e)) for e in (p.efficiency["ampere"], p.efficiency["volta"])]
    return np.array([math.log(p.launch_us), *logit])


def objective(p: GpuParams) -> float:
    pts = points(p)
    yolo = [math.log(pt.predicted_ms / pt.measured_ms) ** 2 for pt in pts[:-1]]
    return sum(yolo) / len(yolo) + math.log(pts[-1].predicted_ms / pts[-1].measured_ms) ** 2


def fit() -> tuple[GpuParams, float]:
    x, value = nelder_mead(lambda x: objective(_params(x)), _x(load_gpu_params()), iters=600)
    return _params(x), value


def mape(errors: list[float]) -> float:
    return sum(abs(e) for e in errors) / len(errors)


def write(p: GpuParams, value: float, path: Path) -> None:
    pts = points(p)
    yolo = [pt.error for pt in pts[:-1]]
    facts = gpu_data()["facts"]
    lanes = ", ".join(f"{k} = {v}" for k, v in facts["cuda_core_macs_per_lane"].items())
    lines = [
        "# The Jetson GPU model (dlakit.perf.gpu_model), written by python -m dlakit.perf.gpu_fit.",
        "# Fitted ONLY to perf/data/gpu_calibration.toml: NVIDIA's YOLOv5s 672 INT8 GPU times",
        "# (Orin, batch 1-16) and seed 004's Xavier NX MobileNet plateau (430 images/s).",
        f'model_version = "{gpu_data()["model_version"]}"',
        "",
        "[fit]",
        f'date = "{datetime.now(UTC).strftime("%Y-%m-%d")}"',
        'method = "Nelder-Mead on log/logit parameters; mean squared log error"',
        f"objective = {value:.6f}",
        f"yolov5s_mape = {mape(yolo):.4f}",
        f"yolov5s_max_abs_error = {max(abs(e) for e in yolo):.4f}",
        f"mobilenet_error = {pts[-1].error:.4f}  # one point, one parameter: met by construction",
        "",
        "[facts]",
        "# CUDA-core MACs per FP32 lane per clock: DP4A (4 INT8 products into one 32-bit sum) and",
        "# half2 (2 FP16); fp32 lanes per SM come from the target files.",
        f"cuda_core_macs_per_lane = {{ {lanes} }}",
        f'source = "{facts["source"]}"',
        "",
        "[params.launch_us]",
        f"value = {p.launch_us:.6g}",
        'unit = "us per kernel and batch"',
        'meaning = "kernel launch and TensorRT enqueue, paid once per kernel per batch"',
        "",
        "[params.efficiency]",
        "value = { " + ", ".join(f"{k} = {v:.6g}" for k, v in sorted(p.efficiency.items())) + " }",
        'unit = "share of the compute peak"',
        'meaning = "achieved share of the tensor-core (or CUDA-core) peak, per GPU architecture"',
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    p, value = fit()
    path = Path(str(resources.files("dlakit.perf") / "data" / "gpu.toml"))
    write(p, value, path)
    gpu_data.cache_clear()
    perf_data.cache_clear()
    for pt in points(load_gpu_params()):
        print(
            f"{pt.network:45} b{pt.batch:<5} {pt.predicted_ms:9.3f} ms "
            f"vs {pt.measured_ms:9.3f} ({100 * pt.error:+.1f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
