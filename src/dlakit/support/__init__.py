"""Per-node DLA verdicts for a target and rule set, with reasons, partitioned into segments."""

from dlakit.support.check import CheckResult, check_model
from dlakit.support.verdict import NodeVerdict, Reason

__all__ = ["CheckResult", "NodeVerdict", "Reason", "check_model"]
