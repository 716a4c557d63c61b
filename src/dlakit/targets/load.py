"""Read target descriptions (``data/<name>.toml``); every number there carries its source."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from dlakit.errors import TargetError


@dataclass(frozen=True)
class Target:
    """A target's facts as loaded from its data file; ``raw`` holds every section."""

    name: str
    kind: str  # "jetson", "nvdla" or "host"
    description: str
    raw: dict[str, Any]

    @property
    def dla(self) -> dict[str, Any]:
        return self.raw.get("dla", {})

    @property
    def gpu(self) -> dict[str, Any]:
        return self.raw.get("gpu", {})

    @property
    def nvdla(self) -> dict[str, Any]:
        return self.raw.get("nvdla", {})

    @property
    def engines(self) -> dict[str, bool]:
        return self.nvdla.get("engines", {})

    @property
    def dla_cores(self) -> int:
        return int(self.dla.get("cores", 0))

    @property
    def rule_set(self) -> str:
        return str(self.raw.get("rule_set", "trt"))

    @property
    def power_modes(self) -> dict[str, Any]:
        return self.raw.get("power_modes", {})


def _data_dir():
    return resources.files("dlakit.targets") / "data"


def list_targets() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in _data_dir().iterdir() if p.name.endswith(".toml")
    )


@cache
def load_target(name: str) -> Target:
    """Load a target by name (``orin``, ``nv_small``, ...); unknown names list the known ones."""
    path = _data_dir() / f"{name}.toml"
    if not path.is_file():
        raise TargetError(f"unknown target '{name}' (known: {', '.join(list_targets())})")
    raw = tomllib.loads(path.read_text())
    return Target(name=raw["name"], kind=raw["kind"], description=raw["description"], raw=raw)
