"""Partitioning: DLA segments (loadables) and fallback segments, the check result over both,
dlakit's placement recommendations, and writing segments out."""

from dlakit.partition.check import CheckResult, check_model, summarize
from dlakit.partition.policy import Recommendation
from dlakit.partition.segments import Segment, partition

__all__ = ["CheckResult", "Recommendation", "Segment", "check_model", "partition", "summarize"]
