"""End-to-end speed of the bit-exact path, each number next to onnxruntime FP32 in the same run.

For each model and NVDLA target: entropy calibration (timed), compile, then on the same images
the integer reference (``dlakit.lower.intref``) and the compiled artifact on the simulator
(``dlakit.run.Runner``, decoded once, ``--batch`` images per pass). onnxruntime FP32 (the
unmodified ONNX model, ``--threads`` intra-op threads, one image per run: the zoo models have a
fixed batch of 1) is timed right before and right after each of them, and the ratio uses the
mean of the two. Load does not hit both sides alike: onnxruntime's spinning thread pool slows
far more than the simulator on a busy machine (MobileNetV2: 270 img/s at load 0, 35-48 at
load 2-10), so only a quiet machine's ratios say anything. onnxruntime on the model exported
at ``--batch`` is reported as context. Every simulated output is compared byte for byte with
the integer reference's.

Images: foolbox's 20 labelled ImageNet photos, repeated to ``--images`` (speed does not depend
on the pixels; ResNet-50 has random weights, so only its speed and byte-equality mean
anything). ``--memory`` also runs MobileNetV2 nv_full at batch 32 in a child process and
reports its peak resident memory.

Usage: PYTHONPATH=src .venv/bin/python bench/e2e_speed.py [--models mobilenetv2,...]
       [--targets nv_full,nv_small] [--device cpu|cuda] [--batch 32] [--images 64]
       [--threads 2] [--memory] [--out bench/results/e2e_speed.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from machine import cpu_name, loadavg

import dlakit  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)

MODELS = ["mobilenetv2", "efficientnet-lite0", "resnet50"]
TARGETS = ["nv_full", "nv_small"]
DATA = "foolbox-imagenet"


_ORT_CHILD = """
import sys, time
import numpy as np, onnxruntime as ort
path, images, threads, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.load(images)
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
batch = session.get_inputs()[0].shape[0]
feeds = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]
for i in range(3):
    session.run(None, {name: feeds[i % len(feeds)]})
start = time.perf_counter()
for i in range(-(-n // batch)):
    session.run(None, {name: feeds[i % len(feeds)]})
print(-(-n // batch) * batch / (time.perf_counter() - start))
"""


class OrtTimer:
    """onnxruntime FP32 images/s of the unmodified model, one image per run, in a child process
    of its own: its idle threads spin for a while after each run and would slow whatever this
    process does next."""

    def __init__(self, path: Path, threads: int, x: np.ndarray, scratch: Path) -> None:
        self.path = path  # its input's batch is the batch of each run
        self.threads = threads
        self.images = scratch / f"{path.stem}.npy"
        np.save(self.images, x)

    def rate(self, n: int) -> float:
        cmd = [sys.executable, "-c", _ORT_CHILD, str(self.path), str(self.images),
               str(self.threads), str(n)]  # fmt: skip
        return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)

    def around(self, work, n: int) -> tuple[object, float, float]:
        """(work's result, its seconds, ORT img/s: mean of a run before and one after)."""
        before = self.rate(n)
        start = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - start
        after = self.rate(n)
        return result, seconds, (before + after) / 2


def _images(loaded, count: int) -> np.ndarray:
    from dlakit.data import load_inputs

    shape = loaded.input_shapes[loaded.input_names[0]]
    x = load_inputs(DATA, "imagenet", shape, 20)
    return np.concatenate([x] * (-(-count // len(x))))[:count]


def _calibrate(loaded, x: np.ndarray, ort: OrtTimer):
    from dlakit.quant.calibrate import calibrate
    from dlakit.quant.inputs import ArrayInputs

    name = loaded.input_names[0]
    shape = tuple(loaded.input_shapes[name])
    inputs = ArrayInputs(f"{len(x)} x {DATA}", name, shape, x, [f"#{i}" for i in range(len(x))])
    run, seconds, ort_rate = ort.around(lambda: calibrate(loaded, inputs, "entropy"), len(x))
    return run, len(x) / seconds, ort_rate


def _intref(ref, x: np.ndarray, batch: int):
    name = ref.graph.inputs[0]
    out: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), batch):
        for k, v in ref.run({name: x[start : start + batch]}).items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def bench_model(model: str, targets: list[str], args, rows: list[str], calib_rows: list[str]):
    from dlakit.graph import load_model
    from dlakit.lower.intref import IntReference
    from dlakit.lower.lowering import quantize_model
    from dlakit.nvdla import compile_graph, nvdla_target
    from dlakit.run.runner import Runner
    from dlakit.zoo import resolve_model

    path = resolve_model(model)
    loaded = load_model(path)
    x = _images(loaded, args.images)
    ort = OrtTimer(path, args.threads, x, args.scratch)
    # Context, not the targets' peer: onnxruntime on the same model exported at the simulator's
    # batch (on a CPU a batch of activations falls out of the caches a single image stays in).
    shape = tuple(loaded.input_shapes[loaded.input_names[0]])
    batched = resolve_model(model, input_shape=(args.batch, *shape[1:]))
    ort_batch = OrtTimer(batched, args.threads, x, args.scratch).rate(len(x))
    run, calib_rate, ort_rate = _calibrate(loaded, x, ort)
    calib_rows.append(
        f"| {model} | {len(x)} | {calib_rate:.2f} | {ort_rate:.1f} | "
        f"**{calib_rate / ort_rate:.3f}** | {run.passes} | "
        + ", ".join(f"{k} {v:.2f} s" for k, v in run.seconds.items())
        + " |"
    )
    print(calib_rows[-1], flush=True)
    for target in targets:
        graph = quantize_model(loaded, run.scales, target)
        comp = compile_graph(graph, nvdla_target(target))
        name = graph.inputs[0]
        # Warm outside the timing, as the simulator is: compiled loops loaded, weights cast.
        intref = IntReference(graph)
        intref.run({name: x[: args.batch]})
        ref, ref_s, ort_ref = ort.around(lambda: _intref(intref, x, args.batch), len(x))  # noqa: B023
        ref_rate = len(x) / ref_s
        runner = Runner(comp, args.device, batch=args.batch)
        runner.run({name: x[: args.batch]})  # warm
        (out, stats), _, ort_sim = ort.around(lambda: runner.run({name: x}), len(x))  # noqa: B023
        first = graph.outputs[0]
        equal = sum(np.array_equal(out[first][i], ref[first][i]) for i in range(len(x)))
        same = f"{equal}/{len(x)}"
        if equal < len(x):
            # Host reductions (GAP, Gemm) in torch may differ from onnxruntime's in the last bit;
            # the DLA segments do not: run the host segments as the integer reference does.
            again, _ = Runner(comp, args.device, "ort", batch=args.batch).run({name: x})
            equal_ort = sum(np.array_equal(again[first][i], ref[first][i]) for i in range(len(x)))
            same += f" (host in torch; {equal_ort}/{len(x)} with --fallback-engine ort)"
        if model == "mobilenetv2" and target == "nv_full":
            from dlakit.nvdla import write_artifact

            write_artifact(comp, args.scratch / "memory.dla")
        rows.append(
            f"| {model} | {target} | {runner.program.operations} ({len(runner.program.steps)} "
            f"steps) | {runner.device} | {stats.batch} | {stats.images_per_second:.2f} | "
            f"{ort_sim:.1f} | **{stats.images_per_second / ort_sim:.3f}** | {same} | "
            f"{ref_rate:.2f} | {ort_ref:.1f} | **{ref_rate / ort_ref:.3f}** | {ort_batch:.1f} |"
        )
        print(rows[-1], flush=True)


def _memory_child(artifact: Path) -> None:
    """Run a compiled MobileNetV2 nv_full at batch 32 on 32 images; print the resident memory
    before the runner, the peak, and what the runner plans (bytes)."""
    from dlakit.graph import load_model
    from dlakit.nvdla import read_artifact
    from dlakit.run.runner import Runner
    from dlakit.system import peak_resident
    from dlakit.zoo import resolve_model

    x = _images(load_model(resolve_model("mobilenetv2")), 32)
    comp = read_artifact(artifact)
    before = peak_resident()
    runner = Runner(comp, "cpu", batch=32)
    runner.run({comp.inputs[0]: x})
    peak = peak_resident()
    print(f"{before} {peak} {runner.memory_needed(32)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--memory-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.scratch = Path(tempfile.mkdtemp(prefix="e2e_speed_"))
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    import onnxruntime
    import torch

    lines = [
        f"- machine: {cpu_name()}, {os.cpu_count()} cores; device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""),
        f"- torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{onnxruntime.__version__} ({args.threads} intra-op threads), numpy {np.__version__}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average before: {loadavg()}",
        f"- {args.images} images per row, simulator batch {args.batch}",
    ]
    rows: list[str] = []
    calib_rows: list[str] = []
    for model in args.models.split(","):
        bench_model(model, args.targets.split(","), args, rows, calib_rows)
    lines.append(f"- load average after: {loadavg()}")
    doc = [*lines, "", "Simulated run and integer reference:", "",
           "| model | target | hw ops | device | batch | simulated img/s | ORT FP32 img/s | ratio "
           "| byte-equal to intref | intref img/s | ORT FP32 img/s | ratio "
           f"| ORT FP32 img/s at batch {args.batch} |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|", *rows, "",
           "Calibration (entropy, both passes and the KL search):", "",
           "| model | inputs | calibration inputs/s | ORT FP32 img/s | ratio | passes | phases |",
           "|---|---|---|---|---|---|---|", *calib_rows]  # fmt: skip
    if args.memory and (args.scratch / "memory.dla").is_file():
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(args.scratch / "memory.dla")],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            raise SystemExit(child.stderr)
        before, peak, planned = map(int, child.stdout.split()[-3:])
        doc += [
            "",
            f"Memory: the compiled MobileNetV2 nv_full run at batch 32 on the CPU (a process that "
            f"reads the artifact and runs 32 images): peak resident {peak / 2**30:.2f} GiB "
            f"(before the runner: {before / 2**30:.2f} GiB; the runner plans "
            f"{planned / 2**30:.2f} GiB).",
        ]
    text = "\n".join(doc) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
