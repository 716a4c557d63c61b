"""``dlakit inspect``: list a ``.dla`` artifact's segments and hardware operations."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _shape(v) -> str:
    return "x".join(str(d) for d in v) if v else ""


def _tile(op: dict) -> str:
    t = op.get("tile")
    if not t or t.get("of", 1) == 1:
        return ""
    return (
        f"k{t['kernels_from']} r{t['rows_from']} c{t['channels_from']} "
        f"(of {t['of']}), banks {t['data_banks']}+{t['weight_banks']}"
    )


def inspect_command(
    artifact: Path = typer.Argument(..., help="A .dla file from dlakit compile."),
    ops: bool = typer.Option(True, "--ops/--no-ops", help="List every hardware operation."),
    registers: str | None = typer.Option(
        None, "--registers", help="Print the register writes of the operation with this name."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest (without registers)."),
) -> None:
    """Show what a compiled artifact holds: operations, shapes, tiling, memory."""
    from dlakit.errors import DlakitError
    from dlakit.nvdla.artifact import read_manifest

    doc = read_manifest(artifact)
    if json_out:
        for seg in doc["segments"]:
            for op in seg.get("ops", []):
                op["registers"] = len(op["registers"])
        console.print_json(json.dumps(doc))
        return
    if registers is not None:
        for seg in doc["segments"]:
            for op in seg.get("ops", []):
                if op["name"] == registers:
                    console.print("\n".join(op["registers"]), highlight=False)
                    return
        raise DlakitError(f"--registers: no operation named {registers!r} in {artifact}")
    mem, st = doc["memory"], doc["stats"]
    head = Table(title=f"{artifact} ({doc['format']} v{doc['version']})", show_header=False)
    head.add_row("model / target", f"{doc['model']} / {doc['target']}")
    head.add_row("inputs", ", ".join(doc["inputs"]))
    head.add_row("outputs", ", ".join(doc["outputs"]))
    head.add_row("segments", f"{st['dla_segments']} DLA, {st['fallback_segments']} host")
    head.add_row("hardware operations", str(st["hardware_ops"]))
    head.add_row(
        "memory",
        f"activations {mem['activations']['size']:,} B at 0x{mem['activations']['base']:x}, "
        f"constants {mem['constants']['size']:,} B at 0x{mem['constants']['base']:x}, "
        f"peak {mem['peak_bytes']:,} B",
    )
    console.print(head)
    if not ops:
        return
    # Plain aligned lines: long layer names stay whole, and the listing greps and diffs well.
    cols = (
        "#",
        "segment",
        "kind",
        "in CxHxW",
        "out CxHxW",
        "kernel",
        "writes",
        "src",
        "dst",
        "operation",
        "tiling",
    )
    rows = [cols]
    n = 0
    for seg in doc["segments"]:
        if seg["kind"] == "fallback":
            rows.append(("", seg["name"], "fallback", "", "", "", "", "", "",
                         ", ".join(seg["layers"]),
                         ""))  # fmt: skip
            continue
        for op in seg["ops"]:
            rows.append((str(n), seg["name"], op["kind"], _shape(op.get("in")),
                         _shape(op.get("out")), _shape(op.get("kernel")),
                         str(len(op["registers"])), op.get("memory", {}).get("src", ""),
                         op.get("memory", {}).get("dst", ""), op["name"], _tile(op)))  # fmt: skip
            n += 1
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols) - 2)]
    for r in rows:
        head = "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False))
        console.print(f"{head}  {r[-2]}  {r[-1]}".rstrip(), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
