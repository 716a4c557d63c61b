"""DRAM contention: how the running phases of the GPU and the DLAs share the module bandwidth.

Every phase (one layer of one device) has a fixed part that moves no data (launch, layer
overhead), a compute part that overlaps its traffic, and its DRAM bytes; alone, at bandwidth
``bw``, it takes ``fixed + max(compute, bytes / bw)``. A phase *wants* the bandwidth at which it
stops being memory-bound (``bytes / compute``), at most its device's own achievable bandwidth.
Running phases share the pool max-min fairly (water filling): when what they want fits the pool
nobody slows down; beyond it, the memory-bound phases get equal shares of what is left and slow
down in proportion, while a compute-bound phase whose want fits keeps its speed. This is the
piecewise slowdown HaX-CoNN's PCCS model describes (no slowdown below a knee of external
traffic, then a slowdown growing with it), derived here from the bandwidths instead of fitted.

The pool is the module's peak bandwidth times the DLA fit's ``dram_efficiency`` (the share the
two DLAs reach together in NVIDIA's measurements, ``data/params.toml``); each device's cap is
its own achievable share (the GPU's ``bandwidth_efficiency`` in the target file).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """One layer's worth of work on one device (times at unlimited bandwidth, in seconds)."""

    fixed_s: float
    compute_s: float
    dram_bytes: float
    macs: float = 0.0  # MACs performed (the energy model's work)

    def time_at(self, bytes_per_s: float) -> float:
        if self.dram_bytes <= 0:
            return self.fixed_s + self.compute_s
        if bytes_per_s <= 0:
            return float("inf")
        return self.fixed_s + max(self.compute_s, self.dram_bytes / bytes_per_s)

    def wants(self, cap_bytes_per_s: float) -> float:
        """The bandwidth above which this phase runs no faster (bounded by the device's cap)."""
        if self.dram_bytes <= 0:
            return 0.0
        if self.compute_s <= 0:
            return cap_bytes_per_s
        return min(cap_bytes_per_s, self.dram_bytes / self.compute_s)


def share_bandwidth(wants: list[float], pool_bytes_per_s: float) -> list[float]:
    """Max-min fair shares of ``pool_bytes_per_s`` for phases that want ``wants`` each."""
    shares = [0.0] * len(wants)
    order = sorted(range(len(wants)), key=wants.__getitem__)
    left = pool_bytes_per_s
    for n, i in enumerate(order):
        fair = left / (len(order) - n)
        shares[i] = min(wants[i], fair)
        left -= shares[i]
    return shares
