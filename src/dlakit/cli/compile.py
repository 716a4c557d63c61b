"""``dlakit compile``: an ONNX model and its scales -> an NVDLA ``.dla`` artifact, or NVDLA
loadables (``--format loadable``) for the nvdla/sw runtime."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report import artifact as report
from dlakit.report.console import write_json

FORMATS = ("dla", "loadable")


def compile_command(
    model: str = o.MODEL,
    target: str = o.target_option(None),
    scales: Path | None = o.SCALES_INT8,
    output: Path = o.output_option(required=True),
    fmt: str = typer.Option(
        "dla",
        "--format",
        "-f",
        help="dla: the .dla artifact dlakit runs; loadable: NVDLA loadables for nvdla_runtime "
        "(one file, or a folder of loadables and host ONNX pieces when the model has fallback "
        "segments; docs/loadable.md).",
    ),
    precision: str = o.PRECISION,
    fp16_layers: list[str] | None = o.FP16_LAYERS,
    output_precision: str | None = o.OUTPUT_PRECISION,
    fallback_layers: list[str] | None = o.FALLBACK_LAYERS,
    input_shape: list[str] | None = o.INPUT_SHAPE,
    json_path: Path | None = o.JSON,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Compile the DLA segments to NVDLA hardware operations (INT8, or FP16 on nv_full with
    --precision fp16), the rest to host ONNX.

    The target is an open NVDLA: nv_small or nv_full. JSON: schema dlakit.compile v1, the stats
    (docs/artifact.md). -v adds the list of hardware operations (as dlakit inspect prints it).
    With --format loadable the firmware's PDP reciprocals replace dlakit's (what the KMD
    programs); the JSON then adds "loadables".
    """
    from dlakit.nvdla import compile_model, nvdla_target, write_artifact
    from dlakit.quant.scales import Scales

    if fmt not in FORMATS:
        raise DlakitError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    if precision == "int8" and scales is None:
        raise DlakitError("--scales is required with --precision int8 (dlakit calibrate)")
    if precision == "fp16" and scales is not None:
        raise DlakitError("--scales: --precision fp16 reads no scales (drop one of the two)")
    if precision == "fp16" and output_precision is not None:
        raise DlakitError("--output-precision: with --precision fp16 every output is FP16")
    out = o.output(verbose, quiet, json_path)
    if fmt == "loadable":
        from dlakit.loadable.package import is_loadable_folder

        # A folder of loadables this verb wrote before may be replaced; it is no input.
        guarded = None if output.is_dir() and is_loadable_folder(output) else output
        o.guard_outputs({"--output": guarded, "--json": json_path}, o.model_file(model), scales)
    else:
        o.guard_outputs({"--output": output, "--json": json_path}, o.model_file(model), scales)
    if precision == "fp16":
        from dlakit.lower.lowering_fp16 import require_fp16

        require_fp16(target)  # nv_small: refused before the model is read
    fp16, fallback = o.placement(fp16_layers, fallback_layers)
    try:
        nvdla_target(target)
    except DlakitError as exc:
        if fmt != "loadable":
            raise
        raise DlakitError(f"{exc}; NVDLA loadables are for those targets only") from None
    loaded = o.load_cli_model(model, input_shape)
    table = Scales.load(scales).for_model(loaded) if scales is not None else None
    name = Path(model).stem
    with out.status(f"compiling {name} for {target}"):
        comp = compile_model(
            loaded,
            table if table is not None else {},
            target,
            fp16 or (list(table.fp16_layers) if table is not None else []),
            fallback,
            o.zoo_preset(model),
            output_precision,
            via_firmware=fmt == "loadable",
            precision=precision,
        )
        if fmt == "loadable":
            from dlakit.loadable.package import write_loadables

            written = write_loadables(comp, output)
            path = written.path
        else:
            path = write_artifact(comp, output)
    report.render_compile(comp, name, path, target, out)
    if fmt == "loadable":
        from dlakit.report.loadable import loadables_json, render_loadables

        render_loadables(written, out)
        if json_path:
            doc = report.compile_json(comp, str(loaded.path), path, target)
            write_json(doc | {"loadables": loadables_json(written)}, json_path, out)
        return
    if out.verbose:
        from dlakit.nvdla.artifact import read_manifest

        report.render_ops(read_manifest(path), out)
    if json_path:
        write_json(report.compile_json(comp, str(loaded.path), path, target), json_path, out)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
