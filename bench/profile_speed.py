"""Benchmark: wall time of `dlakit profile` on the zoo's largest models (this CPU).

Times each stage separately (load to canonical form, support check, fusion into hardware layers,
costing) and the whole `profile_model` call, best of N runs after one warm-up (the ONNX export is
cached beforehand and not timed). Usage: python bench/profile_speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime

from dlakit.graph import load_model
from dlakit.perf import build_layers, profile_model
from dlakit.perf.model import engines_for
from dlakit.targets import load_target
from dlakit.zoo.arch import ARCHS, export_onnx

MODELS = ["retinanet-resnext50", "ssd-resnet34", "retinanet-resnet34"]


def best(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cpu_name() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    target = load_target("orin")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_name()}, {platform.python_version()}")
    print(
        "| model | input | nodes | hw layers | load s | check s | fuse s | cost s | profile s "
        "| total s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        path = export_onnx(name)
        t_load = best(lambda p=path: load_model(p), args.runs)
        model = load_model(path)
        t_check = best(lambda m=model: engines_for(m, target), args.runs)
        engines, _ = engines_for(model, target)
        t_fuse = best(lambda m=model, e=engines: build_layers(m, e), args.runs)
        layers = build_layers(model, engines)
        t_cost = best(lambda m=model, lay=layers: profile_model(m, target, layers=lay), args.runs)
        t_profile = best(lambda m=model: profile_model(m, target), args.runs)
        shape = "x".join(map(str, ARCHS[name].default_input))
        print(
            f"| {name} | {shape} | {len(model.nodes)} | {len(layers)} | {t_load:.2f} | "
            f"{t_check:.3f} | {t_fuse:.3f} | {t_cost:.3f} | {t_profile:.3f} | "
            f"{t_load + t_profile:.2f} |"
        )


if __name__ == "__main__":
    main()
