"""Per-layer cost: DLA cycle model and GPU roofline.

DLA layer time = fixed overhead + CBUF fill + max(MAC compute, DRAM traffic): the MACs and the
DRAM traffic overlap fully inside a layer (double-buffered CBUF), the input fetch that starts a
layer does not, and layers run one after another.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlakit.perf.hw import DlaConfig, GpuConfig, Params, ceil_div
from dlakit.perf.layers import HwLayer

SPARSE_MIN_CHANNELS = 64  # "For DLA, you will need C > 64" (DLA-SW FAQ, dla_rules.md §1.7)
HWC4_CHANNELS = 4  # kDLA_HWC4 input: pixels padded to 4 channels


@dataclass
class LayerCost:
    layer: HwLayer
    engine: str
    macs: int  # per image
    dram_bytes: int  # per image
    compute_s: float  # MAC array (or the engine's element rate)
    memory_s: float  # DRAM traffic at the achievable bandwidth
    overhead_s: float
    time_s: float
    peak_macs_per_s: float
    fill_s: float = 0.0  # conv input fetch into the CBUF not hidden behind the MACs

    @property
    def bound(self) -> str:
        """The largest term: compute, memory (DRAM), fill (CBUF input fetch) or overhead."""
        if self.time_s == 0:
            return "free"
        terms = {
            "compute": self.compute_s,
            "memory": self.memory_s,
            "fill": self.fill_s,
            "overhead": self.overhead_s,
        }
        return max(terms, key=terms.__getitem__)

    @property
    def utilization(self) -> float:
        if self.time_s == 0 or self.peak_macs_per_s == 0:
            return 0.0
        return self.macs / (self.time_s * self.peak_macs_per_s)

    @property
    def intensity(self) -> float:
        """MACs per DRAM byte (the roofline's x axis)."""
        return self.macs / self.dram_bytes if self.dram_bytes else float("inf")


def conv_cycles(layer: HwLayer, hw: DlaConfig) -> float:
    """MAC-array cycles at full efficiency: atomic C x atomic K blocks, padding waste included."""
    ac, ak = hw.atomic_c, hw.atomic_k
    # A fully-connected layer is a convolution whose kernel covers its input (as compiled).
    c, k = layer.in_shape[0], layer.out_shape[0]
    r, s = layer.kernel
    pixels = layer.out_elems // max(1, k)
    g = layer.groups
    if layer.image_input and c <= HWC4_CHANNELS:
        # Channel extension: the kernel's width is folded into the (padded) channel dimension.
        blocks = ceil_div(HWC4_CHANNELS * s, ac) * ceil_div(k, ak)
        taps = r
    elif g > 1 and g == c and k == c:
        # Depthwise: atomic_c channels per cycle, one kernel tap each; the K side idles.
        blocks = ceil_div(c, ac)
        taps = r * s
    else:
        dense = ceil_div(c, ac) * ceil_div(k, ak)
        per_group = g * ceil_div(c // g, ac) * ceil_div(k // g, ak)
        blocks = min(dense, per_group)  # block-diagonal dense or group by group, whichever is less
        taps = r * s
    cycles = blocks * taps * pixels / hw.pipes
    if hw.sparse and hw.bytes_per_elem == 1 and c // g > SPARSE_MIN_CHANNELS:
        cycles /= 2
    return cycles


def conv_dram_bytes(layer: HwLayer, hw: DlaConfig, in_sram: set[str]) -> int:
    """Input, weights and output traffic with re-fetch when data and weights miss the CBUF."""
    bpe = hw.bytes_per_elem
    inp = layer.in_elems * bpe
    wts = layer.weights * bpe
    cbuf = hw.cbuf_bytes
    in_reads, w_reads = 1, 1
    if inp + wts > cbuf:
        c, _, w = layer.in_shape if len(layer.in_shape) == 3 else (1, 1, 1)
        stripe = c * w * layer.kernel[0] * bpe  # the rows one output row needs
        if wts + stripe > cbuf:
            chunks = ceil_div(wts, max(cbuf // 2, cbuf - stripe))
            tiles = ceil_div(inp, cbuf // 2)
            if inp * chunks + wts <= inp + wts * tiles:
                in_reads = chunks
            else:
                w_reads = tiles
    main = layer.inputs[0] if layer.inputs else ""
    traffic = wts * w_reads
    if main not in in_sram:
        traffic += inp * in_reads
    traffic += sum(_tensor_bytes(layer, t, hw) for t in layer.inputs[1:] if t not in in_sram)
    if layer.output not in in_sram:
        traffic += layer.written_elems * bpe
    return traffic


def _tensor_bytes(layer: HwLayer, name: str, hw: DlaConfig) -> int:
    return layer.ew_elems * hw.bytes_per_elem // max(1, len(layer.inputs) - 1)


def _plain_dram_bytes(layer: HwLayer, hw: DlaConfig, in_sram: set[str]) -> int:
    bpe = hw.bytes_per_elem
    traffic = 0
    if layer.inputs and layer.inputs[0] not in in_sram:
        traffic += layer.in_elems * bpe
    traffic += sum(_tensor_bytes(layer, t, hw) for t in layer.inputs[1:] if t not in in_sram)
    if layer.output not in in_sram:
        traffic += layer.out_elems * bpe
    return traffic


def dla_layer_cost(layer: HwLayer, hw: DlaConfig, params: Params, in_sram: set[str]) -> LayerCost:
    peak = hw.macs_per_clk * hw.clock_hz
    if layer.kind in ("view", "concat"):
        return LayerCost(layer, "dla", 0, 0, 0.0, 0.0, 0.0, 0.0, peak)
    feed_s = 0.0
    if layer.kind in ("conv", "fc"):
        compute = conv_cycles(layer, hw) / (hw.clock_hz * params.mac_efficiency)
        if layer.pooled_elems is not None:  # PDP on the fly takes the convolution's output
            compute = max(compute, layer.out_elems / (params.pdp_elems_per_clk * hw.clock_hz))
        traffic = conv_dram_bytes(layer, hw, in_sram)
        feed_s = layer.in_elems * hw.bytes_per_elem / (params.feed_bytes_per_clk * hw.clock_hz)
    else:
        traffic = _plain_dram_bytes(layer, hw, in_sram)
        rate = params.pdp_elems_per_clk * hw.clock_hz
        if layer.kind == "pdp":
            compute = layer.in_elems / rate
        elif layer.kind == "cdp":
            compute = layer.in_elems / (rate * hw.cdp_ratio)
        elif layer.kind == "sdp":
            compute = (layer.in_elems + layer.ew_elems) / (rate * hw.sdp_ratio)
        else:  # a copy or a RUBIK contract: data movement, bandwidth-bound
            compute = 0.0
    memory = traffic / hw.dram_bytes_per_s(params)
    overhead = params.layer_overhead_us * 1e-6
    time = overhead + max(compute, memory) + feed_s
    return LayerCost(
        layer, "dla", layer.macs, traffic, compute, memory, overhead, time, peak, feed_s
    )


def gpu_layer_cost(layer: HwLayer, gpu: GpuConfig) -> LayerCost:
    """Roofline: the larger of math at an efficiency factor and DRAM traffic, plus a launch."""
    peak = gpu.peak_macs_per_s
    if layer.kind in ("view", "concat"):
        return LayerCost(layer, "gpu", 0, 0, 0.0, 0.0, 0.0, 0.0, peak)
    bpe = gpu.bytes_per_elem
    traffic = (layer.in_elems + layer.ew_elems + layer.written_elems + layer.weights) * bpe
    compute = layer.macs / (peak * gpu.compute_efficiency)
    memory = traffic / (gpu.dram_gbps * 1e9 * gpu.bandwidth_efficiency)
    overhead = gpu.launch_us * 1e-6
    return LayerCost(
        layer,
        "gpu",
        layer.macs,
        traffic,
        compute,
        memory,
        overhead,
        overhead + max(compute, memory),
        peak,
    )
