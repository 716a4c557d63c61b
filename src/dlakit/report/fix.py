"""Render a FixResult: the rewrites applied, the ones refused and why, the verification."""

from __future__ import annotations

from typing import Any

from dlakit.report.console import Output
from dlakit.report.tables import Column, print_table
from dlakit.rewrite import TOLERANCE, FixResult


def render(result: FixResult, output: Output) -> None:
    print_table(
        output,
        [
            Column("pass"),
            Column("nodes before", fold=True, min_width=14),
            Column("nodes after", fold=True, min_width=14),
            Column("what changed", fold=True, min_width=20),
        ],
        [
            (r.pass_name, "\n".join(r.before), "\n".join(r.after), r.description)
            for r in result.rewrites
        ],
        title=f"rewrites applied ({len(result.rewrites)})",
    )
    if result.refusals:
        print_table(
            output,
            [
                Column("pass"),
                Column("node", fold=True, min_width=14),
                Column("op"),
                Column("reason", fold=True, min_width=24),
            ],
            [(f.pass_name, f.node, f.op_type, f.reason) for f in result.refusals],
            title=f"not rewritten ({len(result.refusals)})",
        )
    if output.verbose and result.limits:
        print_table(
            output,
            [Column("limit"), Column("value", fold=True, min_width=16)],
            [(name, str(value)) for name, value in result.limits.items()],
            title="limits the passes applied (rewrite/limits.toml and the target)",
        )
    v = result.verification
    if v.runs == 0:
        output.line(
            f"no rewrite applied: the model is written as loaded; nodes {result.nodes_after}"
        )
        return
    output.line(
        f"verified with onnxruntime: max relative error {v.max_rel_error:.3g} "
        f"on '{v.worst_output}' "
        f"(limit {TOLERANCE:g}; {v.runs} run(s) on {v.source}); "
        f"nodes {result.nodes_before} -> {result.nodes_after}"
    )


def coverage_line(target: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """DLA node counts before and after the rewrites, from two check summaries."""
    return (
        f"on the DLA ({target}): {before['nodes_on_dla']}/{before['nodes']} nodes, "
        f"{before['dla_segments']} DLA segment(s) -> {after['nodes_on_dla']}/{after['nodes']} "
        f"nodes, {after['dla_segments']} DLA segment(s); still off the DLA: "
        f"{after['fallback_ops'] or 'none'}"
    )
