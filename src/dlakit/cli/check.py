"""``dlakit check``: which nodes run on the DLA, and why not the rest."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from dlakit.cli._common import INPUT_SHAPE_OPT, MODEL_ARG, TARGET_OPT, TRT_OPT, load_cli_model
from dlakit.partition import check_model
from dlakit.partition.emit import emit
from dlakit.report.check import render, write_json
from dlakit.targets import load_target


def check(
    model: str = MODEL_ARG,
    target: str = TARGET_OPT,
    trt: str | None = TRT_OPT,
    input_shape: list[str] | None = INPUT_SHAPE_OPT,
    json_path: Path | None = typer.Option(
        None, "--json", help="Write the result as JSON (schema dlakit.check v1, see docs/check.md)."
    ),
    emit_dir: Path | None = typer.Option(
        None, "--emit", help="Write one ONNX file per segment and segments.json into this folder."
    ),
    fallback_only: bool = typer.Option(
        False, "--fallback-only", help="List only the nodes that do not run on the DLA."
    ),
) -> None:
    """Per-node DLA verdict with reasons, DLA/GPU segments and a summary.

    Exit code 0 whenever the check ran, whatever the verdicts; 2 on errors.
    """
    tgt = load_target(target)
    loaded = load_cli_model(model, input_shape)
    result = check_model(loaded, tgt, trt=trt)
    console = Console()
    render(result, console, fallback_only=fallback_only)
    if json_path:
        write_json(result, json_path)
        console.print(f"JSON written to {json_path}")
    if emit_dir:
        manifest = emit(loaded, result.segments, emit_dir, tgt.name)
        console.print(
            f"{len(result.segments)} segment files and {manifest.name} written to {emit_dir}"
        )


def register(app: typer.Typer) -> None:
    app.command("check")(check)
