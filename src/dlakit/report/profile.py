"""Profile output: the per-layer table, the JSON document (schema ``dlakit.profile`` v1), and
the measured per-layer table of ``--target host`` (schema ``dlakit.profile.host`` v1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from dlakit import __version__
from dlakit.perf.calibration import LayerPoint, Point, calibration_set, mape
from dlakit.perf.hw import model_version, perf_data
from dlakit.perf.model import Profile
from dlakit.report.console import Output
from dlakit.report.tables import Column, fit_compact_if_narrow, note_dropped, print_fitted

if TYPE_CHECKING:
    from dlakit.perf.host import HostTiming

PROFILE_SCHEMA = "dlakit.profile"
PROFILE_SCHEMA_VERSION = 1


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def _short(name: str) -> str:
    """Exporter names are paths (/body/stages.3/stages.3.2/conv3/conv3.0/Conv): the module that
    makes the layer reads best; --wide shows the whole name."""
    parts = [p for p in name.split("/") if p]
    return "/".join(parts[-4:-2]) if len(parts) >= 4 else name


def layer_rows(profile: Profile) -> list[dict[str, Any]]:
    rows = []
    for index, cost in enumerate(profile.costs):
        layer = cost.layer
        clock = profile.dla.clock_hz if cost.engine == "dla" and profile.dla else None
        if cost.engine == "gpu" and profile.gpu:
            clock = profile.gpu.clock_mhz * 1e6
        rows.append(
            {
                "index": index,
                "name": layer.name,
                "nodes": layer.nodes,
                "engine": cost.engine,
                "hw_layer": layer.label,
                "kind": layer.kind,
                "macs": cost.macs,
                "dram_bytes": cost.dram_bytes,
                "bound": cost.bound,
                "cycles": round(cost.time_s * clock) if clock else None,
                "time_us": cost.time_s * 1e6,
                "compute_us": cost.compute_s * 1e6,
                "memory_us": cost.memory_s * 1e6,
                "fill_us": cost.fill_s * 1e6,
                "overhead_us": cost.overhead_s * 1e6,
                "utilization": cost.utilization,
            }
        )
    return rows


def to_json(profile: Profile, totals: dict[str, Any], model_path: str) -> dict[str, Any]:
    dla, gpu = profile.dla, profile.gpu
    return {
        "schema": PROFILE_SCHEMA,
        "schema_version": PROFILE_SCHEMA_VERSION,
        "model_version": profile.model_version,
        "dlakit_version": __version__,
        "modeled": True,
        "model": model_path,
        "target": profile.target,
        "power_mode": profile.power_mode,
        "batch": profile.batch,
        "cores": profile.cores,
        "sparse": profile.sparse,
        "precision": profile.precision,
        "hardware": {
            "dla_mhz": dla.clock_mhz if dla else None,
            "dla_macs_per_clk": dla.macs_per_clk if dla else None,
            "dram_gbps": dla.dram_gbps if dla else (gpu.dram_gbps if gpu else None),
            "gpu_mhz": gpu.clock_mhz if gpu else None,
        },
        "params": dict(vars(profile.params)) if profile.params else {},
        "layers": layer_rows(profile),
        "totals": totals,
        "notes": profile.notes,
    }


def render(profile: Profile, totals: dict[str, Any], output: Output, wide: bool = False) -> None:
    """The per-layer table, then the totals. Narrow terminals fold the names and leave out
    cycles, then bytes; -v adds the terms of each layer's time."""
    columns = [
        Column("#", justify="right"),
        Column("layer", fold=True, min_width=14),
        Column("engine"),
        Column("hw layer", fold=True, min_width=9),
        Column("MACs", justify="right"),
        Column("bytes", justify="right", drop=1),
        Column("bound"),
        Column("cycles", justify="right", drop=2),
        Column("time µs", justify="right"),
        Column("util", justify="right"),
    ]
    terms = ("compute_us", "memory_us", "fill_us", "overhead_us")
    if output.verbose:
        columns += [Column(t.replace("_us", " µs"), justify="right", drop=3) for t in terms]
    rows = []
    for row in layer_rows(profile):
        if row["time_us"] == 0 and row["engine"] != "cpu":
            continue  # views and in-place concatenations
        cells = [
            str(row["index"]),
            row["name"] if wide else _short(row["name"]),
            row["engine"],
            row["hw_layer"],
            _si(row["macs"]),
            _si(row["dram_bytes"]),
            row["bound"],
            _si(row["cycles"]) if row["cycles"] is not None else "-",
            f"{row['time_us']:.1f}",
            f"{row['utilization']:.0%}" if row["macs"] else "-",
        ]
        if output.verbose:
            cells += [f"{row[t]:.1f}" for t in terms]
        rows.append(cells)
    title = (
        f"{profile.target} {profile.power_mode}, batch {profile.batch}, "
        f"{profile.precision}{' sparse' if profile.sparse else ''} "
        f"(modeled, {profile.model_version})"
    )
    fitted = fit_compact_if_narrow(columns, rows, output.console, wide, title=title)
    print_fitted(output, fitted, wide)
    note_dropped(output, fitted)
    output.line(
        f"latency {totals['latency_ms']:.3f} ms for batch {profile.batch} "
        f"(DLA {totals['dla_ms_per_image']:.3f} ms/image, GPU {totals['gpu_ms_per_image']:.3f} "
        f"ms/image); DLA images/s: {totals['images_per_second_one_core']:.1f} on one core, "
        f"{totals['images_per_second_all_cores']:.1f} on {totals['all_cores']} cores; "
        f"math utilization {totals['math_utilization']:.0%}"
    )
    for note in profile.notes:
        output.line(f"note: {note}")


HOST_TITLE = "measured on {gpu}, batch {batch} (FP16; CUDA graph of 10 calls, median of 20)"


def render_host(
    timings: list[HostTiming], gpu: str, batch: int, output: Output, wide: bool = False
) -> None:
    rows = [
        (str(index), t.layer.name if wide else _short(t.layer.name), t.layer.label,
         f"{t.median_s * 1e6:.1f}")
        for index, t in enumerate(timings)
        if t.runs
    ]  # fmt: skip
    fitted = fit_compact_if_narrow(
        [
            Column("#", justify="right"),
            Column("layer", fold=True, min_width=14),
            Column("hw layer", fold=True, min_width=9),
            Column("time µs", justify="right"),
        ],
        rows,
        output.console,
        wide,
        title=HOST_TITLE.format(gpu=gpu, batch=batch),
    )
    print_fitted(output, fitted, wide)
    total = sum(t.median_s for t in timings)
    output.line(f"sum of layer medians {total * 1e3:.3f} ms ({batch / total:.1f} images/s)")


def host_json(timings: list[HostTiming], gpu: str, batch: int) -> dict[str, Any]:
    return {
        "schema": "dlakit.profile.host",
        "schema_version": 1,
        "measured": True,
        "device": gpu,
        "batch": batch,
        "layers": [
            {"name": t.layer.name, "hw_layer": t.layer.label, "time_us": t.median_s * 1e6}
            for t in timings
        ],
        "total_ms": sum(t.median_s for t in timings) * 1e3,
    }


def render_validation(points: list[Point], rows: list[LayerPoint], output: Output) -> None:
    """``profile --validate``: predicted vs measured images/s, the layer-wise sample, the fit."""
    console = output.console
    data = calibration_set()
    table = Table(
        title=f"Orin {data['cores']}xDLA INT8 images/s: model {model_version()} vs DLA-SW README"
    )
    for col in ("network", "input", "batch", "power mode", "predicted", "measured", "error"):
        table.add_column(
            col, justify="left" if col in ("network", "input") else "right", overflow="fold"
        )
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
        layers.add_column(col, justify="left" if "layer" in col else "right", overflow="fold")
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
