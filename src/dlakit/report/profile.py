"""Profile output: the rich table, the JSON document (schema ``dlakit.profile`` v1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dlakit import __version__
from dlakit.perf.model import Profile

PROFILE_SCHEMA = "dlakit.profile"
PROFILE_SCHEMA_VERSION = 1


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def _short(name: str, width: int = 26) -> str:
    """Exporter names are paths (/body/stages.3/stages.3.2/conv3/conv3.0/Conv): keep the tail."""
    parts = [p for p in name.split("/") if p]
    text = "/".join(parts[-4:-2]) if len(parts) >= 4 else name
    return text if len(text) <= width else "…" + text[-(width - 1) :]


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


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def render(profile: Profile, totals: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"{profile.target} {profile.power_mode}, batch {profile.batch}, "
        f"{profile.precision}{' sparse' if profile.sparse else ''} "
        f"(modeled, {profile.model_version})",
        show_lines=False,
    )
    for col, justify in (
        ("#", "right"),
        ("layer", "left"),
        ("engine", "left"),
        ("hw layer", "left"),
        ("MACs", "right"),
        ("bytes", "right"),
        ("bound", "left"),
        ("cycles", "right"),
        ("time µs", "right"),
        ("util", "right"),
    ):
        table.add_column(col, justify=justify, overflow="fold")
    for row in layer_rows(profile):
        if row["time_us"] == 0 and row["engine"] != "cpu":
            continue  # views and in-place concatenations
        name = _short(row["name"])
        table.add_row(
            str(row["index"]),
            name,
            row["engine"],
            row["hw_layer"],
            _si(row["macs"]),
            _si(row["dram_bytes"]),
            row["bound"],
            _si(row["cycles"]) if row["cycles"] is not None else "-",
            f"{row['time_us']:.1f}",
            f"{row['utilization']:.0%}" if row["macs"] else "-",
        )
    console.print(table)
    console.print(
        f"latency {totals['latency_ms']:.3f} ms for batch {profile.batch} "
        f"(DLA {totals['dla_ms_per_image']:.3f} ms/image, GPU {totals['gpu_ms_per_image']:.3f} "
        f"ms/image); DLA images/s: {totals['images_per_second_one_core']:.1f} on one core, "
        f"{totals['images_per_second_all_cores']:.1f} on {totals['all_cores']} cores; "
        f"math utilization {totals['math_utilization']:.0%}"
    )
    for note in profile.notes:
        console.print(f"note: {note}")
