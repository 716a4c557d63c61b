"""The Jetson GPU per-kernel model the planner costs GPU work with (``gpu-perf-1``).

TensorRT runs a network on the GPU as fused kernels: a convolution (or matrix product) with the
pointwise operations that follow it (BatchNorm, activation, a residual Add, SiLU's Sigmoid+Mul)
as its epilogue; concatenations and reshapes cost nothing (producers write in place). The
kernels here are built from the ONNX graph by that rule (:func:`gpu_kernels`), one
:class:`~dlakit.perf.layers.HwLayer` each (engine ``"fallback"``), shapes per image.

Per kernel, for a batch of ``b`` images, at the power mode's GPU clock:

* compute = MACs·b / (peak · efficiency), the peak being the tensor-core rate of the precision,
  or the CUDA-core rate (DP4A / half2 lanes) for depthwise-like convolutions whose channels per
  group are too few for tensor-core tiles; ``efficiency`` is fitted per GPU architecture;
* memory = (activations·b + weights) bytes / (module bandwidth · bandwidth_efficiency): weights
  are read once per batch, activations once per image;
* time = launch + max(compute, memory): the per-kernel launch is paid once per batch, so the
  time per image falls with the batch (the sub-linear batch scaling of NVIDIA's YOLOv5s table).

The free parameters (``data/gpu.toml``) are fitted only to the GPU measurements of
``perf_calibration.md`` (``python -m dlakit.perf.gpu_fit``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import onnx

from dlakit.errors import TargetError
from dlakit.graph import LoadedModel
from dlakit.graph.nodes import attrs as node_attrs
from dlakit.perf.hw import perf_data
from dlakit.perf.layers import HwLayer
from dlakit.targets import Target

# Ops TensorRT fuses into the kernel that produces their input (pointwise epilogues).
POINTWISE = frozenset(
    {
        "Relu", "Clip", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "Tanh", "HardSigmoid",
        "HardSwish", "Softplus", "Mish", "Gelu", "Erf", "Add", "Sub", "Mul", "Div", "Max", "Min",
        "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "Abs", "Neg", "BatchNormalization", "Cast",
        "QuantizeLinear", "DequantizeLinear",
    }
)  # fmt: skip
# No data moves: views, and concatenations written in place by their producers.
FREE = frozenset(
    {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Concat", "Shape",
     "Constant"}
)  # fmt: skip
POOLS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"})
_TENSOR_CORE_MIN_CHANNELS = 8  # channels per group below which a conv runs on CUDA cores


@dataclass(frozen=True)
class GpuParams:
    """The GPU model's fitted parameters (``data/gpu.toml``)."""

    launch_us: float  # per kernel and batch: launch, TensorRT enqueue, tail of the last wave
    efficiency: dict[str, float]  # share of the compute peak a conv kernel achieves, per arch


@dataclass(frozen=True)
class JetsonGpu:
    """A Jetson GPU at one power mode and precision, as the kernel costs see it."""

    target: str
    arch: str
    power_mode: str
    clock_mhz: float
    sms: int
    tensor_macs_per_clk_per_sm: int
    cuda_macs_per_clk_per_sm: float  # CUDA-core MACs (DP4A for INT8, half2 for FP16)
    dram_gbps: float
    bandwidth_efficiency: float
    bytes_per_elem: int

    @property
    def tensor_peak(self) -> float:
        return self.sms * self.tensor_macs_per_clk_per_sm * self.clock_mhz * 1e6

    @property
    def cuda_peak(self) -> float:
        return self.sms * self.cuda_macs_per_clk_per_sm * self.clock_mhz * 1e6

    @property
    def bytes_per_s(self) -> float:
        return self.dram_gbps * 1e9 * self.bandwidth_efficiency


@cache
def gpu_data() -> dict:
    return perf_data("gpu.toml")


def load_gpu_params() -> GpuParams:
    p = gpu_data()["params"]
    return GpuParams(
        launch_us=float(p["launch_us"]["value"]),
        efficiency={k: float(v) for k, v in p["efficiency"]["value"].items()},
    )


def gpu_model_version() -> str:
    return str(gpu_data()["model_version"])


def jetson_gpu(
    target: Target,
    power_mode: str | None = None,
    precision: str = "int8",
    clock_mhz: float | None = None,
) -> JetsonGpu:
    """``target``'s GPU at ``power_mode`` (``clock_mhz`` overrides the mode's GPU clock)."""
    gpu = target.gpu
    if gpu is None:
        raise TargetError(f"target '{target.name}' has no GPU")
    mode = target.power_mode(power_mode)
    if mode.gpu_mhz is None and clock_mhz is None:
        raise TargetError(f"target '{target.name}' power mode {mode.name} has no GPU clock")
    lanes = gpu_data()["facts"]["cuda_core_macs_per_lane"]
    if precision not in lanes:
        raise TargetError(f"GPU precision must be one of {', '.join(lanes)}, not {precision!r}")
    return JetsonGpu(
        target=target.name,
        arch=gpu.arch,
        power_mode=mode.name,
        clock_mhz=float(clock_mhz or mode.gpu_mhz or 0.0),
        sms=gpu.sms,
        tensor_macs_per_clk_per_sm=gpu.macs_per_clk_per_sm(precision),
        cuda_macs_per_clk_per_sm=gpu.fp32_macs_per_clk_per_sm * float(lanes[precision]),
        dram_gbps=mode.dram_gbps,
        bandwidth_efficiency=gpu.bandwidth_efficiency,
        bytes_per_elem=1 if precision == "int8" else 2,
    )


def kernel_bytes(kernel: HwLayer, bpe: int, batch: np.ndarray | int) -> np.ndarray:
    """DRAM bytes of one kernel over a batch: activations per image, weights once."""
    acts = kernel.in_elems + kernel.ew_elems + kernel.out_elems
    return (np.asarray(batch, dtype=float) * acts + kernel.weights) * bpe


def kernel_terms(
    kernel: HwLayer, gpu: JetsonGpu, params: GpuParams, batch: np.ndarray | int
) -> tuple[float, np.ndarray, np.ndarray]:
    """(launch s, compute s, memory s) of ``kernel`` for each batch in ``batch``."""
    b = np.asarray(batch, dtype=float)
    if kernel.kind in ("view", "concat"):
        zero = np.zeros_like(b)
        return 0.0, zero, zero
    eff = params.efficiency.get(gpu.arch)
    if eff is None:
        raise TargetError(f"GPU model has no fitted efficiency for architecture '{gpu.arch}'")
    peak = gpu.tensor_peak if _on_tensor_cores(kernel) else gpu.cuda_peak
    compute = kernel.macs * b / (peak * eff)
    memory = kernel_bytes(kernel, gpu.bytes_per_elem, b) / gpu.bytes_per_s
    return params.launch_us * 1e-6, compute, memory


def kernel_time(
    kernel: HwLayer, gpu: JetsonGpu, params: GpuParams, batch: np.ndarray | int
) -> np.ndarray:
    """Seconds of ``kernel`` for each batch in ``batch`` (0 for a free kernel)."""
    launch, compute, memory = kernel_terms(kernel, gpu, params, batch)
    if kernel.kind in ("view", "concat"):
        return compute
    return launch + np.maximum(compute, memory)


def network_time(
    kernels: list[HwLayer], gpu: JetsonGpu, params: GpuParams, batch: np.ndarray | int
) -> np.ndarray:
    """Seconds of one inference of ``batch`` images through ``kernels`` on the GPU alone."""
    b = np.asarray(batch, dtype=float)
    return sum((kernel_time(k, gpu, params, b) for k in kernels), np.zeros_like(b))


def _on_tensor_cores(kernel: HwLayer) -> bool:
    if kernel.kind not in ("conv", "fc"):
        return False
    channels = kernel.in_shape[0] if kernel.in_shape else 0
    return channels // max(1, kernel.groups) >= _TENSOR_CORE_MIN_CHANNELS


# --- kernels from the ONNX graph ----------------------------------------------------------------


def gpu_kernels(model: LoadedModel) -> list[HwLayer]:
    """The TensorRT-style fused GPU kernels of ``model`` in graph order (see the module doc)."""
    inits = set(model.initializers)
    producer: dict[str, int] = {}
    kernel_of: list[int] = []
    kernels: list[list[int]] = []
    nodes = model.nodes
    for i, node in enumerate(nodes):
        made_by = [producer[t] for t in node.input if t and t not in inits and t in producer]
        # The epilogue joins the kernel that produced its latest operand (a residual Add joins
        # the convolution it follows, not the block input it adds back).
        owner = kernel_of[max(made_by)] if made_by else None
        if (
            node.op_type in POINTWISE
            and owner is not None
            and nodes[kernels[owner][0]].op_type not in FREE
        ):
            kernels[owner].append(i)
            kernel_of.append(owner)
        else:
            kernels.append([i])
            kernel_of.append(len(kernels) - 1)
        for out in node.output:
            if out:
                producer[out] = i
    consumers = model.consumers()
    outputs = set(model.output_names)
    return [
        _kernel(model, [nodes[i] for i in members], consumers, outputs, inits)
        for members in kernels
    ]


def _elems(model: LoadedModel, name: str) -> int:
    shape = model.shapes.get(name, ())
    return math.prod(shape[1:]) if len(shape) >= 2 else (math.prod(shape) if shape else 1)


def _kernel(
    model: LoadedModel,
    members: list[onnx.NodeProto],
    consumers: dict[str, list[onnx.NodeProto]],
    outputs: set[str],
    inits: set[str],
) -> HwLayer:
    anchor = members[0]
    names = {n.name for n in members}
    made = {t for n in members for t in n.output if t}
    reads: list[str] = []
    for n in members:
        for t in n.input:
            if t and t not in inits and t not in made and t not in reads:
                reads.append(t)
    written = [
        t for t in made if t in outputs or any(c.name not in names for c in consumers.get(t, []))
    ]
    shapes = model.shapes
    kind = _kind(anchor, inits)
    layer = HwLayer(
        name=anchor.name,
        kind=kind,
        ops=[n.op_type for n in members],
        nodes=[n.name for n in members],
        engine="fallback",
        inputs=reads,
        output=anchor.output[0] if anchor.output else "",
    )
    main = reads[0] if reads else ""
    layer.in_shape = tuple(shapes.get(main, ())[1:])
    layer.out_shape = tuple(shapes.get(layer.output, ())[1:])
    if kind in ("view", "concat"):
        return layer
    layer.in_elems = _elems(model, main) if main else 0
    layer.ew_elems = sum(_elems(model, t) for t in reads[1:])
    layer.out_elems = sum(_elems(model, t) for t in written)
    if anchor.op_type in ("Conv", "ConvTranspose"):
        weight = shapes.get(anchor.input[1], ())
        layer.weights = math.prod(weight) if weight else 0
        layer.kernel = (int(weight[2]), int(weight[-1])) if len(weight) >= 4 else (1, 1)
        layer.groups = int(node_attrs(anchor).get("group", 1))
        out = _elems(model, anchor.output[0])
        if anchor.op_type == "ConvTranspose":
            layer.macs = layer.in_elems * (layer.weights // max(1, layer.in_shape[0]))
        else:
            per_out = layer.weights // max(1, weight[0]) if weight else 0
            layer.macs = out * per_out
    elif kind == "fc":
        weight = next(t for t in anchor.input[1:] if t in inits)
        layer.weights = math.prod(shapes.get(weight, model.initializers[weight].shape))
        out_shape = shapes.get(anchor.output[0], ())
        width = out_shape[-1] if out_shape else 1
        layer.macs = _elems(model, anchor.output[0]) * (layer.weights // max(1, width))
    return layer


def _kind(node: onnx.NodeProto, inits: set[str]) -> str:
    op = node.op_type
    if op == "Concat":
        return "concat"
    if op in FREE:
        return "view"
    if op in ("Conv", "ConvTranspose"):
        return "conv"
    if op in ("Gemm", "MatMul"):
        return "fc" if any(t in inits for t in node.input[1:]) else "sdp"
    if op in POOLS or op.startswith("Reduce"):
        return "pdp"
    if op in POINTWISE or op == "Softmax":
        return "sdp"
    return "copy"  # Resize, Transpose, Slice, Pad, Gather, ...: read and write every byte
