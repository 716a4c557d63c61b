"""The target the compiler works for: an open NVDLA configuration (``targets/data``)."""

from __future__ import annotations

from dlakit.errors import DlakitError
from dlakit.targets import Target, load_target


def nvdla_target(name: str) -> Target:
    """The open NVDLA target ``name``; any other target is refused by name."""
    target = load_target(name)
    if target.nvdla is None:
        raise DlakitError(f"--target {name}: compiling needs an open NVDLA (nv_small or nv_full)")
    return target
