"""``dlakit loadable``: read, run and regression-test NVDLA loadables (nvdla/sw flatbuffers)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report.console import write_json

loadable_app = typer.Typer(
    help="NVDLA loadables: list their contents, run them through the firmware model on the "
    "simulator, run the official regression tests."
)

_LOADABLE = typer.Argument(..., help="a loadable (flatbuffer, e.g. regression/flatbufs/...)")


@loadable_app.command("inspect")
def inspect(
    path: Path = _LOADABLE,
    json_path: Path | None = o.JSON,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Tasks, memory, addresses, events, blobs, tensors, relocations and submit list; the DLA
    tasks' operations (-v: one row each). JSON: schema dlakit.loadable v1 (docs/loadable.md)."""
    from dlakit.loadable.network import dla_networks
    from dlakit.loadable.reader import read_loadable
    from dlakit.report.loadable import inspect_json, render_inspect

    out = o.output(verbose, quiet, json_path)
    ld = read_loadable(path)
    networks = dla_networks(ld)
    render_inspect(ld, networks, out)
    if json_path:
        write_json(inspect_json(ld, networks), json_path, out)


@loadable_app.command("run")
def run(
    path: Path = _LOADABLE,
    input_path: Path | None = o.INPUT,
    output: Path = o.output_option(required=True),
    target: str = o.target_option("nv_full"),
    device: str = o.DEVICE,
    json_path: Path | None = o.JSON,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Run every task of the submit list (DLA tasks through the firmware model, EMU tasks on the
    CPU emulator) and write the bound output as the runtime's image (.dimg). Without --input the
    input buffer is zero, as in the regression tests. -v lists each task's operations."""
    from dlakit.loadable.dimg import from_buffer
    from dlakit.loadable.execute import run_loadable
    from dlakit.loadable.inputs import input_buffer
    from dlakit.loadable.reader import MemoryFlags, read_loadable
    from dlakit.report.loadable import render_run, run_json
    from dlakit.sim.nvdla import resolve_device

    out = o.output(verbose, quiet, json_path)
    ld = read_loadable(path)
    for other in (path, input_path):
        if other is not None and output.resolve() == other.resolve():
            raise DlakitError(f"--output {output} would overwrite an input")
    data = None
    if input_path is not None:
        inputs = ld.bound(MemoryFlags.INPUT)
        if not inputs:
            raise DlakitError(f"{path}: the loadable binds no input tensor to take --input")
        data = input_buffer(input_path, ld.tensor_of(inputs[0]))
    result = run_loadable(ld, target, data, str(resolve_device(device)))
    image = from_buffer(result.output_tensor, result.output)
    raw = image.to_bytes()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(raw)
    render_run(result, image, str(output), out)
    if json_path:
        write_json(
            run_json(result, image, str(output), hashlib.md5(raw).hexdigest()), json_path, out
        )


@loadable_app.command("test")
def test(
    root: Path = typer.Argument(..., help="a regression folder (flatbufs/kmd/ and golden/)"),
    out_dir: Path | None = o.OUT_DIR,
    device: str = o.DEVICE,
    json_path: Path | None = o.JSON,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Run every regression loadable as its test plan does (its hardware configuration, no
    input) and compare each output's md5 with its golden; exit 0 iff none fails. -v adds times.
    JSON: schema dlakit.loadable.test v1."""
    from dlakit.loadable.regression import find_cases, run_case
    from dlakit.report.loadable import render_case, summary_line, test_json
    from dlakit.sim.nvdla import resolve_device

    out = o.output(verbose, quiet, json_path)
    dev = str(resolve_device(device))
    if out_dir is not None and (
        out_dir.resolve() == root.resolve() or root.resolve() in out_dir.resolve().parents
    ):
        raise DlakitError(f"--out {out_dir} is inside the regression folder {root}")
    cases = find_cases(root)
    with tempfile.TemporaryDirectory(prefix="dlakit-loadable-") as scratch:
        folder = out_dir if out_dir is not None else Path(scratch)
        results = []
        for case in cases:
            result = run_case(case, folder, dev)
            render_case(result, out)
            results.append(result)
    out.line(summary_line(results))
    if json_path:
        where = str(out_dir) if out_dir is not None else None
        write_json(test_json(results, str(root), where), json_path, out)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(loadable_app, name="loadable")
