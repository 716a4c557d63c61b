"""Hardware targets as data: one TOML file per target under ``targets/data``, read into one
typed :class:`Target` that every stage uses."""

from dlakit.targets.load import (
    DlaSpec,
    GpuSpec,
    NvdlaSpec,
    PowerMode,
    Target,
    list_targets,
    load_target,
)

__all__ = [
    "DlaSpec",
    "GpuSpec",
    "NvdlaSpec",
    "PowerMode",
    "Target",
    "list_targets",
    "load_target",
]
