"""Speed of the calibration pass on this CPU: inputs per second for zoo models.

Usage: .venv/bin/python bench/calibrate_speed.py [--runs N]

For each model it loads N real inputs (loading and preprocessing are timed apart), then times
plain onnxruntime inference, pass 1 (every tensor exposed, min/max), pass 2 (|x| histograms) and
the amax computation, and prints a Markdown table to paste into bench/results/calibrate_speed.md.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import numpy as np
import onnxruntime as ort
from machine import cpu_name, loadavg

from dlakit.graph import load_model
from dlakit.quant.calibrate import calibrate
from dlakit.quant.inputs import calibration_inputs
from dlakit.zoo import get_entry, resolve_model

CASES = [("mnist-cnn", "opencv-digits", 1000), ("mobilenetv2", "opencv-photos", 90)]


def _plain_rate(path: str, inputs) -> float:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = [feed for _, feed in inputs]
    session.run(None, feeds[0])
    start = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    return len(feeds) / (time.perf_counter() - start)


def bench(name: str, dataset: str, runs: int) -> list[str]:
    entry = get_entry(name)
    path = resolve_model(name)
    loaded = load_model(path)
    start = time.perf_counter()
    inputs = calibration_inputs(dataset, entry.preprocess, loaded, runs)
    load_s = time.perf_counter() - start
    n = len(inputs)
    plain = _plain_rate(str(path), inputs)
    rows = []
    for method in ("max", "entropy"):
        run = calibrate(loaded, inputs, method)
        sec = run.seconds
        pass2 = f"{n / sec['histograms']:.1f}" if "histograms" in sec else "-"
        rows.append(
            f"| {name} | {n} x {dataset} | {method} | {len(run.scales.activations)} | "
            f"{n / load_s:.0f} | {plain:.1f} | {n / sec['ranges']:.1f} | {pass2} | "
            f"{sec['amax']:.2f} | {run.total_seconds:.2f} | **{run.inputs_per_second:.1f}** |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=0, help="inputs per model (default: per case)")
    args = parser.parse_args()
    print(f"- machine: {cpu_name()}, {__import__('os').cpu_count()} cores, no GPU")
    print(f"- onnxruntime {ort.__version__} (CPU, default threads), numpy {np.__version__}")
    print(f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"- load average before the run: {loadavg()} (the machine is shared)\n")
    print(
        "| model | inputs | method | tensors | load+preprocess /s | plain ORT /s | pass 1 /s | "
        "pass 2 /s | amax s | total s | calibration inputs/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, dataset, runs in CASES:
        for row in bench(name, dataset, args.runs or runs):
            print(row)
    print(f"\n- load average after the run: {loadavg()}")


if __name__ == "__main__":
    main()
