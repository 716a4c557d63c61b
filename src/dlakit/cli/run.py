"""``dlakit run``: execute a ``.dla`` artifact (simulator + fallback segments) on real inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.files import atomic_write, npz_writer
from dlakit.report import artifact as report
from dlakit.report.console import write_json


def _inputs(source: str, preprocess: str | None, shape: tuple[int, ...], limit: int | None):
    """(inputs, labels or None) from a .npy file, or anything dlakit.data reads."""
    path = Path(source)
    if path.suffix == ".npy":
        if not path.is_file():
            raise DlakitError(f"--data file not found: {path}")
        try:
            x = np.load(path).astype(np.float32)
        except (OSError, ValueError, TypeError, EOFError) as exc:
            raise DlakitError(f"--data {path}: not a readable .npy of numbers ({exc})") from None
        if x.shape[1:] != tuple(shape[1:]):
            raise DlakitError(f"--data {path}: shape {list(x.shape)} does not fit {list(shape)}")
        return x[:limit], None
    from dlakit.data import load_labelled

    ds = load_labelled(source, preprocess, shape, limit)
    labels = None
    if ds.labels is not None and all(v is not None for v in ds.labels):
        labels = np.asarray(ds.labels, dtype=np.int64)
    return np.asarray(ds.images, dtype=np.float32), labels


def run_command(
    artifact: Path = typer.Argument(..., help="A .dla file from dlakit compile."),
    data: str = o.data_option(required=True),
    device: str = o.DEVICE,
    fallback_engine: str = typer.Option(
        "torch", "--fallback-engine", help="Fallback segments in torch (any device) or ort (CPU)."
    ),
    preprocess: str | None = o.PREPROCESS,
    limit: int | None = o.limit_option(),
    output: Path | None = o.output_option(),
    compare: str | None = typer.Option(
        None, "--compare", help="FP32 model (ONNX or zoo name) to compare against, as accuracy."
    ),
    batch: int | None = o.BATCH,
    json_path: Path | None = o.JSON,
    workers: int = o.WORKERS,
    ray: str | None = o.RAY,
    resume: Path | None = o.RESUME,
    retries: int = o.RETRIES,
    shard_size: int | None = o.SHARD_SIZE,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Run DLA segments on the simulator and fallback segments in PyTorch, in dependency order.

    The hardware operations are decoded once, then run on --batch images at a time, in shards
    (--workers, --ray, --resume: docs/cli.md). JSON: schema dlakit.run v1, images, seconds
    (simulator time, summed over shards), images_per_second, hardware operations and the
    --compare metrics (docs/artifact.md). -v adds how many operations run on the fast path.
    """
    from dlakit.cli.sharding import Sharding, run_outputs
    from dlakit.nvdla import read_artifact
    from dlakit.run.runner import Runner

    out = o.output(verbose, quiet, json_path)
    o.guard_outputs({"--output": output, "--json": json_path, "--resume": resume}, artifact, data,
                    compare)  # fmt: skip
    sharding = Sharding(workers, ray, resume, retries, shard_size)
    sharding.check()
    comp = read_artifact(artifact)
    if len(comp.inputs) != 1:
        raise DlakitError(f"{artifact}: {len(comp.inputs)} inputs; dlakit run feeds one")
    name = comp.inputs[0]
    shape = comp.tensors[name].shape
    x, labels = _inputs(data, preprocess or comp.preprocess, shape, o.limit_value(limit))
    reference = _reference(compare, comp, artifact) if compare else None
    with out.status(f"decoding {comp.stats.get('hardware_ops', '')} hardware operations"):
        runner = Runner(comp, device, fallback_engine, batch)
    steps = len(runner.program.steps)
    if batch is None and runner.batch < min(runner.preferred_batch, len(x)):
        out.line(
            f"batch {runner.batch} (not {runner.preferred_batch}): about "
            f"{runner.memory_needed(runner.batch) / 2**30:.2f} GiB, what this machine's free "
            "memory allows"
        )
    out.detail(
        f"{runner.program.operations} hardware operations decoded into {steps} steps: "
        f"{runner.fast_operations} on the fast path, {steps - runner.fast_operations} on the "
        f"unit models; batch {runner.batch}, about "
        f"{runner.memory_needed(runner.batch) / 2**30:.2f} GiB"
    )
    outs, stats = run_outputs(out, runner, artifact, x, device, fallback_engine, sharding, batch)
    title = f"{artifact.name} on {data} ({len(x)} inputs, {runner.device}, batch {stats.batch})"
    table = report.run_table(title, stats)
    comparison = _compare(reference, compare, x, labels, outs, comp.outputs) if compare else None
    if comparison:
        report.add_comparison(table, comparison)
    out.print(table)
    if output:
        atomic_write(output, npz_writer(outs))
        out.line(f"wrote {output}")
    if json_path:
        doc = report.run_json(
            artifact, data, str(runner.device), stats, comparison, runner.program.operations
        )
        write_json(doc, json_path, out)


def _reference(model: str, comp, artifact: Path):
    """The --compare model, before any run: one input of the artifact's shape, its outputs."""
    loaded = o.load_cli_model(model, None)
    want = comp.tensors[comp.inputs[0]].shape
    got = [loaded.input_shapes[n] for n in loaded.input_names]
    if len(got) != 1 or tuple(got[0][1:]) != tuple(want[1:]):
        raise DlakitError(
            f"--compare {model}: its inputs {got} do not match {artifact}'s input {list(want)}"
        )
    missing = [n for n in comp.outputs if n not in loaded.output_names]
    if missing:
        raise DlakitError(f"--compare {model}: it has no output named {missing[0]!r}")
    return loaded


def _compare(loaded, model: str, x, labels, outs, names) -> dict[str, Any]:
    """The DLA outputs against the FP32 model's on the same inputs."""
    from dlakit.accuracy import compare as acc

    ref = acc.float_run(loaded, x)
    first = names[0]
    top1 = None
    if labels is not None:
        top1 = {
            "fp32": acc.topk_accuracy(ref[first], labels),
            "dla": acc.topk_accuracy(outs[first], labels),
        }
    return {
        "model": model,
        "top1": top1,
        "agreement": acc.agreement(ref[first], outs[first]),
        "outputs": {
            name: {
                "cosine": acc.cosine(ref[name], outs[name]),
                "sqnr_db": acc.sqnr_db(ref[name], outs[name]),
            }
            for name in names
        },
    }


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
