"""``dlakit profile``: predicted per-layer DLA/GPU time, or the model's calibration report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dlakit.cli._common import INPUT_SHAPE_OPT, TARGET_OPT, load_cli_model
from dlakit.errors import DlakitError
from dlakit.targets import load_target


def profile(
    model: str | None = typer.Argument(
        None, help="ONNX file or zoo model name (not needed with --validate)."
    ),
    target: str = TARGET_OPT,
    power_mode: str | None = typer.Option(
        None, "--power-mode", "-p", help="Power mode: MAXN, 50W, 30W, 15W (Orin); default MAXN."
    ),
    batch: int | None = typer.Option(
        None, "--batch", "-b", help="DLA batch (a loop: time is linear in it); default: model's."
    ),
    cores: int = typer.Option(
        1, "--cores", help="DLA cores running their own streams at once (they share DRAM)."
    ),
    sparse: bool = typer.Option(
        False, "--sparse", help="2:4 structured sparsity on INT8 convs with C > 64 (Orin)."
    ),
    precision: str = typer.Option("int8", "--precision", help="DLA precision: int8 or fp16."),
    input_shape: list[str] | None = INPUT_SHAPE_OPT,
    json_path: Path | None = typer.Option(
        None, "--json", help="Write the result as JSON (see docs/profile.md)."
    ),
    plot_dir: Path | None = typer.Option(
        None, "--plot", help="Write roofline.png and layers.png into this folder."
    ),
    validate: bool = typer.Option(
        False,
        "--validate",
        help="Rebuild the published networks and print predicted vs measured images/s.",
    ),
) -> None:
    """Per-layer time, bound and utilization on a DLA target, from the calibrated cycle model.

    Numbers are modeled (the model version is printed) except on --target host, where GPU
    layers are timed for real on the local CUDA GPU.
    """
    console = Console()
    if validate:
        _validate(console, json_path)
        return
    if model is None:
        raise DlakitError("dlakit profile needs a MODEL (or --validate)")
    tgt = load_target(target)
    loaded = load_cli_model(model, input_shape)
    if tgt.kind == "host":
        _host(loaded, batch, console, json_path)
        return
    from dlakit.perf import images_per_second, profile_model
    from dlakit.perf.model import summary
    from dlakit.perf.report import render, to_json, write_json

    prof = profile_model(
        loaded, tgt, power_mode, batch=batch, cores=cores, sparse=sparse, precision=precision
    )
    totals = summary(prof)
    all_cores = max(1, tgt.dla_cores)
    totals["images_per_second_one_core"] = images_per_second(prof, loaded, 1)
    totals["images_per_second_all_cores"] = images_per_second(prof, loaded, all_cores)
    totals["all_cores"] = all_cores
    render(prof, totals, console)
    if json_path:
        write_json(to_json(prof, totals, str(loaded.path)), json_path)
        console.print(f"JSON written to {json_path}")
    if plot_dir:
        from dlakit.perf.plots import write_plots

        paths = write_plots(prof, plot_dir)
        console.print(f"plots written: {', '.join(str(p) for p in paths)}")


def _validate(console: Console, json_path: Path | None) -> None:
    from dlakit.perf.report import write_json
    from dlakit.perf.validate import render_validation, run_validation, validation_json

    points, rows = run_validation()
    render_validation(points, rows, console)
    if json_path:
        write_json(validation_json(points), json_path)
        console.print(f"JSON written to {json_path}")


def _host(loaded, batch: int | None, console: Console, json_path: Path | None) -> None:
    from dlakit.perf.host import device_name, time_layers
    from dlakit.perf.layers import build_layers
    from dlakit.perf.model import model_batch
    from dlakit.perf.report import write_json

    batch = batch or model_batch(loaded)
    layers = build_layers(loaded, "host")
    timings = time_layers(layers, batch)
    gpu = device_name()
    table = Table(
        title=f"measured on {gpu}, batch {batch} (FP16; CUDA graph of 10 calls, median of 20)"
    )
    for col in ("#", "layer", "hw layer", "time µs"):
        table.add_column(col)
    for index, t in enumerate(timings):
        if t.runs:
            table.add_row(str(index), t.layer.name[-40:], t.layer.label, f"{t.median_s * 1e6:.1f}")
    console.print(table)
    total = sum(t.median_s for t in timings)
    console.print(f"sum of layer medians {total * 1e3:.3f} ms ({batch / total:.1f} images/s)")
    if json_path:
        write_json(
            {
                "schema": "dlakit.profile.host",
                "schema_version": 1,
                "measured": True,
                "device": gpu,
                "batch": batch,
                "layers": [
                    {"name": t.layer.name, "hw_layer": t.layer.label, "time_us": t.median_s * 1e6}
                    for t in timings
                ],
                "total_ms": total * 1e3,
            },
            json_path,
        )


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
