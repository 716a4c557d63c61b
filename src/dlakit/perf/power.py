"""Accelerator energy per device and power mode, for the planner's watts and images per joule.

Energy follows the work: a device spends ``e x v(f)`` joules per MAC it performs, ``v`` the
voltage effect of its clock ``f`` (``v(f) = (1 + c f^2) / (1 + c)``, f in GHz, 1 at 1 GHz),
and the GPU also draws a static ``(SMs / 16) x static_w`` while busy. Seed 001's table of the
DLA's perf/W relative to the GPU's is nearly the same for every network at one power mode
(3.5-4.3x at MAXN), which energy per operation explains and power per busy second does not.

* DLA: ``e`` from NVIDIA's "best-in-class peak efficiency of 7.9 TOPS/W" for the Jetson AGX
  Xavier DLA at its 1395.2 MHz maximum (NVDLA blog and jetson_benchmarks clock, via
  perf_calibration.md), the same per MAC on every DLA.
* GPU: ``e``, ``static_w`` and ``c`` fitted (``python -m dlakit.perf.power_fit``) to seed 001's
  dense rows on Jetson AGX Orin 64GB (accelerator power only, MAXN/50W/30W/15W), with the
  images/s of both devices from dlakit's models at the table's batches. Other GPUs use the
  same numbers scaled by their SMs (an extrapolation: the table is Orin's only).

Idle devices draw nothing (the table is accelerator power).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from dlakit.perf.hw import perf_data
from dlakit.targets import Target

_REFERENCE_SMS = 16  # the fit's GPU: Jetson AGX Orin 64GB


@dataclass(frozen=True)
class PowerModel:
    dla_tops_per_watt: float  # at dla_reference_mhz
    dla_reference_mhz: float
    gpu_mac_joules_1ghz: float  # GPU energy per MAC at 1 GHz
    gpu_static_w: float  # a busy 16-SM GPU
    voltage_c: float

    def voltage(self, mhz: float) -> float:
        ghz = mhz / 1e3
        return (1 + self.voltage_c * ghz * ghz) / (1 + self.voltage_c)

    def dla_joules_per_mac(self, target: Target, power_mode: str | None = None) -> float:
        at_reference = 2.0 / (self.dla_tops_per_watt * 1e12)  # 2 ops per MAC
        mhz = target.power_mode(power_mode).dla_mhz
        return at_reference * self.voltage(mhz) / self.voltage(self.dla_reference_mhz)

    def gpu_joules_per_mac(self, target: Target, power_mode: str | None = None) -> float:
        mhz = target.power_mode(power_mode).gpu_mhz or 0.0
        return self.gpu_mac_joules_1ghz * self.voltage(mhz)

    def gpu_static_watts(self, target: Target) -> float:
        return self.gpu_static_w * (target.gpu.sms if target.gpu else 0) / _REFERENCE_SMS


@cache
def load_power_model() -> PowerModel:
    data = perf_data("power.toml")
    gpu = data["gpu"]
    return PowerModel(
        dla_tops_per_watt=float(data["dla"]["tops_per_watt"]),
        dla_reference_mhz=float(data["dla"]["reference_mhz"]),
        gpu_mac_joules_1ghz=float(gpu["joules_per_mac"]["value"]),
        gpu_static_w=float(gpu["static_w"]["value"]),
        voltage_c=float(gpu["voltage_c"]["value"]),
    )
