"""``dlakit fix``: function-preserving rewrites that move nodes onto the DLA, checked by ORT."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel, load_model, save_model
from dlakit.report.console import Output, write_json
from dlakit.report.fix import coverage_line, render
from dlakit.rewrite import VerifyInputs, fix_model
from dlakit.targets import load_target


def fix(
    model: str = o.MODEL,
    output: Path = o.output_option(required=True),
    target: str = o.target_option(),
    trt: str | None = o.TRT,
    input_shape: list[str] | None = o.INPUT_SHAPE,
    data: str | None = o.data_option(),
    preprocess: str | None = o.PREPROCESS,
    limit: int = o.limit_option(2),
    json_path: Path | None = o.JSON,
    random_data: bool = typer.Option(
        False, "--random", help="Verify on seeded random normal inputs instead of real data."
    ),
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Rewrite MODEL so more of it runs on the DLA, verify it, and write it to OUTPUT.

    Every rewrite keeps the model's function: each pass's result is compared with the original
    by onnxruntime (max |a-b| / max |a| <= 1e-5 per output) on --limit real inputs (one
    onnxruntime run each; default: a few photos with the zoo model's preset); a rewrite that
    fails is undone and listed as refused. The DLA coverage before and after is TensorRT's
    predicted placement; dlakit's placement policy is then applied to the rewritten model, and
    the nodes it puts on the fallback device are listed (as --fallback-layers takes them) with
    the time they save. JSON: schema dlakit.fix v2 (docs/fix.md). -v adds the limits the passes
    applied. Exit code 0 when OUTPUT was written, 2 on errors.
    """
    out = o.output(verbose, quiet, json_path)
    o.guard_outputs({"--output": output, "--json": json_path}, o.model_file(model), data)
    tgt = load_target(target)
    loaded = o.load_cli_model(model, input_shape)
    count = o.limit_value(limit)
    inputs = None if random_data else _verify_inputs(loaded, model, data, preprocess, count, out)
    result = fix_model(loaded, tgt, inputs)
    render(result, out)
    save_model(result.model, output)
    from dlakit.partition import check_model
    from dlakit.report.check import placement, policy_line
    from dlakit.report.recommend import price_recommendations

    before = check_model(loaded, tgt, trt=trt)
    fixed = load_model(output, loaded.input_shapes)
    after = check_model(fixed, tgt, trt=trt, apply_policy=True)
    price_recommendations(after)
    predicted = check_model(fixed, tgt, trt=trt).summary
    out.line(coverage_line(tgt.name, before.summary, predicted))
    if after.recommendations:
        out.line(policy_line(after))
    if json_path:
        write_json(result.to_json(placement(before, predicted, after)), json_path, out)
    out.line(f"wrote {output}")


def _verify_inputs(
    loaded: LoadedModel,
    model: str,
    data: str | None,
    preprocess: str | None,
    limit: int | None,
    out: Output,
) -> VerifyInputs | None:
    """Real inputs when a source or a zoo preset gives them; None (random) otherwise, said aloud."""
    from dlakit.rewrite.inputs import real_inputs

    if preprocess is None:
        try:
            preprocess = o.zoo_preset(model)
        except DlakitError:
            preprocess = None
    if data is None and preprocess is None:
        out.line("verifying on random normal inputs (no --data and no zoo preset)")
        return None
    try:
        return real_inputs(loaded, data, preprocess, limit=limit)
    except DlakitError as exc:
        if data is not None:
            raise
        out.line(f"verifying on random normal inputs: real data unavailable ({exc})")
        return None


def register(app: typer.Typer) -> None:
    app.command("fix")(fix)
