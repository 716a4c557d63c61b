"""Render a CheckResult: a per-node table, a segment list and a summary a newcomer can read."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dlakit.partition import CheckResult
from dlakit.support.verdict import NodeVerdict


def _fmt_macs(macs: int) -> str:
    if macs == 0:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.2f}{unit}"
    return str(macs)


def _reasons_cell(v: NodeVerdict) -> Text:
    text = Text()
    for i, r in enumerate(v.reasons):
        if i:
            text.append("\n")
        text.append(f"{r.rule}", style="bold yellow")
        text.append(f": {r.message}")
        detail = []
        if r.attribute is not None:
            detail.append(f"{r.attribute} = {r.value}")
        if r.limit is not None:
            detail.append(f"limit {r.limit}")
        if detail:
            text.append("\n  " + ", ".join(detail))
        if r.fix:
            text.append("\n  fix: ", style="green")
            text.append(f"dlakit fix ({r.fix})", style="green")
        text.append(f"\n  source: {r.source}", style="dim")
    if not v.reasons and v.notes:
        text.append("; ".join(v.notes), style="dim")
    return text


def render(result: CheckResult, console: Console, fallback_only: bool = False) -> None:
    device = result.fallback_device.upper()
    rules = result.rule_set + (f" (TensorRT {result.trt_version})" if result.trt_version else "")
    title = f"{result.model.path.name} on {result.target.name} — rules: {rules}"
    table = Table(title=title, expand=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("node", overflow="fold", max_width=34)
    table.add_column("op")
    table.add_column("runs on")
    table.add_column("seg", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("why not on the DLA / notes", overflow="fold")
    for index, v in enumerate(result.nodes):
        if fallback_only and v.engine == "dla":
            continue
        if v.engine == "dla":
            where = Text(f"DLA {v.hw_engine or ''} {v.precision or ''}".strip(), style="green")
        else:
            where = Text(device, style="bold red")
        table.add_row(
            str(index),
            v.name,
            v.op,
            where,
            str(v.segment),
            _fmt_macs(v.macs),
            _reasons_cell(v),
            end_section=bool(v.reasons),  # a rule under each multi-line reason keeps them apart
        )
    if fallback_only and all(v.engine == "dla" for v in result.nodes):
        console.print(f"[green]{title}: every node runs on the DLA[/]")
    else:
        console.print(table)
    console.print(_segments_table(result))
    console.print(_summary_panel(result, device))


def _segments_table(result: CheckResult) -> Table:
    device = result.fallback_device.upper()
    table = Table(title="Segments (execution order)")
    table.add_column("seg", justify="right")
    table.add_column("runs on")
    table.add_column("nodes", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("first → last node", overflow="fold")
    names = [n.name for n in result.model.nodes]
    for s in result.segments:
        style = "green" if s.engine == "dla" else "red"
        table.add_row(
            str(s.id),
            Text("DLA" if s.engine == "dla" else device, style=style),
            str(len(s.nodes)),
            _fmt_macs(s.macs),
            f"{names[s.nodes[0]]} → {names[s.nodes[-1]]}",
        )
    return table


def _summary_panel(result: CheckResult, device: str) -> Panel:
    s = result.summary
    lines = [
        f"nodes on the DLA: {s['nodes_on_dla']}/{s['nodes']} ({s['nodes_on_dla_pct']:.1f}%)",
        f"MACs on the DLA:  {s['macs_on_dla_pct']:.1f}% of {_fmt_macs(s['macs'])}",
        f"DLA segments (loadables): {s['dla_segments']} "
        f"(limit {s['loadables_per_core_limit']} per core: "
        f"{'ok' if s['within_loadable_limit'] else 'EXCEEDED'}); "
        f"{device} segments: {s['fallback_segments']}",
        f"DLA↔{device} transitions: {s['transitions']}",
        f"tensors needing a reformat at a DLA boundary: {len(s['reformat_tensors'])}"
        + (" (avoidable with reformat-free I/O)" if s["reformat_tensors"] else ""),
    ]
    if s["fp16_layers"]:
        lines.append(f"layers the DLA runs in FP16 instead of INT8: {s['fp16_layers']}")
    if s["fallback_ops"]:
        ops = ", ".join(f"{op}×{n}" for op, n in s["fallback_ops"].items())
        lines.append(f"on the {device}: {ops}")
    if s["fixable_nodes"]:
        lines.append(
            f"[green]{s['fixable_nodes']} node(s) have a rewrite: run `dlakit fix MODEL -o OUT "
            f"--target {result.target.name}`[/]"
        )
    return Panel(Group(*[Text.from_markup(line) for line in lines]), title="Summary", expand=False)


def write_json(result: CheckResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
