"""``dlakit compile``: an ONNX model and its scales -> an NVDLA ``.dla`` artifact."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dlakit.cli._common import INPUT_SHAPE_OPT, MODEL_ARG, load_cli_model

console = Console()


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _preset(model: str) -> str | None:
    if Path(model).exists():
        return None
    from dlakit.zoo import get_entry

    return get_entry(model).preprocess


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB ({n:,} bytes)"


def compile_command(
    model: str = MODEL_ARG,
    target: str = typer.Option(..., "--target", "-t", help="nv_small or nv_full."),
    scales: Path = typer.Option(..., "--scales", "-s", help="Scales file from dlakit calibrate."),
    output: Path = typer.Option(..., "--output", "-o", help="Artifact to write (.dla)."),
    fp16_layers: list[str] | None = typer.Option(
        None, "--fp16-layers", help="ONNX node names to keep in FP16 (comma separated)."
    ),
    gpu_layers: list[str] | None = typer.Option(
        None, "--gpu-layers", help="ONNX node names to run on the host (comma separated)."
    ),
    input_shape: list[str] | None = INPUT_SHAPE_OPT,
) -> None:
    """Compile the DLA segments to NVDLA hardware operations (INT8), the rest to host ONNX."""
    from dlakit.nvdla import compile_model, nvdla_target, write_artifact
    from dlakit.quant.scales import Scales

    nvdla_target(target)
    loaded = load_cli_model(model, input_shape)
    table = Scales.load(scales).for_model(loaded)
    with console.status(f"compiling {Path(model).stem} for {target}"):
        comp = compile_model(
            loaded, table, target, _split(fp16_layers), _split(gpu_layers), _preset(model)
        )
        path = write_artifact(comp, output)
    st = comp.stats
    t = Table(title=f"{Path(model).stem} -> {path} ({target})", show_header=False)
    t.add_row("segments", f"{st['dla_segments']} DLA, {st['fallback_segments']} host")
    kinds = ", ".join(f"{v} {k}" for k, v in st["ops_by_kind"].items() if v)
    t.add_row("hardware operations", f"{st['hardware_ops']} ({kinds})")
    til = st["tiling"]
    t.add_row(
        "CBUF tiling",
        f"{til['split_layers']} of {til['layers']} convolutions split; "
        f"{til['operations']} conv operations, at most {til['max_tiles']} for one layer",
    )
    t.add_row("register writes", f"{st['register_writes']:,}")
    t.add_row("constants (weights, operands)", _mib(len(comp.constants)))
    t.add_row("activations (after reuse)", _mib(comp.act_bytes))
    t.add_row("peak memory", _mib(comp.peak_bytes))
    t.add_row("compile time", f"{st['compile_seconds']:.2f} s")
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
