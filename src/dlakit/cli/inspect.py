"""``dlakit inspect``: list a ``.dla`` artifact's segments and hardware operations."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report import artifact as report
from dlakit.report.console import write_json


def inspect_command(
    artifact: Path = typer.Argument(..., help="A .dla file from dlakit compile."),
    ops: bool = typer.Option(True, "--ops/--no-ops", help="List every hardware operation."),
    registers: str | None = typer.Option(
        None, "--registers", help="Print the register writes of the operation with this name."
    ),
    json_path: Path | None = o.JSON,
    wide: bool = o.WIDE,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Show what a compiled artifact holds: operations, shapes, tiling, memory.

    JSON: the manifest, with each operation's register writes counted (docs/artifact.md).
    """
    from dlakit.nvdla.artifact import read_manifest

    out = o.output(verbose, quiet, json_path)
    o.guard_outputs({"--json": json_path}, artifact)
    doc = read_manifest(artifact)
    if registers is not None:
        writes = report.find_registers(doc, registers)
        if writes is None:
            raise DlakitError(f"--registers: no operation named {registers!r} in {artifact}")
        for line in writes:
            out.line(line)
        return
    report.render_manifest(artifact, doc, out)
    if ops:
        report.render_ops(doc, out, wide)
    if json_path:
        write_json(report.manifest_json(doc), json_path, out)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
