"""A compiled detector against FP32 on real photos: box IoU and class agreement.

Calibration (``--method``, max by default: entropy clips the rare positive class logits of
a detection head, so that on eval-photos' first 3 photos it kept none of FP32's 3 detections)
on CALIB (the zoo model's preprocessing), lowering and compilation for the
target, then on N photos of EVAL: onnxruntime FP32, the integer reference and the compiled
artifact on the simulator (host segments in onnxruntime, which mirrors the reference node by
node). Every compiled output is checked byte for byte against the reference. Detections of a
YOLOv8 head ``(4 + classes, anchors)``: class = best score, kept above ``--score``, per-class
NMS at IoU 0.45. Each FP32 detection is matched to the compiled detection of highest IoU:
"matched" when that IoU >= 0.5 and the class is the same.

Usage: PYTHONPATH=src python bench/detector_accuracy.py [--model yolov8n] [--target nv_full]
       [--calib skimage-photos] [--eval eval-photos] [--images 8] [--score 0.25]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dlakit.graph import load_model
from dlakit.zoo import get_entry, resolve_model


def detections(out: np.ndarray, score: float) -> list[tuple[np.ndarray, int, float]]:
    """(xyxy box, class, score) of one image's YOLOv8 output ``(4 + classes, anchors)``."""
    cls = out[4:].argmax(axis=0)
    conf = out[4:].max(axis=0)
    keep = np.nonzero(conf > score)[0]
    cx, cy, w, h = out[:4, keep]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    found: list[tuple[np.ndarray, int, float]] = []
    for c in np.unique(cls[keep]):
        idx = np.nonzero(cls[keep] == c)[0]
        idx = idx[np.argsort(-conf[keep][idx])]
        while idx.size:
            best = idx[0]
            found.append((boxes[best], int(c), float(conf[keep][best])))
            idx = idx[1:][iou(boxes[best], boxes[idx[1:]]) < 0.45]
    return found


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    b = np.atleast_2d(b)
    lo, hi = np.maximum(a[:2], b[:, :2]), np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda r: np.prod(np.clip(r[..., 2:] - r[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def main() -> None:
    from dlakit.accuracy.compare import float_run
    from dlakit.data import load_inputs
    from dlakit.lower.intref import IntReference
    from dlakit.lower.lowering import quantize_model
    from dlakit.nvdla import compile_graph, nvdla_target
    from dlakit.quant.calibrate import calibrate
    from dlakit.quant.inputs import calibration_inputs
    from dlakit.run.runner import Runner

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="yolov8n")
    ap.add_argument("--target", default="nv_full")
    ap.add_argument("--calib", default="skimage-photos")
    ap.add_argument("--calib-images", type=int, default=500)
    ap.add_argument("--eval", default="eval-photos")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--score", type=float, default=0.25)
    ap.add_argument("--method", default="max", help="calibration method (max, entropy, ...)")
    args = ap.parse_args()
    loaded = load_model(resolve_model(args.model))
    prep = get_entry(args.model).preprocess
    shape = loaded.input_shapes[loaded.input_names[0]]
    calib = calibration_inputs(args.calib, prep, loaded, args.calib_images)
    scales = calibrate(loaded, calib, args.method).scales
    graph = quantize_model(loaded, scales, args.target)
    comp = compile_graph(graph, nvdla_target(args.target))
    st = comp.stats
    print(f"{args.model} on {args.target} ({args.method} calibration): {st['dla_segments']} DLA "
          f"+ {st['fallback_segments']} host segments, {st['hardware_ops']} hardware ops "
          f"{st['ops_by_kind']}")  # fmt: skip
    x = load_inputs(args.eval, prep, shape, args.images)
    inp, out = loaded.input_names[0], loaded.output_names[0]
    fp32 = float_run(loaded, x)[out]
    runner = Runner(comp, "cpu", "ort")
    equal = n_fp32 = n_comp = matched = 0
    ious: list[float] = []
    same_class: list[bool] = []
    t0 = time.perf_counter()
    for i in range(len(x)):
        ref = IntReference(graph).run({inp: x[i : i + 1]})[out]
        got, _ = runner.run({inp: x[i : i + 1]})
        equal += int(np.array_equal(got[out], ref))
        want, have = detections(fp32[i], args.score), detections(got[out][0], args.score)
        n_fp32, n_comp = n_fp32 + len(want), n_comp + len(have)
        for box, cls, _ in want:
            if not have:
                ious.append(0.0)
                same_class.append(False)
                continue
            overlap = iou(box, np.stack([b for b, _, _ in have]))
            j = int(overlap.argmax())
            ious.append(float(overlap[j]))
            same_class.append(have[j][1] == cls)
            matched += int(overlap[j] >= 0.5 and have[j][1] == cls)
        print(f"image {i}: byte-equal {equal}/{i + 1}, detections FP32 {len(want)} compiled "
              f"{len(have)} ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    agree = 100 * np.mean(same_class) if same_class else float("nan")
    print(f"\n| model | target | eval photos | compiled outputs byte-equal to intref | "
          f"FP32 detections | compiled detections | matched (IoU>=0.5, same class) | "
          f"mean best IoU | class agreement |\n|---|---|---|---|---|---|---|---|---|\n"
          f"| {args.model} | {args.target} | {len(x)} ({args.eval}) | {equal}/{len(x)} | {n_fp32} "
          f"| {n_comp} | {matched}/{n_fp32} | {np.mean(ious) if ious else float('nan'):.3f} "
          f"| {agree:.1f}% |")  # fmt: skip


if __name__ == "__main__":
    main()
