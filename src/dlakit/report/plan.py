"""Plan output: the candidates of one batch, the curve of a batch list (80-column tables)."""

from __future__ import annotations

import textwrap

from dlakit.extras import require
from dlakit.plan import PlanResult
from dlakit.plan.plans import Candidate
from dlakit.report.console import Output
from dlakit.report.tables import COMPACT, Column, print_table

DEVICES = ("gpu", "dla0", "dla1", "cpu")


def _busy(c: Candidate, device: str) -> str:
    """The device's busy share of the steady-state period, in percent ('-': unused)."""
    stats = c.devices.get(device)
    return f"{100 * stats['utilization']:.0f}" if stats else "-"


def _say(out: Output, text: str) -> None:
    """A sentence wrapped at the console's width, continuation lines indented."""
    width = max(40, out.console.width)
    for line in textwrap.wrap(text, width=width, subsequent_indent="  ", break_on_hyphens=False):
        out.line(line)


def header(res: PlanResult) -> str:
    models = ", ".join(res.models)
    return (
        f"{models} on {res.target} {res.power_mode}, {res.precision}, batch {res.batch}, "
        f"objective {res.objective} (modeled: dla {res.versions['dla']}, "
        f"gpu {res.versions['gpu']})"
    )


def render(res: PlanResult, out: Output, wide: bool = False) -> None:
    _say(out, header(res))
    columns = [
        Column("strategy"),
        Column("img/s", "right"),
        Column("latency ms", "right"),
        Column("vs gpu", "right"),
        Column("W", "right"),
        Column("img/J", "right"),
    ]
    used = [d for d in DEVICES if any(d in c.devices for c in res.candidates)]
    columns += [Column(f"{d} %", "right") for d in used]
    rows = []
    for c in res.candidates:
        mark = "*" if c is res.chosen else ""
        rows.append(
            [
                f"{c.strategy}{mark}",
                f"{c.images_per_second:.1f}",
                f"{c.latency_ms:.2f}",
                f"{c.speedup_vs_gpu_only:.2f}x",
                f"{c.watts:.2f}",
                f"{c.images_per_joule:.1f}",
                *(_busy(c, d) for d in used),
            ]
        )
    print_table(out, columns, rows, wide, **COMPACT)
    _say(out, "(%: each device's busy share of the steady-state period; *: chosen)")
    chosen = res.chosen
    _say(
        out,
        f"chosen ({res.objective}): {chosen.strategy}: {chosen.plan.description} "
        f"({chosen.speedup_vs_gpu_only:.2f}x GPU only, modeled)",
    )
    for name, why in res.skipped.items():
        _say(out, f"{name} does not apply: {why}")
    if out.verbose:
        for c in res.candidates:
            _say(out, f"{c.strategy}: {c.plan.description}")
            for d in DEVICES:
                if d in c.devices:
                    s = c.devices[d]
                    out.line(
                        f"  {d}: batch {s['batch']}, busy {s['busy_ms']:.2f} ms per round, "
                        f"{100 * s['utilization']:.0f}% busy, {s['dram_gbps']:.2f} GB/s"
                    )


def render_curve(results: list[PlanResult], out: Output, wide: bool = False) -> None:
    first = results[0]
    _say(out, header(first).replace(f", batch {first.batch}", ""))
    strategies = [c.strategy for c in results[-1].candidates if c.strategy != "gpu"]
    columns = [Column("batch", "right"), Column("gpu img/s", "right")]
    columns += [Column(_short(s), "right") for s in strategies]
    columns.append(Column("chosen"))
    rows = []
    for res in results:
        by = {c.strategy: c for c in res.candidates}
        row = [str(res.batch), f"{res.gpu_only.images_per_second:.1f}"]
        row += [f"{by[s].speedup_vs_gpu_only:.2f}" if s in by else "-" for s in strategies]
        row.append(res.chosen.strategy)
        rows.append(row)
    print_table(out, columns, rows, wide, **COMPACT)
    _say(out, "speedup over GPU only per strategy (modeled); chosen: the best for the objective")
    if out.verbose:
        for res in results:
            out.line("")
            render(res, out, wide)


def _short(strategy: str) -> str:
    return {"data-parallel": "data-par", "layer-map": "layer-map", "pipeline": "pipeline"}.get(
        strategy, strategy
    )


def write_plots(results: list[PlanResult], folder) -> list:
    """timeline.png of the chosen plan (the last batch), and throughput_vs_batch.png for a
    batch list (every strategy). matplotlib is imported here only."""
    from pathlib import Path

    matplotlib = require("matplotlib", "plan --plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_timeline(results[-1], folder / "timeline.png", plt)]
    if len(results) > 1:
        paths.append(_curve(results, folder / "throughput_vs_batch.png", plt))
    return paths


def _timeline(res: PlanResult, path, plt):
    c = res.chosen
    tl = c.timeline
    devices = [d for d in DEVICES if d in c.devices]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    colours = plt.get_cmap("tab10")
    for row, dev in enumerate(devices):
        spans = [(s.start * 1e3, (s.end - s.start) * 1e3) for s in tl.spans if s.device == dev]
        rounds = [s.round for s in tl.spans if s.device == dev]
        top.broken_barh(spans, (row - 0.4, 0.8), facecolors=[colours(r % 10) for r in rounds])
    top.set_yticks(range(len(devices)), devices)
    top.set_title(
        f"{c.strategy}: {', '.join(res.models)}, batch {res.batch} (modeled; colour = round)"
    )
    times = [t for seg in tl.bandwidth for t in seg[:2]]
    for dev in devices:
        values = [seg[2].get(dev, 0.0) / 1e9 for seg in tl.bandwidth for _ in range(2)]
        bottom.plot([t * 1e3 for t in times], values, label=dev, linewidth=0.8)
    bottom.set_ylabel("DRAM GB/s")
    bottom.set_xlabel("time (ms)")
    bottom.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _curve(results: list[PlanResult], path, plt):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    strategies = [c.strategy for c in results[-1].candidates]
    batches = [r.batch for r in results]
    for s in strategies:
        values = [
            next((c.images_per_second for c in r.candidates if c.strategy == s), None)
            for r in results
        ]
        ax.plot(batches, values, marker="o", label=s)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("images/s (modeled)")
    first = results[0]
    ax.set_title(
        f"{', '.join(first.models)} on {first.target} {first.power_mode}, {first.precision}"
    )
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
