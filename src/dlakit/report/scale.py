"""Sharded runs on the console: one progress bar over all shards, the pass's summary line, and
the design sweep's table, CSV and plots."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlakit.extras import require
from dlakit.report.console import Output, progress_bars
from dlakit.report.tables import COMPACT, Column, print_table
from dlakit.scale import ShardRun


@contextmanager
def shard_progress(
    output: Output, description: str, total: int, unit: str
) -> Iterator[Callable[[int], None] | None]:
    """One bar over every shard of a pass (count, rate in ``unit``/s, time left); the callback
    takes the items done so far. None when quiet."""
    with progress_bars(output, unit) as bars:
        if bars is None:
            yield None
            return
        task = bars.add_task(description, total=total)
        yield lambda done: bars.update(task, completed=done)


def shard_summary(run: ShardRun, unit: str) -> str:
    """``64 images in 8 shards, local pool of 2 workers: 31.2 s, 2.05 images/s``, with the
    shards taken from the results file and the ones retried."""
    where = (
        "in this process" if run.backend == "in-process" else f"{run.backend}, {run.slots} at once"
    )
    text = f"{run.items} {unit} in {len(run.results)} shards ({where}): "
    if run.computed:
        text += (
            f"{run.computed} computed in {run.seconds:.1f} s, {run.items_per_second:.2f} {unit}/s"
        )
    else:
        text += "none computed"
    if run.resumed:
        text += f"; {len(run.resumed)} shard(s) from the results file"
    if run.retried:
        text += f"; retried: {', '.join(sorted(run.retried))}"
    return text


# ---------------------------------------------------------------- the design sweep

CSV_FIELDS = (
    "model",
    "target",
    "power_mode",
    "precision",
    "batch",
    "dla_layers",
    "fallback_layers",
    "latency_ms",
    "dla_ms_per_image",
    "gpu_ms_per_image",
    "images_per_second_one_core",
    "images_per_second_all_cores",
    "math_utilization",
    "plan_strategy",
    "plan_images_per_second",
    "gpu_only_images_per_second",
)


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A sweep row as the CSV's columns."""
    layers = row["layers"]
    plan = row.get("plan") or {}
    flat = {k: row[k] for k in CSV_FIELDS if k in row}
    flat["dla_layers"] = layers.get("dla", 0)
    flat["fallback_layers"] = sum(n for engine, n in layers.items() if engine != "dla")
    flat["plan_strategy"] = plan.get("strategy", "")
    flat["plan_images_per_second"] = plan.get("images_per_second", "")
    flat["gpu_only_images_per_second"] = plan.get("gpu_only_images_per_second", "")
    return flat


def sweep_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(flat_row(row))
    return buffer.getvalue()


def render_sweep(rows: Sequence[dict[str, Any]], out: Output, wide: bool = False) -> None:
    planned = any(row.get("plan") for row in rows)
    columns = [
        Column("model", fold=True, min_width=10),
        Column("target"),
        Column("mode"),
        Column("prec", drop=3),
        Column("batch", "right"),
        Column("DLA layers", "right", drop=2),
        Column("ms/batch", "right"),
        Column("img/s 1 core", "right", drop=1),
        Column("img/s DLAs", "right"),
    ]
    if planned:
        columns += [Column("plan", drop=4), Column("plan img/s", "right", drop=4)]
    table = []
    for row in rows:
        flat = flat_row(row)
        cells = [
            row["model"],
            row["target"],
            row["power_mode"],
            row["precision"],
            str(row["batch"]),
            f"{flat['dla_layers']}/{flat['dla_layers'] + flat['fallback_layers']}",
            f"{row['latency_ms']:.2f}",
            f"{row['images_per_second_one_core']:.0f}",
            f"{row['images_per_second_all_cores']:.0f}",
        ]
        if planned:
            plan = row.get("plan")
            cells += [plan["strategy"], f"{plan['images_per_second']:.0f}"] if plan else ["-", "-"]
        table.append(cells)
    print_table(out, columns, table, wide, **COMPACT)
    out.line("(modeled: dla-perf-1 performance model; plan: the GPU+DLA planner's choice)")


def write_sweep_plots(rows: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """throughput_vs_batch.png: against the batch, one line per model, target, power mode and
    precision, the DLA images/s (all cores; a DLA runs a batch as a loop, so these are flat)
    and, where the sweep ran the planner, the chosen plan's images/s. matplotlib is imported
    here only."""
    matplotlib = require("matplotlib", "sweep --plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    panels = [("images_per_second_all_cores", "DLA cores, images/s (modeled)")]
    if any(row.get("plan") for row in rows):
        panels.append(("plan", "planner's chosen plan, images/s (modeled)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 3, 5), squeeze=False)
    for ax, (field, title) in zip(axes[0], panels, strict=True):
        lines: dict[str, list[tuple[int, float]]] = {}
        for row in rows:
            value = row.get(field)
            if isinstance(value, dict):
                value = value.get("images_per_second")
            if value is None:
                continue
            label = f"{row['model']} {row['target']} {row['power_mode']} {row['precision']}"
            lines.setdefault(label, []).append((row["batch"], value))
        for label, points in lines.items():
            points.sort()
            ax.plot([b for b, _ in points], [v for _, v in points], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.set_title(title)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize="small")
    fig.tight_layout(rect=(0, 0, 1 - 3 / (6 * len(panels) + 3), 1))
    path = folder / "throughput_vs_batch.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return [path]
