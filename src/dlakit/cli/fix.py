"""``dlakit fix``: function-preserving rewrites that move nodes onto the DLA, checked by ORT."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dlakit.cli._common import INPUT_SHAPE_OPT, MODEL_ARG, TARGET_OPT, TRT_OPT, load_cli_model
from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel, load_model, save_model
from dlakit.rewrite import TOLERANCE, FixResult, VerifyInputs, fix_model
from dlakit.targets import Target, load_target


def fix(
    model: str = MODEL_ARG,
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the rewritten ONNX."),
    target: str = TARGET_OPT,
    trt: str | None = TRT_OPT,
    input_shape: list[str] | None = INPUT_SHAPE_OPT,
    data: str | None = typer.Option(
        None,
        "--data",
        help="Verification inputs: a data set name, a folder of images or an .npz "
        "(default for zoo models: a few real photos with the model's preprocess preset).",
    ),
    preprocess: str | None = typer.Option(
        None, "--preprocess", help="Preprocess for --data images (default: the zoo model's preset)."
    ),
    count: int = typer.Option(
        2, "--count", min=1, help="How many real inputs to verify on (each is one onnxruntime run)."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the report as JSON (schema dlakit.fix v1, docs/fix.md)."
    ),
    random_data: bool = typer.Option(
        False, "--random", help="Verify on seeded random normal inputs instead of real data."
    ),
) -> None:
    """Rewrite MODEL so more of it runs on the DLA, verify it, and write it to OUTPUT.

    Every rewrite keeps the model's function: each pass's result is compared with the original
    by onnxruntime (max |a-b| / max |a| <= 1e-5 per output); a rewrite that fails is undone and
    listed as refused. Exit code 0 when OUTPUT was written, 2 on errors.
    """
    console = Console()
    tgt = load_target(target)
    loaded = load_cli_model(model, input_shape)
    inputs = (
        None if random_data else _verify_inputs(loaded, model, data, preprocess, count, console)
    )
    result = fix_model(loaded, tgt, inputs)
    _render(result, console)
    if output.resolve() == Path(loaded.path).resolve():
        raise DlakitError(f"--output {output} would overwrite the input model")
    save_model(result.model, output)
    if json_path:
        json_path.write_text(json.dumps(result.to_json(), indent=1))
    _coverage(loaded, output, tgt, trt, console)
    console.print(f"wrote {output}", highlight=False, soft_wrap=True)


def _verify_inputs(
    loaded: LoadedModel,
    model: str,
    data: str | None,
    preprocess: str | None,
    count: int,
    console: Console,
) -> VerifyInputs | None:
    """Real inputs when a source or a zoo preset gives them; None (random) otherwise, said aloud."""
    from dlakit.rewrite.inputs import real_inputs

    if preprocess is None and not Path(model).exists():
        try:
            from dlakit.zoo import get_entry

            preprocess = get_entry(model).preprocess
        except (ImportError, DlakitError):
            preprocess = None
    if data is None and preprocess is None:
        console.print("verifying on random normal inputs (no --data and no zoo preset)")
        return None
    try:
        return real_inputs(loaded, data, preprocess, limit=count)
    except DlakitError as exc:
        if data is not None:
            raise
        console.print(f"verifying on random normal inputs: real data unavailable ({exc})")
        return None


def _render(result: FixResult, console: Console) -> None:
    table = Table(title=f"rewrites applied ({len(result.rewrites)})")
    for column in ("pass", "nodes before", "nodes after", "what changed"):
        table.add_column(column, overflow="fold")
    for r in result.rewrites:
        table.add_row(r.pass_name, "\n".join(r.before), "\n".join(r.after), r.description)
    console.print(table)
    if result.refusals:
        refused = Table(title=f"not rewritten ({len(result.refusals)})")
        for column in ("pass", "node", "op", "reason"):
            refused.add_column(column, overflow="fold")
        for f in result.refusals:
            refused.add_row(f.pass_name, f.node, f.op_type, f.reason)
        console.print(refused)
    v = result.verification
    if v.runs == 0:
        console.print(
            f"no rewrite applied: the model is written as loaded; nodes {result.nodes_after}"
        )
        return
    console.print(
        f"verified with onnxruntime: max relative error {v.max_rel_error:.3g} "
        f"on '{v.worst_output}' "
        f"(limit {TOLERANCE:g}; {v.runs} run(s) on {v.source}); "
        f"nodes {result.nodes_before} -> {result.nodes_after}",
        highlight=False,
        soft_wrap=True,
    )


def _coverage(
    loaded: LoadedModel, output: Path, target: Target, trt: str | None, console: Console
) -> None:
    """DLA node counts before and after, by dlakit.support's verdicts."""
    from dlakit.partition import check_model

    before = check_model(loaded, target, trt=trt).summary
    after = check_model(load_model(output, loaded.input_shapes), target, trt=trt).summary
    console.print(
        f"on the DLA ({target.name}): {before['nodes_on_dla']}/{before['nodes']} nodes, "
        f"{before['dla_segments']} DLA segment(s) -> {after['nodes_on_dla']}/{after['nodes']} "
        f"nodes, {after['dla_segments']} DLA segment(s); still off the DLA: "
        f"{after['fallback_ops'] or 'none'}",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("fix")(fix)
