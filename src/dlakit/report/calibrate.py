"""Render a calibration: the summary table, the clipping warning, per-tensor ranges, JSON."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import Progress
from rich.table import Table

from dlakit import __version__
from dlakit.report.console import Output, progress_bars
from dlakit.report.tables import Column, print_table

if TYPE_CHECKING:
    from dlakit.quant.calibrate import CalibrationRun
    from dlakit.quant.scales import Scales

CALIBRATE_SCHEMA = "dlakit.calibrate"
CALIBRATE_SCHEMA_VERSION = 1
# Clipping more than this share of a tensor's values is worth a warning: a Gaussian clipped by
# entropy loses ~0.01-0.1%, while a tensor with a dominant spike (a constant background) can lose
# 20% when KL keeps the spike sharp, and INT8 accuracy collapses (docs/calibrate.md).
CLIP_WARNING = 0.01

ProgressHook = Callable[[str, int], Callable[[], None]]


def progress(output: Output) -> AbstractContextManager[Progress | None]:
    """The two-pass progress bars (none when quiet)."""
    return progress_bars(output, "inputs")


def progress_hook(bars: Progress | None) -> ProgressHook | None:
    if bars is None:
        return None
    labels = {"ranges": "pass 1/2: ranges", "histograms": "pass 2/2: histograms"}

    def start(label: str, total: int) -> Callable[[int], None]:
        task = bars.add_task(labels.get(label, label), total=total)
        return lambda done=1: bars.advance(task, done)

    return start


def render(
    model: str, scales: Scales, written: list[Path], run: CalibrationRun | None, output: Output
) -> None:
    values = [a.scale for a in scales.activations.values()]
    table = Table(title=f"calibration of {model}", show_header=False)
    table.add_row("data", scales.data)
    percent = f" ({scales.percentile}%)" if scales.percentile else ""
    table.add_row("method", scales.method + percent)
    table.add_row("tensors calibrated", f"{len(values)} activations, {len(scales.weights)} weights")
    table.add_row(
        "scale min / median / max",
        f"{min(values):.4g} / {statistics.median(values):.4g} / {max(values):.4g}",
    )
    if run is not None:
        passes = f"{run.passes} pass(es) over {run.runs} inputs"
        table.add_row("time", f"{run.total_seconds:.2f} s ({passes})")
        table.add_row("inputs/s", f"{run.inputs_per_second:.1f}")
    table.add_row("wrote", "\n".join(str(p) for p in written))
    output.print(table)
    if output.verbose:
        clipped = run.clipped if run is not None else {}
        print_table(
            output,
            [
                Column("tensor", fold=True, min_width=24),
                Column("amax", justify="right"),
                Column("scale", justify="right"),
                Column("min / max seen", justify="right"),
                Column("clipped", justify="right"),
            ],
            [
                (
                    name,
                    f"{a.amax:.4g}",
                    f"{a.scale:.4g}",
                    f"{a.min:.4g} / {a.max:.4g}",
                    f"{clipped[name]:.2%}" if name in clipped else "-",
                )
                for name, a in scales.activations.items()
            ],
            title="activation ranges",
        )
    if run is not None:
        _warn_clipping(run.clipped, scales.method, output)


def _warn_clipping(clipped: dict[str, float], method: str, output: Output) -> None:
    heavy = sorted(((v, n) for n, v in clipped.items() if v > CLIP_WARNING), reverse=True)
    if not heavy:
        return
    worst = ", ".join(f"'{n}' {v:.1%}" for v, n in heavy[:3])
    hint = " (try --method percentile)" if method == "entropy" else ""
    output.warn(
        f"{method} clipped more than {CLIP_WARNING:.0%} of the values of "
        f"{len(heavy)} tensor(s): {worst}; INT8 accuracy may drop{hint}"
    )


def to_json(
    model: str, scales: Scales, written: list[Path], run: CalibrationRun | None
) -> dict[str, Any]:
    """The summary of one calibration (the scales themselves are in the scales file)."""
    clipped = run.clipped if run is not None else {}
    return {
        "schema": CALIBRATE_SCHEMA,
        "schema_version": CALIBRATE_SCHEMA_VERSION,
        "dlakit_version": __version__,
        "model": model,
        "data": scales.data,
        "method": scales.method,
        "percentile": scales.percentile,
        "activations": len(scales.activations),
        "weights": len(scales.weights),
        "seconds": run.total_seconds if run is not None else None,
        "inputs": run.runs if run is not None else None,
        "passes": run.passes if run is not None else None,
        "written": [str(p) for p in written],
        "clipped": {name: clipped[name] for name in sorted(clipped)},
        "clipped_over_warning": sorted(n for n, v in clipped.items() if v > CLIP_WARNING),
    }
