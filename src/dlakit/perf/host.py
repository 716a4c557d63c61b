"""The ``host`` target: time each hardware layer for real on the local CUDA GPU with PyTorch.

Each layer is replayed as the equivalent torch operation on tensors of its shapes (FP16,
channels-last, cuDNN autotuning on), timed with CUDA events after a warm-up. ``inner`` calls are
captured in a CUDA graph and one sample is one replay between two events, so neither PyTorch's
per-op CPU cost nor launch latency is counted; the median over the samples is kept. The layers
are the compiler's (:func:`dlakit.perf.layers.build_layers` for ``host``): point-wise work fused
into a convolution (BN, ReLU, the residual Add) is left out, as TensorRT fuses it too; a pass the
compiler runs on its own (the ReLU after a residual Add) is timed as one elementwise copy.
These are measurements of this machine's GPU, not model output.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from dlakit.errors import DlakitError
from dlakit.extras import require
from dlakit.perf.layers import HwLayer


@dataclass
class HostTiming:
    layer: HwLayer
    median_s: float
    runs: int


def _require_cuda():
    torch = require("torch", "profile --target host")
    if not torch.cuda.is_available():
        raise DlakitError("target 'host' times layers on the local CUDA GPU, and none is present")
    return torch


def _op(layer: HwLayer, batch: int, torch):
    import torch.nn.functional as F

    dev = "cuda"
    half = torch.float16

    def tensor(shape):
        x = torch.randn((batch, *shape), device=dev, dtype=half)
        return x.contiguous(memory_format=torch.channels_last) if len(shape) == 3 else x

    if layer.kind == "conv" and len(layer.in_shape) == 3:
        c, k, g = layer.in_shape[0], layer.out_shape[0], layer.groups
        x = tensor(layer.in_shape)
        w = torch.randn((k, c // g, *layer.kernel), device=dev, dtype=half)
        w = w.contiguous(memory_format=torch.channels_last)
        pad = (layer.kernel[0] // 2, layer.kernel[1] // 2)
        return lambda: F.conv2d(x, w, None, layer.stride, pad, 1, g)
    if layer.kind == "fc":
        k = layer.out_shape[-1]
        x = torch.randn((batch, layer.weights // k), device=dev, dtype=half)
        w = torch.randn((k, layer.weights // k), device=dev, dtype=half)
        return lambda: F.linear(x, w)
    if layer.kind == "pdp" and len(layer.in_shape) == 3:
        x = tensor(layer.in_shape)
        if layer.ops[0].startswith("Global"):
            return lambda: F.adaptive_avg_pool2d(x, 1)
        return lambda: F.max_pool2d(x, layer.kernel, layer.stride)
    if layer.kind in ("view", "concat") or not layer.in_shape:
        return None
    x = tensor(layer.in_shape)
    if layer.ew_elems:
        y = torch.randn_like(x)
        return lambda: torch.relu(x + y)
    return lambda: x.clone()


def time_layers(
    layers: list[HwLayer], batch: int = 1, warmup: int = 10, runs: int = 20, inner: int = 10
) -> list[HostTiming]:
    torch = _require_cuda()
    torch.backends.cudnn.benchmark = True
    timings = []
    for layer in layers:
        fn = _op(layer, batch, torch)
        if fn is None:
            timings.append(HostTiming(layer, 0.0, 0))
            continue
        replay = _graph(fn, warmup, inner, torch)
        samples = []
        for _ in range(runs):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            replay()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) * 1e-3 / inner)
        timings.append(HostTiming(layer, statistics.median(samples), runs))
    return timings


def _graph(fn, warmup: int, inner: int, torch):
    """Warm up on a side stream (cuDNN picks its algorithm), then capture ``inner`` calls."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    torch.cuda.synchronize()
    return graph.replay


def device_name() -> str:
    torch = _require_cuda()
    return torch.cuda.get_device_name(0)
