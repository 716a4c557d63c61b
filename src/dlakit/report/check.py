"""Render a CheckResult: a per-node table, a segment list, dlakit's recommendations and a
summary a newcomer can read.

The node table and the segments are the prediction (what TensorRT, or dlakit's compiler on open
NVDLA, does); a reason that is not the target's rule carries its kind (``[policy]``,
``[lowering]``, ``[user]``). dlakit's placement advice is a separate table, with what each move
saves from the performance model. Where the terminal leaves the reasons column too narrow to
read (below ~120 columns for most models), the reasons move under the table, one block per node,
keyed by its ``#``; ``--wide`` keeps them in the table whatever the width.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.padding import Padding
from rich.panel import Panel
from rich.text import Text

from dlakit.partition import CheckResult, Recommendation
from dlakit.report.console import Output
from dlakit.report.tables import (
    Cell,
    Column,
    fit_table,
    note_dropped,
    print_fitted,
    print_table,
)
from dlakit.support.verdict import NodeVerdict

# Narrower than this, a reason reads one word a line: list the reasons under the table instead.
REASONS_MIN_WIDTH = 40


def fmt_macs(macs: int) -> str:
    if macs == 0:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.2f}{unit}"
    return str(macs)


def fmt_saving(rec: Recommendation) -> str:
    return "not priced" if rec.saving_ms is None else f"~{rec.saving_ms:.3f} ms"


def _reasons_text(
    v: NodeVerdict, verbose: bool, advice: Recommendation | None = None, device: str = "GPU"
) -> Text:
    text = Text()
    for i, r in enumerate(v.reasons):
        if i:
            text.append("\n")
        text.append(f"{r.rule}", style="bold yellow")
        if r.kind != "rule":
            text.append(f" [{r.kind}]", style="magenta")
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
    if advice is not None and not advice.applied:
        if v.reasons:
            text.append("\n")
        text.append(f"recommended: {device}", style="magenta")
        text.append(f" ({advice.reason.rule} [policy], saves {fmt_saving(advice)}; see below)")
    if v.notes and (verbose or not v.reasons):
        if text.plain:
            text.append("\n")
        text.append("; ".join(v.notes), style="dim")
    return text


def _where(v: NodeVerdict, device: str) -> Text:
    if v.engine == "dla":
        return Text(f"DLA {v.hw_engine or ''} {v.precision or ''}".strip(), style="green")
    return Text(device, style="bold red")


def render(
    result: CheckResult, output: Output, fallback_only: bool = False, wide: bool = False
) -> None:
    device = result.fallback_device.upper()
    rules = result.rule_set + (f" (TensorRT {result.trt_version})" if result.trt_version else "")
    title = f"{result.model.path.name} on {result.target.name} — rules: {rules}"
    listed = [
        (index, v)
        for index, v in enumerate(result.nodes)
        if not (fallback_only and v.engine == "dla")
    ]
    advice = {i: rec for rec in result.recommendations for i in rec.nodes}
    if not listed:
        output.print(f"[green]{title}: every node runs on the DLA[/]")
    else:
        _node_table(listed, advice, title, device, output, wide)
    _segments(result, output, wide)
    if result.recommendations:
        recommendations(result, output, wide)
    output.print(_summary_panel(result, device, output.verbose))


def _node_table(
    listed: list[tuple[int, NodeVerdict]],
    advice: dict[int, Recommendation],
    title: str,
    device: str,
    output: Output,
    wide: bool,
) -> None:
    head = [
        Column("#", justify="right", style="dim"),
        Column("node", fold=True, min_width=16),
        Column("op"),
        Column("runs on"),
        Column("seg", justify="right"),
        Column("MACs", justify="right"),
    ]
    reasons = {
        index: _reasons_text(v, output.verbose, advice.get(index), device) for index, v in listed
    }
    rows: list[tuple[Cell, ...]] = [
        (str(index), v.name, v.op, _where(v, device), str(v.segment), fmt_macs(v.macs))
        for index, v in listed
    ]
    why = Column("why not on the DLA / notes", fold=True, min_width=REASONS_MIN_WIDTH)
    inline = fit_table(
        [*head, why],
        [(*row, reasons[index]) for row, (index, _) in zip(rows, listed, strict=True)],
        output.console,
        wide,
        [bool(v.reasons) or index in advice for index, v in listed],  # a rule under each
        title=title,
        expand=False,
    )
    if inline.fits:
        print_fitted(output, inline, wide)
        return
    print_table(output, head, rows, title=title, expand=False)
    blocks = [(index, v) for index, v in listed if reasons[index].plain]
    if blocks:
        output.print(Text("Why not on the DLA / notes", style="bold"))
    for index, v in blocks:
        header = Text(f"{index} {v.name} ({v.op}) → ")
        header.append_text(_where(v, device))
        output.print(Group(header, Padding(reasons[index], (0, 0, 0, 2))))


def _segments(result: CheckResult, output: Output, wide: bool) -> None:
    device = result.fallback_device.upper()
    names = [n.name for n in result.model.nodes]
    rows = [
        (
            str(s.id),
            Text(
                "DLA" if s.engine == "dla" else device,
                style="green" if s.engine == "dla" else "red",
            ),
            str(len(s.nodes)),
            fmt_macs(s.macs),
            f"{names[s.nodes[0]]} → {names[s.nodes[-1]]}",
        )
        for s in result.segments
    ]
    fitted = fit_table(
        [
            Column("seg", justify="right"),
            Column("runs on"),
            Column("nodes", justify="right"),
            Column("MACs", justify="right"),
            Column("first → last node", fold=True, min_width=20),
        ],
        rows,
        output.console,
        wide,
        title="Segments (execution order)",
    )
    print_fitted(output, fitted, wide)


def recommendations(result: CheckResult, output: Output, wide: bool) -> None:
    """dlakit's placement advice, apart from the prediction: one row per recommended move."""
    device = result.fallback_device.upper()
    names = [n.name for n in result.model.nodes]
    rows = [
        (
            str(k),
            rec.reason.rule,
            str(rec.segment),
            f"{names[rec.nodes[0]]} → {names[rec.nodes[-1]]} ({len(rec.nodes)})",
            Text(device, style="magenta"),
            fmt_saving(rec),
            rec.reason.message,
        )
        for k, rec in enumerate(result.recommendations)
    ]
    state = (
        "applied (--apply-policy)"
        if result.policy_applied
        else "not applied: `--apply-policy` or `dlakit fix` applies them"
    )
    fitted = fit_table(
        [
            Column("#", justify="right", style="dim"),
            Column("policy"),
            Column("seg", justify="right"),
            Column("nodes (first → last)", fold=True, min_width=20),
            Column("to"),
            Column("saves", justify="right"),
            Column("why", fold=True, min_width=REASONS_MIN_WIDTH, drop=1),
        ],
        rows,
        output.console,
        wide,
        title=f"dlakit's recommendations (placement policy, not TensorRT's; {state})",
    )
    print_fitted(output, fitted, wide)
    note_dropped(output, fitted)


def _summary_panel(result: CheckResult, device: str, verbose: bool) -> Panel:
    s = result.summary
    lines = [_prediction_line(result)]
    lines += [
        f"nodes on the DLA: {s['nodes_on_dla']}/{s['nodes']} ({s['nodes_on_dla_pct']:.1f}%)",
        f"MACs on the DLA:  {s['macs_on_dla_pct']:.1f}% of {fmt_macs(s['macs'])}",
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
    if result.recommendations:
        saving = s["recommended_saving_ms"]
        lines.append(
            f"dlakit recommends {s['recommendations']} move(s), {s['recommended_nodes']} node(s) "
            f"to the {device}"
            + (
                f", {'saving' if saving > 0 else 'costing'} ~{abs(saving):.3f} ms per inference "
                "(performance model)"
                if saving is not None
                else ""
            )
            + ("; applied" if result.policy_applied else "; --apply-policy applies them")
        )
    texts = [Text(line) for line in lines]
    if verbose and s["reformat_tensors"]:
        texts.insert(6, Text("  " + ", ".join(map(str, s["reformat_tensors"])), style="dim"))
    if s["fixable_nodes"]:
        texts.append(
            Text(
                f"{s['fixable_nodes']} node(s) have a rewrite: run `dlakit fix MODEL -o OUT "
                f"--target {result.target.name}`",
                style="green",
            )
        )
    return Panel(Group(*texts), title="Summary", expand=False)


def _prediction_line(result: CheckResult) -> str:
    """What the placement above is: the prediction, or the prediction with the policy applied."""
    if result.trt_version:
        what = f"TensorRT {result.trt_version}'s layer, subgraph and partitioning rules"
    else:
        what = f"dlakit's compiler for {result.target.name} (hardware rules and lowering)"
    if result.policy_applied:
        return f"placement: {what}, with dlakit's placement policy applied"
    return f"placement: predicted from {what}"


def policy_line(result: CheckResult) -> str:
    """One line for a result with the policy applied: what it moved, what it saves, how to place
    the nodes the same way elsewhere."""
    s = result.summary
    device = result.fallback_device.upper()
    saving = s["recommended_saving_ms"]
    names = fallback_layers(result)
    return (
        f"with dlakit's placement policy: {len(result.recommendations)} move(s) put "
        f"{len(names)} node(s) on the {device} -> {s['nodes_on_dla']}/{s['nodes']} nodes on the "
        f"DLA in {s['dla_segments']} DLA segment(s)"
        + (f", saving ~{saving:.3f} ms per inference" if saving is not None else "")
        + f"; place them with --fallback-layers {','.join(names)}"
    )


def fallback_layers(result: CheckResult) -> list[str]:
    """The nodes dlakit's recommendations put on the fallback device, in graph order."""
    moved = sorted({i for rec in result.recommendations for i in rec.nodes})
    return [result.model.nodes[i].name for i in moved]


def placement(before: CheckResult, predicted: dict[str, Any], after: CheckResult) -> dict[str, Any]:
    """``fix``'s placement block: TensorRT's predicted coverage before and after the rewrites,
    and the rewritten model with dlakit's placement policy applied."""

    def coverage(s: dict[str, Any]) -> dict[str, Any]:
        keys = ("nodes", "nodes_on_dla", "dla_segments", "transitions", "fallback_ops")
        return {k: s[k] for k in keys}

    return {
        "target": after.target.name,
        "trt_version": after.trt_version,
        "before": coverage(before.summary),
        "after": coverage(predicted),
        "after_policy": coverage(after.summary),
        "fallback_layers": fallback_layers(after),
        "saving_ms": after.summary["recommended_saving_ms"],
        "recommendations": [
            r.as_dict([n.name for n in after.model.nodes]) for r in after.recommendations
        ],
    }
