"""``dlakit profile --validate``: the model vs the calibration set, plus unmeasured modes."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from dlakit.perf.calibration import (
    LayerPoint,
    Point,
    calibration_set,
    layerwise_points,
    mape,
    throughput_points,
)
from dlakit.perf.hw import load_params, model_version, perf_data


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


def render_validation(points: list[Point], rows: list[LayerPoint], console: Console) -> None:
    data = calibration_set()
    table = Table(
        title=f"Orin {data['cores']}xDLA INT8 images/s: model {model_version()} vs DLA-SW README"
    )
    for col in ("network", "input", "batch", "power mode", "predicted", "measured", "error"):
        table.add_column(col, justify="left" if col in ("network", "input") else "right")
    for p in sorted(points, key=lambda p: p.measured is None):
        table.add_row(
            p.network,
            "x".join(map(str, p.input[2:])),
            str(p.batch),
            p.power_mode,
            f"{p.predicted:.0f}",
            "-" if p.measured is None else f"{p.measured:.0f}",
            "n/a" if p.error is None else f"{p.error:+.1%}",
        )
    console.print(table)
    errors = [p.error for p in points if p.error is not None]
    console.print(f"mean absolute percentage error over {len(errors)} points: {mape(errors):.1%}")
    sample = data["layerwise"]
    layers = Table(
        title=f"{sample['network']} layer-wise, one DLA at {sample['clock_mhz']:.0f} MHz "
        "(cuDLA sample README)"
    )
    for col in ("fused layer (sample)", "model layer", "predicted ms", "measured ms", "error"):
        layers.add_column(col, justify="left" if "layer" in col else "right")
    for r in rows:
        layers.add_row(
            r.label, r.layer, f"{r.predicted_ms:.3f}", f"{r.measured_ms:.3f}", f"{r.error:+.1%}"
        )
    console.print(layers)
    console.print(
        f"layer-wise: mean absolute error {mape([r.error for r in rows]):.1%}, "
        f"largest {max(abs(r.error) for r in rows):.1%}"
    )
    params = perf_data("params.toml")
    fitted = ", ".join(
        f"{name} = {entry['value']:.4g} {entry.get('unit', '')}".rstrip()
        + (" (at its bound)" if entry.get("at_bound") else "")
        for name, entry in params["params"].items()
    )
    fit = params.get("fit", {})
    console.print(f"fitted parameters ({fit.get('date', '?')}): {fitted}")
    if "leave_one_network_out_mape" in fit:
        console.print(
            "leave-one-network-out (each network refitted out of the set, then predicted): "
            f"MAPE {fit['leave_one_network_out_mape']:.1%}"
        )
