"""The hardware numbers one profile uses: target facts for a power mode, plus fitted parameters."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from dlakit.errors import TargetError
from dlakit.targets import Target


@dataclass(frozen=True)
class Params:
    """The model's free parameters (fitted; see ``data/params.toml``)."""

    mac_efficiency: float  # share of the MAC array's peak a well-fitting conv achieves
    dram_efficiency: float  # share of the module's peak DRAM bandwidth the DLA achieves
    layer_overhead_us: float  # fixed cost per hardware layer (Falcon programming, pipe fill)
    pdp_elems_per_clk: float  # PDP input elements per DLA clock (SDP, CDP: nv_full's ratios)
    feed_bytes_per_clk: float  # conv input fetch into CBUF not hidden behind the MACs


@dataclass(frozen=True)
class DlaConfig:
    """A DLA core at one power mode, as the cost functions see it."""

    target: str
    power_mode: str
    clock_mhz: float
    dram_gbps: float  # module peak
    macs_per_clk: int
    atomic_c: int
    atomic_k: int
    cbuf_bytes: int
    sram_bytes: int  # managed SRAM pool per core for intermediate tensors
    cores: int  # DLA cores running at once (they share the DRAM bandwidth)
    sparse: bool  # 2:4 structured sparsity on eligible INT8 convs
    bytes_per_elem: int
    sdp_ratio: float  # SDP throughput relative to PDP
    cdp_ratio: float

    @property
    def pipes(self) -> float:
        return self.macs_per_clk / (self.atomic_c * self.atomic_k)

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    def dram_bytes_per_s(self, params: Params) -> float:
        return self.dram_gbps * 1e9 * params.dram_efficiency / max(1, self.cores)


@dataclass(frozen=True)
class GpuConfig:
    target: str
    power_mode: str
    clock_mhz: float
    sms: int
    macs_per_clk_per_sm: int
    dram_gbps: float
    compute_efficiency: float
    bandwidth_efficiency: float
    launch_us: float
    bytes_per_elem: int

    @property
    def peak_macs_per_s(self) -> float:
        return self.sms * self.macs_per_clk_per_sm * self.clock_mhz * 1e6


@cache
def perf_data(name: str) -> dict[str, Any]:
    return tomllib.loads((resources.files("dlakit.perf") / "data" / name).read_text())


def load_params() -> Params:
    values = perf_data("params.toml")["params"]
    return Params(**{k: float(v["value"]) for k, v in values.items()})


def model_version() -> str:
    return str(perf_data("params.toml")["model_version"])


def dla_config(
    target: Target,
    power_mode: str | None = None,
    *,
    cores: int = 1,
    sparse: bool = False,
    precision: str = "int8",
    sram_bytes: int | None = None,
    clock_mhz: float | None = None,
) -> DlaConfig:
    """One DLA core of ``target`` at ``power_mode``, with ``cores`` sharing the DRAM."""
    dla = target.dla
    if dla.cores == 0:
        raise TargetError(f"target '{target.name}' has no DLA")
    if cores < 1 or cores > dla.cores:
        raise TargetError(f"--cores {cores}: target '{target.name}' has {dla.cores} DLA core(s)")
    if precision not in dla.precisions:
        raise TargetError(f"target '{target.name}' DLA does not run {precision}")
    if sparse and not dla.sparse_int8:
        raise TargetError(f"--sparse: target '{target.name}' has no structured-sparsity support")
    mode = target.power_mode(power_mode)
    nvdla = target.nvdla
    if nvdla:
        atomic_c, atomic_k = nvdla.atomic_c, nvdla.atomic_k
        macs = atomic_c * atomic_k
        if precision == "fp16":
            atomic_k //= 2
            macs //= 2
        cbuf = nvdla.cbuf_bytes
        sram = dla.sram_bytes if nvdla.secondary_memif else 0
    else:
        if dla.atomic_c is None or dla.atomic_k is None or dla.cbuf_bytes is None:
            raise TargetError(f"target '{target.name}' [dla] lacks atomic_c/atomic_k/cbuf_bytes")
        atomic_c, atomic_k = dla.atomic_c, dla.atomic_k
        macs = int(getattr(dla, f"{precision}_macs_per_clk") or 0)
        cbuf = dla.cbuf_bytes
        sram = dla.managed_sram_default
    ratios = perf_data("defaults.toml")["engine_ratios"]
    return DlaConfig(
        target=target.name,
        power_mode=mode.name,
        clock_mhz=float(clock_mhz or mode.dla_mhz),
        dram_gbps=mode.dram_gbps,
        macs_per_clk=macs,
        atomic_c=atomic_c,
        atomic_k=min(atomic_k, max(1, macs // atomic_c)),
        cbuf_bytes=cbuf,
        sram_bytes=int(sram if sram_bytes is None else sram_bytes),
        cores=cores,
        sparse=sparse,
        bytes_per_elem=1 if precision == "int8" else 2,
        sdp_ratio=float(ratios["sdp_per_pdp"]),
        cdp_ratio=float(ratios["cdp_per_pdp"]),
    )


def gpu_config(target: Target, power_mode: str | None, precision: str = "fp16") -> GpuConfig:
    """``target``'s GPU at ``power_mode``."""
    gpu = target.gpu
    if gpu is None:
        raise TargetError(f"target '{target.name}' has no modeled GPU")
    mode = target.power_mode(power_mode)
    if mode.gpu_mhz is None:
        raise TargetError(f"target '{target.name}' power mode {mode.name} has no GPU clock")
    return GpuConfig(
        target=target.name,
        power_mode=mode.name,
        clock_mhz=mode.gpu_mhz,
        sms=gpu.sms,
        macs_per_clk_per_sm=gpu.macs_per_clk_per_sm(precision),
        dram_gbps=mode.dram_gbps,
        compute_efficiency=gpu.compute_efficiency,
        bandwidth_efficiency=gpu.bandwidth_efficiency,
        launch_us=gpu.launch_us,
        bytes_per_elem=1 if precision == "int8" else 2,
    )


def ceil_div(a: float, b: float) -> int:
    return math.ceil(a / b)
