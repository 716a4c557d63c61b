"""Plots of a profile: a roofline with each layer as a point, and per-layer time bars."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from dlakit.extras import require
from dlakit.files import atomic_write
from dlakit.perf.model import Profile

BOUND_COLORS = {
    "compute": "tab:blue",
    "memory": "tab:red",
    "fill": "tab:orange",
    "overhead": "tab:gray",
}


def write_plots(profile: Profile, out_dir: Path) -> list[Path]:
    matplotlib = require("matplotlib", "profile --plot")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = [c for c in profile.costs if c.time_s > 0]
    title = f"{profile.target} {profile.power_mode} (modeled, {profile.model_version})"
    paths = []

    fig, ax = plt.subplots(figsize=(7, 5))
    dla = [c for c in costs if c.engine == "dla" and c.macs and c.dram_bytes]
    if dla and profile.dla and profile.params:
        peak = dla[0].peak_macs_per_s
        bandwidth = profile.dla.dram_bytes_per_s(profile.params)
        xs = [c.intensity for c in dla]
        lo, hi = min(xs) / 2, max(xs) * 2
        ridge = peak / bandwidth
        ax.plot([lo, ridge, hi], [lo * bandwidth, peak, peak], "k-", lw=1, label="roofline")
        for bound, color in BOUND_COLORS.items():
            pts = [c for c in dla if c.bound == bound]
            ax.scatter(
                [c.intensity for c in pts],
                [c.macs / c.time_s for c in pts],
                s=14,
                c=color,
                label=f"{bound}-bound layers",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs per DRAM byte)")
    ax.set_ylabel("achieved MACs/s")
    ax.set_title(f"Roofline, DLA layers: {title}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "roofline.png")
    atomic_write(paths[-1], partial(fig.savefig, format="png", dpi=120))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(7, len(costs) * 0.12), 4))
    ax.bar(
        range(len(costs)),
        [c.time_s * 1e6 for c in costs],
        color=[
            BOUND_COLORS.get(c.bound, "tab:green") if c.engine == "dla" else "tab:green"
            for c in costs
        ],
    )
    ax.set_xlabel(
        "hardware layer, in order (blue compute, red DRAM, orange CBUF fill, gray overhead, "
        "green GPU)",
        fontsize=8,
    )
    ax.set_ylabel("time per image (µs)")
    ax.set_title(f"Per-layer time: {title}", fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / "layers.png")
    atomic_write(paths[-1], partial(fig.savefig, format="png", dpi=120))
    plt.close(fig)
    return paths
