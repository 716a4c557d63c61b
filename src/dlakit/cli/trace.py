"""``dlakit trace``: run official NVDLA trace tests on the bit-exact simulator."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report.console import write_json

trace_app = typer.Typer(help="Run NVDLA register-level trace tests (.cfg + .dat) on the simulator.")


@trace_app.command("run")
def run(
    path: Path = typer.Argument(..., help="a trace .cfg, a test folder, or a folder of tests"),
    device: str = o.DEVICE,
    target: str = o.target_option("nv_small"),
    definition: bool = typer.Option(
        False,
        "--definition",
        help="Run every operation on the unit models (the slow definition) instead of the "
        "decoder and fast path that dlakit run uses.",
    ),
    json_path: Path | None = o.JSON,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Execute every command of the trace(s); exit 0 iff every check matches.

    The target is an NVDLA hardware configuration (nv_small, nv_full). Operations run through
    the replay layer (decoded at launch, the fast path), or on the unit models with
    --definition. JSON: schema dlakit.trace v1, every check of every trace
    (docs/simulator.md). -v adds each trace's time.
    """
    from dlakit.hw import load_register_map
    from dlakit.report.trace import render_result, summary_line, to_json
    from dlakit.sim import replay
    from dlakit.sim.nvdla import resolve_device
    from dlakit.sim.trace import find_traces, run_trace
    from dlakit.sim.trace_check import check_trace
    from dlakit.targets import load_target

    out = o.output(verbose, quiet, json_path)
    o.guard_outputs({"--json": json_path}, path)
    nvdla = load_target(target).nvdla
    if nvdla is None:
        raise DlakitError(f"--target {target}: traces run on an open NVDLA (nv_small or nv_full)")
    dev = str(resolve_device(device))
    cfgs = find_traces(path)
    if not cfgs:
        raise DlakitError(f"no .cfg trace under {path}")
    regmap = load_register_map(nvdla.hw_tree)
    for cfg in cfgs:  # a malformed trace is bad input: refused before any trace runs
        check_trace(cfg, nvdla.mem_address_width, regmap)
    results = []
    for cfg in cfgs:
        result = run_trace(
            cfg, device=dev, target=target, engine=None if definition else replay.immediate
        )
        render_result(result, out)
        results.append(result)
    if path.is_dir() or out.verbose:
        out.line(summary_line(results, dev))
    if json_path:
        write_json(to_json(results, dev, target), json_path, out)
    if not all(r.passed for r in results):
        raise typer.Exit(1)


@trace_app.command("list")
def list_traces(
    path: Path = typer.Argument(..., help="a folder of trace tests"),
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """List the traces under a folder."""
    from dlakit.sim.trace import find_traces

    out = o.output(verbose, quiet)
    for cfg in find_traces(path):
        out.line(str(cfg))


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace")
