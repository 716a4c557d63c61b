"""How long `dlakit check` takes, as a whole process, on the largest zoo models.

Usage: .venv/bin/python bench/check_speed.py [--runs 5] [MODEL ...]

Times `dlakit check MODEL --target orin` end to end (interpreter start, model load and canonical
form, verdicts, partition, rendering) with /usr/bin/time-style wall clock over several runs after
one warm-up that also fetches the model into the cache. Prints min / median / max seconds.
Target (issue 2): under 2 s on the largest zoo model on the 2-core CI machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT = ["ddddocr-det", "ppocr-det", "retinanet-resnext50", "mobilenetv2"]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def time_check(model: str, runs: int) -> list[float]:
    exe = Path(sys.executable).with_name("dlakit")
    cmd = [str(exe), "check", model, "--target", "orin"]
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up: fetch and cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=DEFAULT)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import os

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| model | min s | median s | max s |\n|---|---|---|---|")
    for model in args.models:
        t = time_check(model, args.runs)
        print(f"| {model} | {min(t):.2f} | {statistics.median(t):.2f} | {max(t):.2f} |")


if __name__ == "__main__":
    main()
