"""Partitioning: DLA segments (loadables) and fallback segments, the check result over both,
and writing segments out."""

from dlakit.partition.check import CheckResult, check_model
from dlakit.partition.segments import Segment, partition

__all__ = ["CheckResult", "Segment", "check_model", "partition"]
