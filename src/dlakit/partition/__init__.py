"""Partitioning: DLA segments (loadables) and fallback segments, and writing them out."""

from dlakit.partition.segments import Segment, partition

__all__ = ["Segment", "partition"]
