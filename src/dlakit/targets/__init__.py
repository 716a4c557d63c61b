"""Hardware targets as data: one TOML file per target under ``targets/data``."""

from dlakit.targets.load import Target, list_targets, load_target

__all__ = ["Target", "list_targets", "load_target"]
