"""Per-node DLA verdicts for a target and rule set, with reasons."""

from dlakit.support.verdict import NodeVerdict, Reason, node_verdicts

__all__ = ["NodeVerdict", "Reason", "node_verdicts"]
