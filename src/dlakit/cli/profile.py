"""``dlakit profile``: predicted per-layer DLA/GPU time, or the model's calibration report."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report.console import Output, write_json
from dlakit.targets import load_target


def profile(
    model: str | None = o.OPTIONAL_MODEL,
    target: str = o.target_option(),
    power_mode: str | None = o.POWER_MODE,
    batch: int | None = o.BATCH,
    cores: int = typer.Option(
        1,
        "--cores",
        min=1,
        max=64,
        help="DLA cores running their own streams at once (they share DRAM).",
    ),
    sparse: bool = typer.Option(
        False, "--sparse", help="2:4 structured sparsity on INT8 convs with C > 64 (Orin)."
    ),
    precision: str = o.PRECISION,
    input_shape: list[str] | None = o.INPUT_SHAPE,
    json_path: Path | None = o.JSON,
    plot_dir: Path | None = o.PLOT,
    validate: bool = typer.Option(
        False,
        "--validate",
        help="Rebuild the published networks and print predicted vs measured images/s.",
    ),
    wide: bool = o.WIDE,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Per-layer time, bound and utilization on a DLA target, from the calibrated cycle model.

    MODEL is not needed with --validate. Numbers are modeled (the model version is printed)
    except on --target host, where GPU layers are timed for real on the local CUDA GPU. JSON:
    schema dlakit.profile v1 (docs/profile.md). -v adds the compute, memory, fill and overhead
    terms of each layer's time. --plot DIR writes roofline.png and layers.png.
    """
    out = o.output(verbose, quiet, json_path)
    plots = (
        {f"--plot {n}": plot_dir / n for n in ("roofline.png", "layers.png")} if plot_dir else {}
    )
    o.guard_outputs({"--json": json_path, **plots}, model and o.model_file(model))
    if validate:
        _validate(out, json_path)
        return
    if model is None:
        raise DlakitError("dlakit profile needs a MODEL (or --validate)")
    tgt = load_target(target)
    loaded = o.load_cli_model(model, input_shape)
    if tgt.kind == "host":
        _host(loaded, batch, out, json_path, wide)
        return
    from dlakit.perf import images_per_second, profile_model
    from dlakit.perf.model import summary
    from dlakit.report.profile import render, to_json

    prof = profile_model(
        loaded, tgt, power_mode, batch=batch, cores=cores, sparse=sparse, precision=precision
    )
    totals = summary(prof)
    all_cores = max(1, tgt.dla_cores)
    totals["images_per_second_one_core"] = images_per_second(prof, loaded, 1)
    totals["images_per_second_all_cores"] = images_per_second(prof, loaded, all_cores)
    totals["all_cores"] = all_cores
    render(prof, totals, out, wide)
    if json_path:
        write_json(to_json(prof, totals, str(loaded.path)), json_path, out)
    if plot_dir:
        from dlakit.perf.plots import write_plots

        paths = write_plots(prof, plot_dir)
        out.line(f"plots written: {', '.join(str(p) for p in paths)}")


def _validate(out: Output, json_path: Path | None) -> None:
    from dlakit.perf.validate import run_validation, validation_json
    from dlakit.report.profile import render_validation

    points, rows = run_validation()
    render_validation(points, rows, out)
    if json_path:
        write_json(validation_json(points), json_path, out)


def _host(loaded, batch: int | None, out: Output, json_path: Path | None, wide: bool) -> None:
    from dlakit.perf.host import device_name, time_layers
    from dlakit.perf.layers import build_layers
    from dlakit.perf.model import model_batch
    from dlakit.report.profile import host_json, render_host

    batch = batch or model_batch(loaded)
    layers = build_layers(loaded, "host")
    timings = time_layers(layers, batch)
    gpu = device_name()
    render_host(timings, gpu, batch, out, wide)
    if json_path:
        write_json(host_json(timings, gpu, batch), json_path, out)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
