"""``dlakit plan``: how the GPU and the DLA cores should share one or several models (modeled)."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report.console import write_json


def parse_batches(text: str | None) -> list[int] | None:
    """``--batch 4`` or ``--batch 1,4,16`` -> [4] / [1, 4, 16]."""
    if text is None:
        return None
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(int(item))
        except ValueError:
            raise DlakitError(f"--batch {text}: '{item}' is not an integer") from None
    if not values:
        raise DlakitError("--batch: no value")
    for b in values:
        if b < 1:
            raise DlakitError(f"--batch {b}: the batch must be at least 1")
    return values


def parse_stage(flag: str, text: str | None):
    """``--pre gpu`` (estimated) or ``--pre cpu:2.5`` (ms per image)."""
    from dlakit.plan import Stage

    if text is None:
        return None
    device, _, ms = text.partition(":")
    if device not in ("cpu", "gpu"):
        raise DlakitError(f"{flag} {text}: the device must be cpu or gpu")
    if not ms:
        return Stage(device)
    try:
        value = float(ms)
    except ValueError:
        raise DlakitError(f"{flag} {text}: '{ms}' is not a time in ms") from None
    if value < 0:
        raise DlakitError(f"{flag} {text}: the time must be >= 0")
    return Stage(device, value * 1e-3)


def plan(
    models: list[str] = typer.Argument(
        ..., help="ONNX files or zoo names (several: concurrent models).", show_default=False
    ),
    target: str = o.target_option(),
    power_mode: str | None = o.POWER_MODE,
    precision: str = o.PRECISION,
    batch: str | None = o.BATCH_LIST,
    objective: str = o.OBJECTIVE,
    strategy: str = typer.Option(
        "auto",
        "--strategy",
        help="auto, gpu, dla, streams, data-parallel, pipeline or layer-map.",
    ),
    gpu_batch: int | None = typer.Option(
        None, "--gpu-batch", help="Images per GPU inference (streams, data-parallel)."
    ),
    dla_batch: int | None = typer.Option(
        None, "--dla-batch", help="Images per DLA core inference (streams, data-parallel)."
    ),
    dla_cores: int | None = typer.Option(
        None, "--dla-cores", help="DLA cores the plan may use (0, 1, 2); default: all."
    ),
    transitions: int = typer.Option(
        2, "--transitions", help="layer-map: at most this many GPU/DLA switches per model."
    ),
    pre: str | None = typer.Option(
        None, "--pre", help="Pre-processing stage: cpu:MS or gpu[:MS] (MS per image)."
    ),
    post: str | None = typer.Option(
        None, "--post", help="Post-processing stage: cpu:MS or gpu[:MS] (MS per image)."
    ),
    input_shape: list[str] | None = o.INPUT_SHAPE,
    json_path: Path | None = o.JSON,
    plot_dir: Path | None = o.PLOT,
    emit_dir: Path | None = o.EMIT,
    wide: bool = o.WIDE,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Plan GPU + DLA execution: every strategy on one shared cost model, the best chosen.

    Strategies: gpu (all on the GPU), dla (DLA cores, fallback layers on the GPU), streams (each
    device its own stream of whole inferences), data-parallel (seed 004: the DLA-able front on
    sub-batches over every device, the tail on the GPU), pipeline (JEDI: stages on GPU/DLA0/
    DLA1), layer-map (HaX-CoNN: layer groups of one or several models, OR-Tools CP-SAT), auto
    (all that apply; GPU only is always a candidate). Every number is modeled. JSON: schema
    dlakit.plan v1 (docs/plan.md). --plot DIR: timeline.png (the chosen plan) and, for a batch
    list, throughput_vs_batch.png. -v adds each plan's devices.
    """
    from dlakit.plan import costs_for, emit_plan, plan_models
    from dlakit.plan.api import check_request
    from dlakit.plan.result import curve_json, result_json
    from dlakit.report.plan import render, render_curve

    out = o.output(verbose, quiet, json_path)
    batches = parse_batches(batch)
    stages = parse_stage("--pre", pre), parse_stage("--post", post)
    tgt, mode, cores = check_request(
        target, power_mode, precision, batches or [1], objective, strategy, dla_cores
    )
    loaded = [(name, o.load_cli_model(name, input_shape)) for name in models]
    if batches is None:
        from dlakit.perf.model import model_batch

        batches = [max(model_batch(m) for _, m in loaded)]
        if gpu_batch is not None and dla_batch is not None and batch is None:
            batches = [gpu_batch + cores * dla_batch]
    if emit_dir is not None and len(batches) > 1:
        raise DlakitError("--emit writes one plan: give one --batch, not a list")
    with out.status("costing the models"):
        costs = costs_for(loaded, tgt, mode, precision, cores)
    results = []
    for b in batches:
        with out.status(f"planning batch {b}"):
            results.append(
                plan_models(
                    loaded,
                    tgt,
                    mode,
                    precision=precision,
                    batch=b,
                    objective=objective,
                    strategy=strategy,
                    gpu_batch=gpu_batch,
                    dla_batch=dla_batch,
                    dla_cores=cores,
                    transitions=transitions,
                    pre=stages[0],
                    post=stages[1],
                    costs=costs,
                )
            )
    if len(results) == 1:
        render(results[0], out, wide)
        doc = result_json(results[0])
    else:
        render_curve(results, out, wide)
        doc = curve_json(results)
    if json_path:
        write_json(doc, json_path, out)
    if emit_dir is not None:
        path = emit_plan(results[0], costs, emit_dir)
        out.line(f"plan written: {path} (pieces, trtexec.sh, run_plan.py beside it)")
    if plot_dir is not None:
        from dlakit.report.plan import write_plots

        paths = write_plots(results, plot_dir)
        out.line(f"plots written: {', '.join(str(p) for p in paths)}")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
