"""The hardware facts the compiler needs, read from a target's data file (``targets/data``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlakit.errors import DlakitError
from dlakit.targets import load_target


@dataclass(frozen=True)
class HwConfig:
    """One open NVDLA configuration: atoms, CBUF geometry, register tree, engines."""

    target: str
    hw_tree: str
    atom: int  # MEMORY_ATOMIC_SIZE: bytes of one feature atom (channels per atom at INT8)
    atomic_c: int
    atomic_k: int
    cbuf_banks: int
    bank_width: int  # bytes per CBUF entry
    bank_depth: int  # entries per bank
    engines: dict[str, bool]

    @property
    def bank_bytes(self) -> int:
        return self.bank_width * self.bank_depth

    @property
    def cbuf_bytes(self) -> int:
        return self.cbuf_banks * self.bank_bytes

    @property
    def k_quantum(self) -> int:
        """Output channels per split step: whole kernel groups that start on a surface."""
        return math.lcm(self.atomic_k, self.atom)

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "hw_tree": self.hw_tree,
            "memory_atomic": self.atom,
            "atomic_c": self.atomic_c,
            "atomic_k": self.atomic_k,
            "cbuf_banks": self.cbuf_banks,
            "cbuf_bank_width": self.bank_width,
            "cbuf_bank_depth": self.bank_depth,
            "engines": dict(self.engines),
        }


def hw_config(target: str) -> HwConfig:
    tgt = load_target(target)
    if tgt.kind != "nvdla":
        raise DlakitError(f"--target {target}: compiling needs an open NVDLA (nv_small or nv_full)")
    n = tgt.nvdla
    return HwConfig(
        target=tgt.name,
        hw_tree=str(n["hw_tree"]),
        atom=int(n["memory_atomic"]),
        atomic_c=int(n["atomic_c"]),
        atomic_k=int(n["atomic_k"]),
        cbuf_banks=int(n["cbuf_banks"]),
        bank_width=int(n["cbuf_bank_width"]),
        bank_depth=int(n["cbuf_bank_depth"]),
        engines=dict(tgt.engines),
    )
