"""Run `fix` on every zoo model and record what it did: rewrites, DLA coverage, verification error.

Coverage is `check`'s: TensorRT's predicted placement before and after the rewrites, then the
rewritten model with dlakit's placement policy applied (what `fix` recommends on top), with the
time the recommendations save from the performance model.

Usage: .venv/bin/python bench/fix_zoo.py [NAME ...] > bench/results/fix_zoo.md
Models are verified on real photos through their preprocess preset where they have one (the
pretrained zoo models), else on seeded random normal inputs (the random-weight architectures).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections import Counter
from datetime import date

from dlakit.graph import load_model, save_model
from dlakit.partition import check_model
from dlakit.paths import cache_dir
from dlakit.report.recommend import price_recommendations
from dlakit.rewrite import fix_model
from dlakit.rewrite.inputs import real_inputs
from dlakit.support.rules import resolve_trt_version
from dlakit.targets import load_target
from dlakit.zoo import entries, fetch


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main(names: list[str]) -> None:
    orin = load_target("orin")
    print(
        f"# `dlakit fix` on the zoo, target orin (TensorRT {resolve_trt_version(None, orin)[0]}"
        " rules)\n"
    )
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, no GPU; {date.today()}. Time is the")
    print("whole fix_model call (passes, per-pass onnxruntime checks, re-canonicalization).\n")
    print(
        "| model | nodes | on DLA before | on DLA after | after + policy | DLA segments |"
        " policy saves | max rel err | inputs | time | rewrites |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    out_dir = cache_dir() / "fixed"
    for name, entry in entries().items():
        if names and name not in names:
            continue
        loaded = load_model(fetch(name), {"": tuple(entry.input_shape)})
        inputs = real_inputs(loaded, None, entry.preprocess) if entry.preprocess else None
        start = time.perf_counter()
        result = fix_model(loaded, orin, inputs)
        seconds = time.perf_counter() - start
        after = load_model(save_model(result.model, out_dir / f"{name}.onnx"))
        b, a = check_model(loaded, orin).summary, check_model(after, orin).summary
        policy = check_model(after, orin, apply_policy=True)
        price_recommendations(policy)
        p = policy.summary
        saving = p["recommended_saving_ms"]
        saves = f"{saving:.2f} ms ({p['recommendations']})" if p["recommendations"] else "-"
        passes = Counter(r.pass_name for r in result.rewrites)
        v = result.verification
        print(
            f"| {name} | {b['nodes']} → {a['nodes']} | {b['nodes_on_dla']} | {a['nodes_on_dla']} |"
            f" {p['nodes_on_dla']} | {b['dla_segments']} → {a['dla_segments']} →"
            f" {p['dla_segments']} | {saves} | {v.max_rel_error:.2g} |"
            f" {v.source.split(' (')[0]} | {seconds:.1f} s |"
            f" {', '.join(f'{k} {n}' for k, n in passes.items()) or '-'} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
