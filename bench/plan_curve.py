"""Seed 004's curve, the GPU and power calibration points, and the planner's run times.

    python bench/plan_curve.py            # writes bench/results/plan.md

1. MobileNetV1 224x224 on xavier-nx (INT8, MAXN), batch 4 ... 2048: GPU only, every strategy,
   auto; against seed 004's text (1.43x at 1024, 1.46x at 2048, losing to GPU only at small
   batch, gains from about batch 16).
2. A what-if, labelled as such: the DLA per-image time the seed's 2048 point implies (one
   factor on every DLA layer's time, found by bisection on the data-parallel speedup at 2048),
   and the curve the planner's mechanics give with it. The planner itself never uses it.
3. The GPU model's calibration points and the power model's fit, reproduced.
4. Run times: ``dlakit plan`` on one model, auto, one batch; layer-map of two ResNet-class models.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "plan.md"
BATCHES = [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
SEED = {1024: 1.43, 2048: 1.46}


def curve(costs, loaded, **kwargs):
    from dlakit.plan import plan_models

    rows = []
    for b in BATCHES:
        t0 = time.perf_counter()
        res = plan_models(loaded, "xavier-nx", batch=b, costs=costs, **kwargs)
        rows.append((b, res, time.perf_counter() - t0))
    return rows


def slowed(costs, factor):
    """The what-if: every DLA phase's fixed and compute time times ``factor`` (bytes kept)."""
    from dlakit.perf.contention import Phase

    out = []
    for c in costs:
        groups = [
            replace(
                g,
                dla=[
                    Phase(p.fixed_s * factor, p.compute_s * factor, p.dram_bytes, p.macs)
                    for p in g.dla
                ],
            )
            for g in c.groups
        ]
        new = replace(c, groups=groups)
        new.__dict__.pop("dla_group_times", None)
        new.__dict__.pop("gpu_group_times", None)
        out.append(new)
    return out


def implied_factor(costs, loaded) -> float:
    from dlakit.plan import plan_models

    def speedup(f):
        res = plan_models(
            loaded, "xavier-nx", batch=2048, strategy="data-parallel", costs=slowed(costs, f)
        )
        return res.chosen.speedup_vs_gpu_only

    lo, hi = 1.0, 64.0
    for _ in range(14):
        mid = (lo * hi) ** 0.5
        if speedup(mid) > SEED[2048]:
            lo = mid
        else:
            hi = mid
    return (lo * hi) ** 0.5


def _one_batch(res, strategy: str) -> float:
    """GPU-only latency over the strategy's latency: one batch timed on its own."""
    c = next(c for c in res.candidates if c.strategy == strategy)
    return res.gpu_only.latency_ms / c.latency_ms


def timed_cli(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one ``dlakit`` command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "80"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dlakit", *args], check=True, env=env, capture_output=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    from dlakit.graph import load_model
    from dlakit.perf.gpu_fit import load_gpu_params, points
    from dlakit.perf.hw import perf_data
    from dlakit.perf.power import load_power_model
    from dlakit.perf.power_fit import ratio_points
    from dlakit.plan import costs_for
    from dlakit.targets import load_target
    from dlakit.zoo.arch import export_onnx

    model = load_model(export_onnx("mobilenetv1"))
    loaded = [("mobilenetv1", model)]
    target = load_target("xavier-nx")
    costs = costs_for(loaded, target, "MAXN", "int8", 2)
    rows = curve(costs, loaded)
    factor = implied_factor(costs, loaded)
    what_if = curve(slowed(costs, factor), loaded)

    out = [
        "# Planner: seed 004's curve, calibration points, run times (modeled)",
        "",
        f"`python bench/plan_curve.py`, {datetime.now(UTC):%Y-%m-%d}, on {platform.machine()} "
        f"({os.cpu_count()} CPUs visible, shared with other jobs; no GPU or DLA: every number "
        "below is modeled by dlakit, models dla-perf-1 and gpu-perf-1).",
        "",
        "## 1. Seed 004: MobileNetV1 224x224, Xavier NX, INT8, GPU + 2 DLAs",
        "",
        "Speedup of each strategy over GPU only (images/s ratio; every strategy at its best "
        "plan for throughput, batches back to back). *one batch*: the same plans timed one batch "
        "at a time (GPU-only latency over the plan's latency), as a single batched inference is "
        "timed.",
        "",
        "| batch | GPU only img/s | dla | streams | data-parallel | pipeline | layer-map "
        "| auto (chosen) | data-parallel, one batch | seed 004 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b, res, _ in rows:
        by = {c.strategy: c.speedup_vs_gpu_only for c in res.candidates}
        seed = f"{SEED[b]:.2f}x" if b in SEED else ("< 1x" if b < 16 else "")
        out.append(
            f"| {b} | {res.gpu_only.images_per_second:.0f} | "
            + " | ".join(
                f"{by[s]:.2f}x"
                for s in ("dla", "streams", "data-parallel", "pipeline", "layer-map")
            )
            + f" | {res.chosen.speedup_vs_gpu_only:.2f}x ({res.chosen.strategy}) | "
            f"{_one_batch(res, 'data-parallel'):.2f}x | {seed} |"
        )
    auto_ok = all(
        res.chosen.images_per_second >= res.gpu_only.images_per_second for _, res, _ in rows
    )
    dp = {b: next(c for c in res.candidates if c.strategy == "data-parallel") for b, res, _ in rows}
    gpu_img = rows[-1][1].gpu_only.images_per_second
    dla_alone = costs[0].dla_time(0, costs[0].front)
    out += [
        "",
        f"auto >= 1.0x GPU only at every batch: **{'yes' if auto_ok else 'NO'}** "
        f"(min {min(r.chosen.speedup_vs_gpu_only for _, r, _ in rows):.2f}x).",
        "",
        f"**The model does not reproduce the seed.** Data-parallel gives "
        f"{dp[1024].speedup_vs_gpu_only:.2f}x at 1024 and {dp[2048].speedup_vs_gpu_only:.2f}x at "
        f"2048 (seed: 1.43x, 1.46x) and wins at every batch (seed: loses at small batch). The GPU "
        f"side is the seed's own ({gpu_img:.0f} images/s: the Volta efficiency is fitted to it), "
        f"so the gap is the DLA: dla-perf-1 puts MobileNetV1's DLA front at "
        f"{1e3 * dla_alone:.2f} ms per image on one Xavier NX core ({1 / dla_alone:.0f} images/s, "
        f"{2 / dla_alone / gpu_img:.1f}x the GPU with both cores), where the seed's 1.46x leaves "
        f"the two DLAs about {0.46 * gpu_img:.0f} images/s together. The DLA model is fitted on "
        "Orin only (its Xavier numbers are unvalidated); the seed ran TVM 0.9's TensorRT backend "
        "on a JetPack 4 (TensorRT < 8.5, before cuDLA, whose DLA scheduling overheads the DLA FAQ "
        "describes), at a precision it does not state. Nothing in the calibration set measures a "
        "Xavier DLA, so the planner is not tuned to close the gap.",
        "",
        "### What-if (not used by the planner): the DLA the seed implies",
        "",
        f"Every DLA layer's time x **{factor:.1f}** (found by bisection so that data-parallel "
        f"gives 1.46x at 2048), i.e. {1e3 * dla_alone * factor:.1f} ms per image per core. "
        "The rest of the curve then follows from the planner's mechanics:",
        "",
        "| batch | data-parallel | auto (chosen) | data-parallel, one batch | seed 004 |",
        "|---|---|---|---|---|",
    ]
    for b, res, _ in what_if:
        d = next(c for c in res.candidates if c.strategy == "data-parallel")
        seed = f"{SEED[b]:.2f}x" if b in SEED else ("< 1x" if b < 16 else "")
        out.append(
            f"| {b} | {d.speedup_vs_gpu_only:.2f}x | {res.chosen.speedup_vs_gpu_only:.2f}x "
            f"({res.chosen.strategy}) | {_one_batch(res, 'data-parallel'):.2f}x | {seed} |"
        )
    one = {b: _one_batch(res, "data-parallel") for b, res, _ in what_if}
    small = ", ".join(f"{one[b]:.2f}x at {b}" for b in (4, 8, 16))
    out += [
        "",
        "Timed one batch at a time, as the seed timed a batched inference, the planner's "
        f"data-parallel with that DLA gives {small}, {one[1024]:.2f}x at 1024 and "
        f"{one[2048]:.2f}x at 2048: the seed's shape (a loss at small batch from the DLA "
        "submissions and the gather, gains from about 16, 1.43-1.46x at large batch) follows "
        "from the cost model's mechanics once the DLA runs at the speed the seed implies. "
        "Batches back to back (the first column) hide the small-batch loss: the next batch's "
        "fronts overlap this one's tail.",
    ]
    pts = points(load_gpu_params())
    fit = perf_data("gpu.toml")
    out += [
        "",
        "## 2. GPU model calibration points (gpu-perf-1)",
        "",
        "Fitted only to these (perf_calibration.md). YOLOv5s 672x672 INT8 on Orin at GPU 1275 MHz "
        "(cuDLA-samples README), from its per-kernel shapes (perf/data/gpu_calibration.toml); "
        "MobileNet on Xavier NX (seed 004's plateau).",
        "",
        "| network | target | batch | predicted ms | measured ms | error |",
        "|---|---|---|---|---|---|",
    ]
    for p in pts:
        out.append(
            f"| {p.network} | {p.target} | {p.batch} | {p.predicted_ms:.2f} | "
            f"{p.measured_ms:.2f} | {100 * p.error:+.1f}% |"
        )
    params = fit["params"]
    out += [
        "",
        f"YOLOv5s: mean absolute error **{100 * fit['fit']['yolov5s_mape']:.1f}%**, largest "
        f"{100 * fit['fit']['yolov5s_max_abs_error']:.1f}% (2 parameters on 6 points: launch "
        f"{params['launch_us']['value']:.1f} us per kernel, Ampere efficiency "
        f"{params['efficiency']['value']['ampere']:.3f}). The Xavier NX point fixes the Volta "
        f"efficiency ({params['efficiency']['value']['volta']:.4f} of the INT8 tensor-core peak; "
        "one point, one parameter, so it is met by construction and tests nothing).",
        "",
        "## 3. Power model fit (seed 001's DLA-vs-GPU perf/W, dense rows)",
        "",
        "| network | MAXN | 50W | 30W | 15W |",
        "|---|---|---|---|---|",
    ]
    ratios = ratio_points(load_power_model())
    for network in dict.fromkeys(p.network for p in ratios):
        cells = [f"{p.predicted:.2f} / {p.measured:.1f}" for p in ratios if p.network == network]
        out.append(f"| {network} | " + " | ".join(cells) + " |")
    errors = [abs(p.error) for p in ratios]
    out += [
        "",
        "Predicted / measured ratio; mean absolute error "
        f"**{100 * sum(errors) / len(errors):.1f}%**, largest {100 * max(errors):.1f}% "
        "over the 24 entries (3 GPU parameters).",
        "",
        "## 4. Run times",
        "",
        "`dlakit plan` as a whole command (imports, model load, every strategy, the simulation), "
        "wall and CPU time of the process:",
        "",
        "| command | wall s | CPU s |",
        "|---|---|---|",
    ]
    for args in (
        ["plan", "mobilenetv1", "-t", "xavier-nx", "-b", "64"],
        ["plan", "resnet50", "-t", "orin", "-b", "8"],
        ["plan", "resnet50", "resnet34", "-t", "orin", "-b", "4", "--strategy", "layer-map"],
        ["plan", "resnet50", "resnet34", "-t", "orin", "-b", "4", "--strategy", "layer-map",
         "--objective", "latency"],
    ):  # fmt: skip
        wall, cpu = timed_cli(args)
        out.append(f"| `dlakit {' '.join(args)}` | {wall:.1f} | {cpu:.1f} |")
    total = sum(t for _, _, t in rows)
    out += [
        "",
        f"The 10-batch seed-004 curve above (all strategies, in process): {total:.1f} s.",
        "",
    ]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(out))
    print(RESULT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
