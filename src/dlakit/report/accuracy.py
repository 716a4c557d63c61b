"""Render an accuracy report: FP32 vs DLA-INT8, per-layer SQNR, FP16 suggestions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from dlakit.report.console import Output
from dlakit.report.tables import Column, print_table

if TYPE_CHECKING:
    from dlakit.accuracy.compare import AccuracyReport, Suggestion
    from dlakit.accuracy.mixed import MixResult


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render(
    report: AccuracyReport,
    title: str,
    output: Output,
    peer: dict[str, Any] | None = None,
    suggestions: list[Suggestion] | None = None,
    mix: MixResult | None = None,
) -> None:
    summary = Table(title=title)
    summary.add_column("")
    summary.add_column("FP32")
    summary.add_column("DLA-INT8")
    summary.add_row("top-1", pct(report.fp32_top1), pct(report.int8_top1))
    if report.fp32_top5 is not None:
        summary.add_row("top-5", pct(report.fp32_top5), pct(report.int8_top5))
    summary.add_row("top-1 agreement with FP32", "", pct(report.agreement))
    if report.confident_count:
        summary.add_row(
            f"  where FP32 p >= {report.confident_prob:g} ({report.confident_count})",
            "",
            pct(report.agreement_confident),
        )
    for out in report.outputs:
        summary.add_row(
            f"{out.name} ({report.output_precision}): cosine / SQNR",
            "",
            f"{out.cosine:.4f} / {out.sqnr_db:.1f} dB",
        )
    summary.add_row(
        "layers (engine-precision)",
        "",
        ", ".join(f"{k} {v}" for k, v in sorted(report.engines.items())),
    )
    if peer is not None:
        summary.add_row(
            "ORT INT8 top-1 / agreement", "", f"{pct(peer['top1'])} / {pct(peer['agreement'])}"
        )
    output.print(summary)
    if report.layers:
        print_table(
            output,
            [
                Column("tensor", fold=True, min_width=20),
                Column("layer", fold=True, min_width=16),
                Column("kind"),
                Column("SQNR dB", justify="right"),
            ],
            [(s.tensor, s.layer, s.kind, f"{s.sqnr_db:.1f}") for s in report.layers],
            title="per-layer SQNR (DLA INT8 tensors vs FP32)",
        )
    for s in suggestions or []:
        output.line(
            f"keep in FP16: {','.join(s.layers)} -> agreement {pct(s.agreement)}, "
            f"SQNR {s.sqnr_db:.1f} dB  (use --fp16-layers {','.join(s.layers)})"
        )
    if mix is not None:
        render_mix(mix, output)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.3f}"


def render_mix(mix: MixResult, output: Output) -> None:
    """The accuracy-vs-latency curve of an --auto-fp16 search, one row per step."""
    rows = []
    for i, s in enumerate(mix.steps):
        rows.append((
            str(i), s.tensor or "(all INT8)", f"{100 * s.fp16_mac_share:.1f}",
            f"{s.sqnr_db:.1f}", f"{s.sqnr_gain_db:+.1f}" if i else "", pct(s.agreement),
            pct(s.agreement_confident), _ms(s.latency_s),
            _ms(s.latency_cost_s) if i else "",
        ))  # fmt: skip
    print_table(
        output,
        [
            Column("#", justify="right"),
            Column("tensor to FP16", fold=True, min_width=16),
            Column("MAC %", justify="right"),
            Column("SQNR", justify="right"),
            Column("gain", justify="right", drop=2),
            Column("agree", justify="right"),
            Column("conf.", justify="right"),
            Column("DLA ms", justify="right"),
            Column("+ms", justify="right", drop=1),
        ],
        rows,
        title=f"--auto-fp16 {mix.budget:g}: SQNR (dB), agreement (all, confident) and modeled "
        "DLA latency",
    )
