"""Read target descriptions (``data/<name>.toml``) into one typed :class:`Target`.

Every stage reads a target through this module only: the support rules, the partitioner, the
lowering, the compiler, the simulator and the performance model see the same numbers, each with
its source in the data file. A key the data file has and this module does not know, or a missing
required key, is an error naming the file and the key, so a typo cannot silently change a result.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

from dlakit.errors import TargetError

FallbackDevice = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class PowerMode:
    """Clocks and DRAM bandwidth of one power mode (an nvpmodel mode, or an assumed point)."""

    name: str
    dla_mhz: float
    dram_gbps: float
    source: str
    gpu_mhz: float | None = None


@dataclass(frozen=True)
class DlaSpec:
    """What TensorRT and the performance model know of a target's DLA cores."""

    cores: int
    precisions: tuple[str, ...]
    version: str = ""
    loadables_per_core: int = 16
    max_batch: int = 1
    max_dim: int = 8192
    max_subgraph_bytes: int | None = None
    int8_macs_per_clk: int | None = None
    fp16_macs_per_clk: int | None = None
    sparse_int8: bool = False
    sram_bytes: int = 0
    managed_sram_default: int = 0
    # Performance-model geometry of Jetson DLAs (assumptions, see the data files); open NVDLA
    # targets take theirs from [nvdla].
    atomic_c: int | None = None
    atomic_k: int | None = None
    cbuf_bytes: int | None = None
    source: str = ""


@dataclass(frozen=True)
class GpuSpec:
    """A Jetson GPU, as the performance model sees it."""

    arch: str
    sms: int
    int8_macs_per_clk_per_sm: int
    fp16_macs_per_clk_per_sm: int
    fp32_macs_per_clk_per_sm: int
    compute_efficiency: float
    bandwidth_efficiency: float
    launch_us: float
    source: str = ""

    def macs_per_clk_per_sm(self, precision: str) -> int:
        return int(getattr(self, f"{precision}_macs_per_clk_per_sm"))


@dataclass(frozen=True)
class NvdlaSpec:
    """One open NVDLA configuration (nvdla/hw spec/defs): atoms, CBUF geometry, engines."""

    hw_tree: str  # register map: "v1" (nvdlav1, nv_full) or "v2" (master, nv_small)
    atomic_c: int
    atomic_k: int
    memory_atomic: int  # MEMORY_ATOMIC_SIZE: bytes of one feature atom (channels at INT8)
    cbuf_banks: int
    cbuf_bank_width: int  # bytes per CBUF entry
    cbuf_bank_depth: int  # entries per bank
    mac_result_width: int
    cacc_acc_width: int
    sdp_throughput: int
    pdp_throughput: int
    cdp_throughput: int
    primary_memif_bits: int
    primary_memif_latency: int
    secondary_memif: bool
    mem_address_width: int
    engines: Mapping[str, bool] = field(default_factory=dict)
    sdp_ew_throughput: int | None = None
    atomic_k_int16: int | None = None  # MAC_ATOMIC_K for INT16/FP16 (None: INT8-only)

    @property
    def bank_bytes(self) -> int:
        return self.cbuf_bank_width * self.cbuf_bank_depth

    @property
    def cbuf_bytes(self) -> int:
        return self.cbuf_banks * self.bank_bytes

    @property
    def k_quantum(self) -> int:
        """Output channels per split step: whole kernel groups that start on a surface."""
        return math.lcm(self.atomic_k, self.memory_atomic)

    @property
    def k_quantum_fp16(self) -> int:
        """The same for FP16: kernel groups of ``atomic_k_int16``, half as many channels per
        surface (an FP16-less configuration has no FP16 split)."""
        return math.lcm(self.atomic_k_int16 or self.atomic_k, self.memory_atomic // 2)

    def has(self, engine: str) -> bool:
        return bool(self.engines.get(engine, False))

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["engines"] = dict(self.engines)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str) -> NvdlaSpec:
        return _build(cls, dict(doc), where)


@dataclass(frozen=True)
class Target:
    """A target's facts, typed; ``dla.cores == 0`` means no DLA (the ``host`` target)."""

    name: str
    kind: Literal["jetson", "nvdla", "host"]
    description: str
    rule_set: str
    fallback_device: FallbackDevice  # where nodes the DLA cannot run go
    dla: DlaSpec
    gpu: GpuSpec | None = None
    nvdla: NvdlaSpec | None = None
    power_modes: Mapping[str, PowerMode] = field(default_factory=dict)
    default_power_mode: str | None = None
    default_trt: str | None = None
    dla_generation: str | None = None
    rewrite_limits: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dla_cores(self) -> int:
        return self.dla.cores

    @property
    def engines(self) -> Mapping[str, bool]:
        """The NVDLA blocks present (empty for Jetson DLAs, whose blocks are not published)."""
        return self.nvdla.engines if self.nvdla else {}

    def power_mode(self, name: str | None = None) -> PowerMode:
        """``name``, or the default mode; an unknown mode lists the known ones."""
        mode = name or self.default_power_mode or next(iter(self.power_modes), None)
        if mode not in self.power_modes:
            known = ", ".join(self.power_modes) or "none"
            raise TargetError(f"target '{self.name}' has no power mode '{mode}' (it has: {known})")
        return self.power_modes[mode]


def _build(cls, doc: dict[str, Any], where: str):
    """``cls(**doc)`` with unknown and missing keys named, and lists made tuples."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(doc) - set(known))
    if unknown:
        raise TargetError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        obj = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()})
    except TypeError as exc:
        raise TargetError(f"{where}: {exc}") from None
    return obj


def _data_dir():
    return resources.files("dlakit.targets") / "data"


def list_targets() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in _data_dir().iterdir() if p.name.endswith(".toml")
    )


def parse_target(raw: dict[str, Any], where: str) -> Target:
    """Build a :class:`Target` from one data file's contents (``where`` names it in errors)."""
    raw = dict(raw)
    dla = _build(DlaSpec, raw.pop("dla", {"cores": 0, "precisions": []}), f"{where} [dla]")
    gpu_doc = raw.pop("gpu", None)
    gpu = _build(GpuSpec, gpu_doc, f"{where} [gpu]") if gpu_doc else None
    nvdla_doc = raw.pop("nvdla", None)
    nvdla = None
    if nvdla_doc:
        nvdla_doc = dict(nvdla_doc)
        nvdla_doc["engines"] = MappingProxyType(dict(nvdla_doc.get("engines", {})))
        nvdla = _build(NvdlaSpec, nvdla_doc, f"{where} [nvdla]")
    modes = {
        name: _build(PowerMode, {"name": name, **doc}, f"{where} [power_modes.{name}]")
        for name, doc in raw.pop("power_modes", {}).items()
    }
    raw["rewrite_limits"] = MappingProxyType(dict(raw.get("rewrite_limits", {})))
    return _build(
        Target,
        {**raw, "dla": dla, "gpu": gpu, "nvdla": nvdla, "power_modes": MappingProxyType(modes)},
        where,
    )


@cache
def load_target(name: str) -> Target:
    """Load a target by name (``orin``, ``nv_small``, ...); unknown names list the known ones."""
    path = _data_dir() / f"{name}.toml"
    if not path.is_file():
        raise TargetError(f"unknown target '{name}' (known: {', '.join(list_targets())})")
    return parse_target(tomllib.loads(path.read_text()), f"targets/data/{name}.toml")
