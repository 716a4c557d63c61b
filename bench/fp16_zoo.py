"""``dlakit compile --precision fp16`` on zoo models, run on the simulator, against onnxruntime.

For each model: ``compile_model(precision="fp16", via_firmware=True)`` for nv_full (what
``compile --precision fp16 [--format loadable]`` compiles), every image of the model's data set
(up to ``--limit``) run by the ``.dla`` runner on the simulator (the FP16 definition: its FP16
units are bit-exact to the C model), then against onnxruntime FP32 of the same ONNX model (max
absolute error, the largest error relative to the largest |output|, top-1 agreement) and against
an FP16 run of the model (torch ``.half()`` of the zoo's PyTorch module on the CPU, where the zoo
builds the model from PyTorch; onnxconverter-common is not in the environment). Finally each DLA
segment's loadable against the ``.dla`` path on the first image (bytes differing). Prints one
Markdown row per model.

Usage: PYTHONPATH=src .venv/bin/python bench/fp16_zoo.py [--models a,b] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "loadable"))

from loadable_cases import DATA, compare_with_dla

from dlakit.data import load_inputs
from dlakit.errors import DlakitError
from dlakit.graph import load_model
from dlakit.nvdla import compile_model
from dlakit.run.runner import Runner
from dlakit.zoo import get_entry, resolve_model

MODELS = ["mnist-cnn", "fmnist-cnn"]


def _ort(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def _torch_half(model: str, x: np.ndarray) -> np.ndarray | None:
    import torch

    from dlakit.zoo.export import torch_model

    try:
        net = torch_model(get_entry(model)).half().eval()
    except (DlakitError, KeyError, ValueError):
        return None
    with torch.no_grad():
        return net(torch.from_numpy(x).half()).float().numpy()


def row(model: str, limit: int) -> str:
    try:
        path = resolve_model(model)
        loaded = load_model(path)
        name = loaded.input_names[0]
        data = DATA.get(model, "foolbox-imagenet")
        x = load_inputs(data, get_entry(model).preprocess, loaded.input_shapes[name], limit)
    except DlakitError as exc:
        return f"| {model} | - | - | - | - | - | - | not run: {exc} |"
    comp = compile_model(loaded, {}, "nv_full", precision="fp16", via_firmware=True)
    t0 = time.perf_counter()
    out, _ = Runner(comp).run({name: x})
    seconds = time.perf_counter() - t0
    got = next(iter(out.values()))
    ref = _ort(path, name, x)
    err = np.abs(got - ref)
    half = _torch_half(model, x)
    vs_half = "-"
    if half is not None:
        vs_half = (
            f"{np.mean(got.argmax(1) == half.argmax(1)):.3f} (max abs "
            f"{np.abs(got - half).max():.3g}; torch half vs FP32 {np.abs(half - ref).max():.3g})"
        )
    with tempfile.TemporaryDirectory() as tmp:
        results = compare_with_dla(comp, x[:1], Path(tmp))
    differing = sum(r.bytes_differing for r in results)
    compared = sum(r.bytes_compared for r in results)
    segs = f"{comp.stats['dla_segments']} DLA / {comp.stats['fallback_segments']} host"
    return (
        f"| {model} | {len(x)} ({data}) | {segs}, {comp.stats['fp16_layers']} FP16 layers "
        f"| {err.max():.3g} | {err.max() / np.abs(ref).max():.2e} | "
        f"{np.mean(got.argmax(1) == ref.argmax(1)):.3f} | {vs_half} | "
        f"{differing} of {compared:,} bytes; {seconds / len(x):.1f} s/image |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()
    print("| model | images | compiled | max abs vs ORT FP32 | max rel | top-1 = ORT FP32 | "
          "top-1 = FP16 torch | loadable vs .dla; simulator |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        print(row(model, args.limit), flush=True)


if __name__ == "__main__":
    main()
