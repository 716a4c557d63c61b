"""``dlakit profile --validate``: the model vs the calibration set, plus unmeasured modes."""

from __future__ import annotations

from typing import Any

from dlakit.perf.calibration import (
    LayerPoint,
    Point,
    layerwise_points,
    throughput_points,
)
from dlakit.perf.hw import load_params, model_version


def run_validation() -> tuple[list[Point], list[LayerPoint]]:
    params = load_params()
    return throughput_points(params), layerwise_points(params)


def validation_json(points: list[Point]) -> dict[str, Any]:
    return {
        "model_version": model_version(),
        "points": [
            {
                "network": p.network,
                "input": "x".join(map(str, p.input[1:])),
                "batch": p.batch,
                "power_mode": p.power_mode,
                "cores": p.cores,
                "predicted_images_per_second": round(p.predicted, 2),
                "measured_images_per_second": p.measured,
            }
            for p in points
        ],
    }
