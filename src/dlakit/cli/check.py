"""``dlakit check``: which nodes run on the DLA, and why not the rest."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.partition import check_model
from dlakit.report.check import render
from dlakit.report.console import write_json
from dlakit.targets import load_target


def check(
    model: str = o.MODEL,
    target: str = o.target_option(),
    trt: str | None = o.TRT,
    input_shape: list[str] | None = o.INPUT_SHAPE,
    json_path: Path | None = o.JSON,
    emit_dir: Path | None = o.EMIT,
    fallback_only: bool = typer.Option(
        False, "--fallback-only", help="List only the nodes that do not run on the DLA."
    ),
    apply_policy: bool = o.APPLY_POLICY,
    wide: bool = o.WIDE,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Per-node DLA verdict with reasons, DLA/fallback segments, recommendations and a summary.

    The placement predicts TensorRT's (per-layer rules, subgraph rules, partitioning); dlakit's
    own placement advice is listed apart, with the time each move saves (performance model),
    and applied only with --apply-policy. JSON: schema dlakit.check v3 (docs/check.md): every
    reason has a kind (rule, lowering, user, policy), and a recommendations list. -v adds every
    node's notes and the names of the tensors that need a reformat. Exit code 0 whenever the
    check ran, whatever the verdicts; 2 on errors.
    """
    out = o.output(verbose, quiet, json_path)
    manifest_file = emit_dir / "segments.json" if emit_dir else None
    o.guard_outputs({"--json": json_path, "--emit": manifest_file}, o.model_file(model))
    tgt = load_target(target)
    loaded = o.load_cli_model(model, input_shape)
    result = check_model(loaded, tgt, trt=trt, apply_policy=apply_policy)
    if emit_dir:
        from dlakit.partition.emit import emit, segment_files

        files = {f"--emit file {name}": emit_dir / name for name in segment_files(result.segments)}
        o.guard_outputs({"--json": json_path, **files}, o.model_file(model))
    if result.recommendations:  # the performance model is imported only to price them
        from dlakit.report.recommend import price_recommendations

        price_recommendations(result)
    render(result, out, fallback_only=fallback_only, wide=wide)
    if json_path:
        write_json(result.to_json(), json_path, out)
    if emit_dir:
        manifest = emit(loaded, result.segments, emit_dir, tgt.name)
        out.line(f"{len(result.segments)} segment files and {manifest.name} written to {emit_dir}")


def register(app: typer.Typer) -> None:
    app.command("check")(check)
