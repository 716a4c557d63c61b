"""``dlakit trace``: run official NVDLA trace tests on the bit-exact simulator."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:  # the simulator needs the 'sim' extra: imported when a trace runs
    from dlakit.sim.trace import TraceResult

trace_app = typer.Typer(help="Run NVDLA register-level trace tests (.cfg + .dat) on the simulator.")
console = Console(highlight=False, soft_wrap=True)


def _report(result: TraceResult, verbose: bool) -> None:
    for check in result.checks:
        mark = "[green]ok[/]" if check.ok else "[red]MISMATCH[/]"
        console.print(
            f"{result.name}: check_crc {check.sync_id} 0x{check.base:08x}+0x{check.size:x} "
            f"expected 0x{check.expected:08x} computed 0x{check.computed:08x} {mark}"
        )
    if result.error:
        console.print(f"{result.name}: [red]FAILED[/] {result.error}")
    elif not result.checks:
        console.print(f"{result.name}: [red]FAILED[/] the trace has no check_crc")
    if verbose:
        console.print(f"{result.name}: {result.seconds:.3f} s")


@trace_app.command("run")
def run(
    path: Path = typer.Argument(..., help="a trace .cfg, a test folder, or a folder of tests"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="print the time of each trace"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    target: str = typer.Option("nv_small", "--target", help="NVDLA hardware configuration"),
) -> None:
    """Execute every command of the trace(s); exit 0 iff every check_crc matches."""
    from dlakit.sim.nvdla import resolve_device
    from dlakit.sim.trace import find_traces, run_trace

    dev = str(resolve_device(device))
    cfgs = find_traces(path)
    if not cfgs:
        raise typer.BadParameter(f"no .cfg trace under {path}")
    results = []
    for cfg in cfgs:
        result = run_trace(cfg, device=dev, target=target)
        _report(result, verbose)
        results.append(result)
    passed = sum(r.passed for r in results)
    if path.is_dir() or verbose:
        total = sum(r.seconds for r in results)
        console.print(f"{passed} passed, {len(results) - passed} failed ({total:.1f} s on {dev})")
    if passed != len(results):
        raise typer.Exit(1)


@trace_app.command("list")
def list_traces(path: Path = typer.Argument(..., help="a folder of trace tests")) -> None:
    """List the traces under a folder."""
    from dlakit.sim.trace import find_traces

    for cfg in find_traces(path):
        console.print(str(cfg))


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace")
