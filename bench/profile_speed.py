"""Benchmark: wall time of `dlakit profile` on the zoo's largest models (this CPU).

Times each stage separately (load to canonical form, the structure-only lowering, support verdicts
and compiler decisions into hardware layers, costing), the whole `profile_model` call, and the
whole CLI command in a fresh interpreter; best of N runs after one warm-up (the ONNX export is
cached beforehand and not timed). Usage: python bench/profile_speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dlakit.graph import load_model
from dlakit.perf import profile_model
from dlakit.perf.layers import graph_layers, lower_structure
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


def cli_seconds(name: str, runs: int) -> tuple[float, float]:
    """`python -m dlakit profile NAME --json ...` in a fresh interpreter: best wall and best CPU
    seconds (user + system) of ``runs``; CPU time is what a quiet machine's wall time would be
    for this single-threaded command, wall time is what this shared machine gave."""
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "dlakit", "profile", name, "--json", f"{tmp}/p.json"]
        for _ in range(runs + 1):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, env=dict(os.environ), check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls[1:]), min(cpus[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    target = load_target("orin")
    load = os.getloadavg()[0]
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load:.1f}"
    )
    print(
        "| model | input | nodes | hw layers | load s | lower s | layers s | cost s | profile s "
        "| CLI wall s | CLI CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        path = Path(export_onnx(name))
        t_load = best(lambda p=path: load_model(p), args.runs)
        model = load_model(path)
        t_lower = best(lambda m=model: lower_structure(m, target), args.runs)
        graph = lower_structure(model, target)
        t_layers = best(lambda m=model, g=graph: graph_layers(m, g, target), args.runs)
        layers = graph_layers(model, graph, target)
        t_cost = best(lambda m=model, lay=layers: profile_model(m, target, layers=lay), args.runs)
        t_profile = best(lambda m=model: profile_model(m, target), args.runs)
        cli_wall, cli_cpu = cli_seconds(name, args.runs)
        shape = "x".join(map(str, ARCHS[name].default_input))
        print(
            f"| {name} | {shape} | {len(model.nodes)} | {len(layers)} | {t_load:.2f} | "
            f"{t_lower:.2f} | {t_layers:.3f} | {t_cost:.3f} | {t_profile:.2f} | {cli_wall:.2f} | "
            f"{cli_cpu:.2f} |"
        )


if __name__ == "__main__":
    main()
