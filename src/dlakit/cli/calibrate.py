"""``dlakit calibrate``: INT8 post-training calibration of an ONNX model on real inputs."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dlakit.errors import DlakitError
from dlakit.quant.calibrators import METHODS

if TYPE_CHECKING:
    from dlakit.quant.calibrate import CalibrationRun
    from dlakit.quant.scales import Scales

console = Console()
# Clipping more than this share of a tensor's values is worth a warning: a Gaussian clipped by
# entropy loses ~0.01-0.1%, while a tensor with a dominant spike (a constant background) can lose
# 20% when KL keeps the spike sharp, and INT8 accuracy collapses (docs/calibrate.md).
CLIP_WARNING = 0.01


def _resolve(model: str) -> tuple[Path, str | None]:
    """The model file and, for a zoo name, its default preprocess preset."""
    from dlakit.zoo import get_entry, resolve_model

    path = resolve_model(model)
    if Path(model).is_file():
        return path, None
    return path, get_entry(model).preprocess


def _companion(scales_path: Path, suffix: str) -> Path:
    name = scales_path.name
    for ending in (".scales.json", ".json"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    return scales_path.with_name(name + suffix)


def _progress_hook(progress: Progress) -> Callable[[str, int], Callable[[], None]]:
    labels = {"ranges": "pass 1/2: ranges", "histograms": "pass 2/2: histograms"}

    def start(label: str, total: int) -> Callable[[], None]:
        task = progress.add_task(labels.get(label, label), total=total)
        return lambda: progress.advance(task)

    return start


def calibrate_command(
    model: str = typer.Argument(..., help="ONNX file or zoo model name (e.g. mnist-cnn)."),
    data: str | None = typer.Option(
        None, "--data", "-d", help="Calibration inputs: a folder of images, an .npz, or a data set."
    ),
    preprocess: str | None = typer.Option(
        None,
        "--preprocess",
        "-p",
        help="Preset name or spec (resize=256,crop=224,mean=...,std=...); default: the zoo preset.",
    ),
    method: str = typer.Option("entropy", "--method", "-m", help="entropy | percentile | max."),
    percentile: float | None = typer.Option(
        None, "--percentile", help="Percentile of |x| for --method percentile (default 99.99)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Scales file to write (default: <model>.scales.json)."
    ),
    trt_cache: Path | None = typer.Option(
        None, "--trt-cache", help="TensorRT calibration cache (default: beside -o, .trtcache)."
    ),
    nvdla_table: Path | None = typer.Option(
        None,
        "--nvdla-table",
        help="NVDLA JSON calibration table (default: beside -o, .nvdla.json).",
    ),
    limit: int | None = typer.Option(
        500, "--limit", "-n", help="Use at most this many inputs (0: all)."
    ),
    input_shape: list[str] | None = typer.Option(
        None, "--input-shape", help="Pin a dynamic input, e.g. images:1x3x320x320."
    ),
    trt_version: int = typer.Option(
        8600, "--trt-version", help="TensorRT version in the cache header (TRT-<ver>-...)."
    ),
    from_cache: Path | None = typer.Option(
        None,
        "--from-cache",
        help="Instead of calibrating, import a TensorRT cache or NVDLA table into a scales file.",
    ),
) -> None:
    """Calibrate activation scales (entropy, percentile or max) on real inputs and write them."""
    from dlakit.graph import load_model, parse_input_shapes
    from dlakit.quant.calibrate import calibrate
    from dlakit.quant.formats import (
        read_scale_table,
        scales_from_table,
        write_nvdla_table,
        write_trt_cache,
    )
    from dlakit.quant.inputs import calibration_inputs

    if (data is None) == (from_cache is None):
        raise DlakitError(
            "give calibration inputs with --data, or scales to import with --from-cache"
        )
    if method not in METHODS:
        raise DlakitError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if limit is not None and limit < 0:
        raise DlakitError(f"--limit {limit}: must be >= 0")
    path, preset = _resolve(model)
    loaded = load_model(path, parse_input_shapes(input_shape))
    output = output or Path(f"{Path(model).stem}.scales.json")
    if from_cache is not None:
        scales = scales_from_table(loaded, read_scale_table(from_cache), str(from_cache))
        written = [scales.save(output)]
        if trt_cache:
            written.append(write_trt_cache(scales, trt_cache, trt_version))
        if nvdla_table:
            written.append(write_nvdla_table(scales, nvdla_table))
        _summary(path.name, scales, written, None)
        return

    inputs = calibration_inputs(data, preprocess or preset, loaded, limit or None)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        run = calibrate(
            loaded,
            inputs,
            method,
            percentile,
            model_name=Path(model).stem,
            progress=_progress_hook(progress),
        )
    scales = run.scales
    written = [scales.save(output)]
    written.append(
        write_trt_cache(scales, trt_cache or _companion(output, ".trtcache"), trt_version)
    )
    written.append(write_nvdla_table(scales, nvdla_table or _companion(output, ".nvdla.json")))
    _summary(path.name, scales, written, run)
    _warn_clipping(run.clipped, method)


def _summary(model: str, scales: Scales, written: list[Path], run: CalibrationRun | None) -> None:
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
    console.print(table)


def _warn_clipping(clipped: dict[str, float], method: str) -> None:
    heavy = sorted(((v, n) for n, v in clipped.items() if v > CLIP_WARNING), reverse=True)
    if not heavy:
        return
    worst = ", ".join(f"'{n}' {v:.1%}" for v, n in heavy[:3])
    hint = " (try --method percentile)" if method == "entropy" else ""
    console.print(
        f"[yellow]warning:[/] {method} clipped more than {CLIP_WARNING:.0%} of the values of "
        f"{len(heavy)} tensor(s): {worst}; INT8 accuracy may drop{hint}",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
