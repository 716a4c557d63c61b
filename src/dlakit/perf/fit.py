"""Fit the free parameters to the calibration set and write ``data/params.toml``.

Run ``python -m dlakit.perf.fit``. The objective is the sum of squared log errors over the 12
published throughput points and the 9 layer-wise rows (each set weighted equally per point);
Nelder-Mead in log space, with efficiencies held in (0, 1].
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np

from dlakit.files import atomic_write
from dlakit.perf.calibration import layerwise_points, mape, throughput_points
from dlakit.perf.hw import Params, load_params, perf_data

BOUNDED = {"mac_efficiency", "dram_efficiency"}  # shares of a peak: at most 1
NAMES = [f.name for f in fields(Params)]


def _to_params(x: np.ndarray) -> Params:
    values = {}
    for name, v in zip(NAMES, x, strict=True):
        values[name] = 1 / (1 + math.exp(-v)) if name in BOUNDED else math.exp(v)
    return Params(**values)


def _to_x(p: Params) -> np.ndarray:
    out = []
    for name in NAMES:
        v = getattr(p, name)
        if name in BOUNDED:
            v = min(max(v, 1e-6), 1 - 1e-6)
        out.append(math.log(v / (1 - v)) if name in BOUNDED else math.log(v))
    return np.array(out)


def objective(p: Params, leave_out: str | None = None) -> float:
    thr = [
        pt
        for pt in throughput_points(p, ["MAXN", "30W"])
        if pt.measured and pt.network != leave_out
    ]
    lay = layerwise_points(p)
    e1 = [math.log(pt.predicted / pt.measured) ** 2 for pt in thr]
    e2 = [math.log(lp.predicted_ms / lp.measured_ms) ** 2 for lp in lay]
    return sum(e1) / len(e1) + sum(e2) / len(e2)


def nelder_mead(f, x0: np.ndarray, steps: float = 0.5, iters: int = 400, tol: float = 1e-7):
    n = len(x0)
    simplex = [x0] + [x0 + steps * np.eye(n)[i] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if abs(values[-1] - values[0]) < tol:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        worst = simplex[-1]
        xr = centroid + (centroid - worst)
        fr = f(xr)
        if fr < values[0]:
            xe = centroid + 2 * (centroid - worst)
            fe = f(xe)
            simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (worst - centroid)
            fc = f(xc)
            if fc < values[-1]:
                simplex[-1], values[-1] = xc, fc
            else:
                best = simplex[0]
                simplex = [best] + [best + 0.5 * (x - best) for x in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    i = int(np.argmin(values))
    return simplex[i], values[i]


def fit(start: Params | None = None, leave_out: str | None = None) -> tuple[Params, float]:
    x, value = nelder_mead(
        lambda x: objective(_to_params(x), leave_out), _to_x(start or load_params())
    )
    return _to_params(x), value


def leave_one_network_out(start: Params) -> list[float]:
    """Refit without each network in turn and predict it: errors on networks the fit never saw."""
    errors = []
    for network in sorted({pt.network for pt in throughput_points(start, ["MAXN"])}):
        p, _ = fit(start, leave_out=network)
        errors += [
            pt.error
            for pt in throughput_points(p, ["MAXN", "30W"])
            if pt.network == network and pt.error is not None
        ]
    return errors


def write_params(p: Params, value: float, path: Path, loo: list[float]) -> None:
    thr = [pt for pt in throughput_points(p, ["MAXN", "30W"]) if pt.measured]
    lay = layerwise_points(p)
    old = perf_data("params.toml")
    units = {k: v.get("unit", "") for k, v in old["params"].items()}
    notes = {k: v.get("meaning", "") for k, v in old["params"].items()}
    lines = [
        "# Free parameters of the DLA performance model, written by python -m dlakit.perf.fit.",
        "# Fitted ONLY to perf/data/calibration.toml (12 Orin 2xDLA points, ResNet-34 layer rows).",
        f'model_version = "{old["model_version"]}"',
        "",
        "[fit]",
        f'date = "{datetime.now(UTC).strftime("%Y-%m-%d")}"',
        'method = "Nelder-Mead on log parameters; mean squared log error, points and rows"',
        f"objective = {value:.6f}",
        f"throughput_mape = {mape([pt.error for pt in thr if pt.error is not None]):.4f}",
        f"layerwise_mape = {mape([lp.error for lp in lay]):.4f}",
        f"layerwise_max_abs_error = {max(abs(lp.error) for lp in lay):.4f}",
        "# Each network refitted out of the set and then predicted (12 points):",
        f"leave_one_network_out_mape = {mape(loo):.4f}",
        "",
    ]
    for name, value_ in asdict(p).items():
        at_bound = name in BOUNDED and value_ > 1 - 1e-3
        lines += [
            f"[params.{name}]",
            f"value = {1.0 if at_bound else value_:.6g}",
            f'unit = "{units.get(name, "")}"',
            f'meaning = "{notes.get(name, "")}"',
            *(["at_bound = true  # the fit pushed it to its upper bound of 1"] if at_bound else []),
            "",
        ]
    atomic_write(path, "\n".join(lines))


def main() -> int:
    p, value = fit()
    loo = leave_one_network_out(p)
    path = Path(str(resources.files("dlakit.perf") / "data" / "params.toml"))
    write_params(p, value, path, loo)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
