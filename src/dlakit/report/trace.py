"""Render NVDLA trace results: one line per check_crc, a pass/fail count, JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text

from dlakit import __version__
from dlakit.report.console import Output

if TYPE_CHECKING:
    from dlakit.sim.trace import TraceResult

TRACE_SCHEMA = "dlakit.trace"
TRACE_SCHEMA_VERSION = 1


def _failed(name: str, why: str) -> Text:
    return Text(f"{name}: ") + Text("FAILED", style="red") + Text(f" {why}")


def render_result(result: TraceResult, output: Output) -> None:
    """Every check of one trace; with -v, its time."""
    for check in result.checks:
        line = Text(
            f"{result.name}: check_{check.kind} {check.sync_id} "
            f"0x{check.base:08x}+0x{check.size:x} expected 0x{check.expected:08x} "
            f"computed 0x{check.computed:08x} "
        )
        line.append("ok" if check.ok else "MISMATCH", style="green" if check.ok else "red")
        output.console.print(line, soft_wrap=True)
    if result.error:
        output.console.print(_failed(result.name, result.error), soft_wrap=True)
    elif not result.checks:
        output.console.print(_failed(result.name, "the trace has no check_crc"), soft_wrap=True)
    if output.verbose:
        output.line(f"{result.name}: {result.seconds:.3f} s")


def summary_line(results: list[TraceResult], device: str) -> str:
    passed = sum(r.passed for r in results)
    total = sum(r.seconds for r in results)
    return f"{passed} passed, {len(results) - passed} failed ({total:.1f} s on {device})"


def to_json(results: list[TraceResult], device: str, target: str) -> dict[str, Any]:
    return {
        "schema": TRACE_SCHEMA,
        "schema_version": TRACE_SCHEMA_VERSION,
        "dlakit_version": __version__,
        "target": target,
        "device": device,
        "passed": sum(r.passed for r in results),
        "failed": sum(not r.passed for r in results),
        "traces": [
            {
                "name": r.name,
                "path": str(r.path),
                "passed": r.passed,
                "error": r.error,
                "seconds": r.seconds,
                "checks": [
                    {
                        "kind": c.kind,
                        "sync_id": c.sync_id,
                        "base": c.base,
                        "size": c.size,
                        "expected": c.expected,
                        "computed": c.computed,
                        "ok": c.ok,
                    }
                    for c in r.checks
                ],
            }
            for r in results
        ],
    }
