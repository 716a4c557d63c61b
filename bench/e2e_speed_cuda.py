"""The bit-exact simulator on a CUDA GPU at batch 32-256, next to onnxruntime FP32 on the same
machine's CPU and PyTorch FP32 on the same GPU, with CUDA outputs checked byte for byte against
the CPU simulator.

Per row (model, NVDLA target): max calibration on foolbox's 20 ImageNet photos, compile, then

- the simulator on CUDA (``dlakit.run.Runner``, decoded once) at each ``--batches`` size over
  ``--images`` images (at least two batches), after one warm batch;
- PyTorch FP32 on the GPU: the same ONNX model re-exported at that batch
  (``resolve_model(..., input_shape=...)``), run by ``dlakit.run.torch_exec.TorchGraph``;
- onnxruntime FP32 on the CPU (all cores, one image per run: the zoo files have batch 1);
- the CPU simulator on the first ``--cpu-images`` images: every DLA segment's output tensor and
  every network output compared with the CUDA run's, byte for byte. Fallback layers (ResNet's
  average pool and FC) run in torch on each device, where float reductions may differ in the last
  bit between devices; a second CUDA pass with onnxruntime fallback (as the CPU run has) then
  shows whether the network outputs match exactly too.

ResNet-50 has random weights (the zoo's architecture export): its speed and byte-equality mean
something, its classes do not.

Usage: PYTHONPATH=src python bench/e2e_speed_cuda.py [--rows resnet50:nv_full,...]
       [--batches 32,64,128,256] [--images 512] [--cpu-images 32] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import dlakit  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)

sys.path.insert(0, str(Path(__file__).parent))
from e2e_speed import DATA, OrtTimer, _images
from machine import cpu_name

ROWS = "resnet50:nv_full,mobilenetv2:nv_full,mobilenetv2:nv_small"


def _torch_fp32(model: str, batch: int, x: np.ndarray, runs: int, device: str) -> float:
    """PyTorch FP32 img/s on ``device``: the ONNX model exported at ``batch``."""
    import onnx
    import torch

    from dlakit.run.torch_exec import TorchGraph
    from dlakit.zoo import resolve_model

    graph = TorchGraph(onnx.load(resolve_model(model, input_shape=(batch, *x.shape[1:]))), device)
    reps = -(-batch // len(x))
    feed = {graph.inputs[0]: torch.from_numpy(np.concatenate([x] * reps)[:batch]).to(device)}
    with torch.no_grad():
        for _ in range(3):
            graph.run(feed)
        _sync(device)
        start = time.perf_counter()
        for _ in range(runs):
            graph.run(feed)
        _sync(device)
    return runs * batch / (time.perf_counter() - start)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _dla_outputs(comp) -> set[str]:
    return {n for seg in comp.segments if seg.kind == "dla" for n in seg.outputs}


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray], n: int) -> tuple[int, int]:
    """(tensors byte-equal on all n images, tensors compared)."""
    same = sum(a[k][:n].tobytes() == b[k][:n].tobytes() for k in a)
    return same, len(a)


def bench_row(model: str, target: str, args, rows: list[str], checks: list[str]) -> None:
    from dlakit.graph import load_model
    from dlakit.lower.lowering import quantize_model
    from dlakit.nvdla import compile_graph, nvdla_target
    from dlakit.quant.calibrate import calibrate
    from dlakit.quant.inputs import ArrayInputs
    from dlakit.run.runner import Runner
    from dlakit.zoo import resolve_model

    path = resolve_model(model)
    loaded = load_model(path)
    photos = _images(loaded, 20)
    name = loaded.input_names[0]
    inputs = ArrayInputs(f"20 x {DATA}", name, tuple(loaded.input_shapes[name]), photos,
                         [f"#{i}" for i in range(20)])  # fmt: skip
    scales = calibrate(loaded, inputs, "max").scales
    graph = quantize_model(loaded, scales, target)
    comp = compile_graph(graph, nvdla_target(target))
    ort_rate = OrtTimer(path, os.cpu_count() or 1, photos, args.scratch).rate(200)
    keep = _dla_outputs(comp)
    cuda_first: dict[str, np.ndarray] = {}
    for batch in args.batches:
        x = _images(loaded, max(args.images, 2 * batch))
        runner = Runner(comp, args.device, batch=batch)
        runner.run({name: x[:batch]})  # warm: kernels loaded, memory images allocated
        out, stats = runner.run({name: x}, keep=keep)
        if not cuda_first:
            cuda_first = {**out, **stats.kept}
        torch_rate = _torch_fp32(model, batch, photos, args.torch_runs, args.device)
        sim = stats.images_per_second
        rows.append(
            f"| {model} | {target} | {runner.program.operations} | {batch} | {len(x)} | "
            f"{sim:.1f} | {stats.dla_seconds:.2f} / {stats.fallback_seconds:.2f} | "
            f"{torch_rate:.0f} | **{sim / torch_rate:.4f}** | {ort_rate:.1f} | "
            f"**{sim / ort_rate:.2f}** |"
        )
        print(rows[-1], flush=True)
        del runner
    n = args.cpu_images
    x = _images(loaded, n)
    start = time.perf_counter()
    cpu_out, cpu_stats = Runner(comp, "cpu", batch=min(n, 32)).run({name: x}, keep=keep)
    cpu_s = time.perf_counter() - start
    cpu_all = {**cpu_out, **cpu_stats.kept}
    dla_same, dla_total = _equal({k: cuda_first[k] for k in keep}, cpu_all, n)
    net_same, net_total = _equal({k: cuda_first[k] for k in cpu_out}, cpu_all, n)
    ort_cuda, _ = Runner(comp, args.device, "ort", batch=min(n, 32)).run({name: x})
    ort_cpu, _ = Runner(comp, "cpu", "ort", batch=min(n, 32)).run({name: x})
    ort_same, _ = _equal(ort_cuda, ort_cpu, n)
    checks.append(
        f"| {model} | {target} | {n} | {dla_same}/{dla_total} | {net_same}/{net_total} | "
        f"{ort_same}/{len(ort_cpu)} | {n / cpu_s:.2f} |"
    )
    print(checks[-1], flush=True)


def _gpu_line() -> str:
    import torch

    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{smi or torch.cuda.get_device_name()}; CUDA {torch.version.cuda}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=ROWS)
    parser.add_argument("--batches", default="32,64,128,256")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--cpu-images", type=int, default=32)
    parser.add_argument("--torch-runs", type=int, default=20)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.scratch = Path(tempfile.mkdtemp(prefix="e2e_speed_cuda_"))
    import onnxruntime
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("e2e_speed_cuda: no CUDA device here")
    head = [
        f"- GPU: {_gpu_line() if args.device == 'cuda' else 'none (dry run on the CPU)'}",
        f"- CPU: {cpu_name()}, {os.cpu_count()} cores ({platform.machine()})",
        f"- torch {torch.__version__}, onnxruntime {onnxruntime.__version__} "
        f"({os.cpu_count()} intra-op threads), numpy {np.__version__}, Python "
        f"{platform.python_version()}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]
    rows: list[str] = []
    checks: list[str] = []
    for row in args.rows.split(","):
        model, target = row.split(":")
        bench_row(model, target, args, rows, checks)
    doc = [*head, "",
           "| model | target | hw ops | batch | images | simulated img/s (CUDA) | DLA / fallback s "
           "| torch FP32 GPU img/s | sim / torch | ORT FP32 CPU img/s | sim / ORT |",
           "|---|---|---|---|---|---|---|---|---|---|---|", *rows, "",
           "CUDA vs CPU simulator, byte for byte on the first images (the smallest batch's CUDA "
           "run):", "",
           "| model | target | images | DLA segment outputs equal | network outputs equal "
           "| network outputs equal, ORT fallback on both | CPU simulator img/s |",
           "|---|---|---|---|---|---|---|", *checks]  # fmt: skip
    text = "\n".join(doc) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
