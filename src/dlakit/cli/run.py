"""``dlakit run``: execute a ``.dla`` artifact (simulator + fallback segments) on real inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from dlakit.errors import DlakitError

console = Console()


def _inputs(source: str, preprocess: str | None, shape: tuple[int, ...], limit: int | None):
    """(inputs, labels or None) from a .npy file, or anything dlakit.data reads."""
    path = Path(source)
    if path.suffix == ".npy":
        if not path.is_file():
            raise DlakitError(f"--input file not found: {path}")
        x = np.load(path).astype(np.float32)
        if x.shape[1:] != tuple(shape[1:]):
            raise DlakitError(f"--input {path}: shape {list(x.shape)} does not fit {list(shape)}")
        return x[:limit], None
    from dlakit.data import load_labelled

    ds = load_labelled(source, preprocess, shape, limit)
    labels = None
    if ds.labels is not None and all(v is not None for v in ds.labels):
        labels = np.asarray(ds.labels, dtype=np.int64)
    return np.asarray(ds.images, dtype=np.float32), labels


def run_command(
    artifact: Path = typer.Argument(..., help="A .dla file from dlakit compile."),
    input: str = typer.Option(
        ..., "--input", "-i", help="Inputs: .npy, .npz, image folder or data set name[:split]."
    ),
    device: str = typer.Option("cpu", "--device", help="Simulator and host device: cpu or cuda."),
    fallback_engine: str = typer.Option(
        "torch", "--fallback-engine", help="Fallback segments in torch (any device) or ort (CPU)."
    ),
    preprocess: str | None = typer.Option(
        None, "--preprocess", "-p", help="Preset or spec; default: the artifact's."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Use at most this many inputs."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write outputs here (.npz)."),
    compare: str | None = typer.Option(
        None, "--compare", help="FP32 model (ONNX or zoo name) to compare against, as accuracy."
    ),
) -> None:
    """Run DLA segments on the simulator and fallback segments in PyTorch, in dependency order."""
    from dlakit.nvdla import read_artifact
    from dlakit.run.runner import Runner

    comp = read_artifact(artifact)
    if len(comp.inputs) != 1:
        raise DlakitError(f"{artifact}: {len(comp.inputs)} inputs; dlakit run feeds one")
    name = comp.inputs[0]
    x, labels = _inputs(input, preprocess or comp.preprocess, comp.tensors[name].shape, limit)
    runner = Runner(comp, device, fallback_engine)
    with console.status(f"running {len(x)} input(s) on the simulated {comp.target.name}"):
        outs, stats = runner.run({name: x})
    t = Table(
        title=f"{artifact.name} on {input} ({len(x)} inputs, {runner.device})", show_header=False
    )
    t.add_row("hardware operations run", f"{stats.operations:,}")
    t.add_row("time", f"{stats.seconds:.2f} s (DLA {stats.dla_seconds:.2f} s, host "
              f"{stats.fallback_seconds:.2f} s)")  # fmt: skip
    t.add_row("images/s", f"{stats.images / stats.seconds:.2f}")
    if compare:
        _compare(t, compare, x, labels, outs, comp.outputs)
    console.print(t)
    if output:
        np.savez(output, **outs)
        console.print(f"wrote {output}")


def _compare(t: Table, model: str, x, labels, outs, names) -> None:
    from dlakit.accuracy import compare as acc
    from dlakit.cli._common import load_cli_model

    loaded = load_cli_model(model, None)
    ref = acc.float_run(loaded, x)
    for name in names:
        if name not in ref:
            raise DlakitError(f"--compare {model}: it has no output named {name!r}")
    first = names[0]
    if labels is not None:
        t.add_row("top-1 FP32 / DLA", f"{100 * acc.topk_accuracy(ref[first], labels):.2f}% / "
                  f"{100 * acc.topk_accuracy(outs[first], labels):.2f}%")  # fmt: skip
    t.add_row("top-1 agreement with FP32", f"{100 * acc.agreement(ref[first], outs[first]):.2f}%")
    for name in names:
        cos, sqnr = acc.cosine(ref[name], outs[name]), acc.sqnr_db(ref[name], outs[name])
        t.add_row(f"{name}: cosine / SQNR", f"{cos:.4f} / {sqnr:.1f} dB")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
