"""dlakit's placement policy: advice on top of the predicted partition, never part of it.

The prediction (:func:`dlakit.partition.segments.partition`) is what TensorRT (or, on open NVDLA
targets, dlakit's compiler) does. This module proposes moves TensorRT would not make by itself;
each is a :class:`Recommendation` with a ``policy`` reason, applied only on request
(``check --apply-policy``, ``fix``'s placement).

Islands (``policy.toml``): a DLA segment fed only by fallback nodes and feeding only fallback
nodes is better on the fallback device when its handoffs cost more than its DLA compute at peak
and it holds at most a small share of the model's MACs. How much a move saves is the performance
model's business (dlakit.report.recommend prices each recommendation; ``saving_ms`` stays None
until then).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from dlakit.graph import LoadedModel
from dlakit.partition.segments import Segment
from dlakit.support.verdict import Engine, NodeVerdict, Reason
from dlakit.targets import Target


@cache
def load_policy() -> dict[str, Any]:
    return tomllib.loads((resources.files("dlakit.partition") / "policy.toml").read_text())


@dataclass
class Recommendation:
    """Move one predicted DLA segment to the fallback device."""

    reason: Reason  # kind "policy"
    segment: int  # the predicted segment it moves
    nodes: list[int]  # node indices
    handoffs: int  # tensors crossing between the segment and the fallback device
    macs: int
    engine: Engine = "fallback"  # where the nodes go
    # From the performance model (dlakit.report.recommend): the time one inference saves, and
    # its parts; None where it was not priced (or the fallback device is not modeled).
    saving_ms: float | None = None
    saving: dict[str, float] = field(default_factory=dict)
    saving_note: str | None = None
    applied: bool = False

    def as_dict(self, names: list[str]) -> dict[str, Any]:
        return {
            "rule": self.reason.rule,
            "kind": self.reason.kind,
            "segment": self.segment,
            "nodes": [names[i] for i in self.nodes],
            "engine": self.engine,
            "message": self.reason.message,
            "source": self.reason.source,
            "handoffs": self.handoffs,
            "macs": self.macs,
            "saving_ms": self.saving_ms,
            "saving": self.saving,
            "saving_note": self.saving_note,
            "applied": self.applied,
        }


def dla_macs_per_ms(target: Target) -> float:
    """The DLA's peak INT8 MACs per millisecond at the target's default power mode."""
    if target.nvdla:
        per_clk = target.nvdla.atomic_c * target.nvdla.atomic_k
    else:
        per_clk = target.dla.int8_macs_per_clk or 0
    return per_clk * target.power_mode().dla_mhz * 1e3


def islands(
    segments: list[Segment], verdicts: list[NodeVerdict], model: LoadedModel, target: Target
) -> list[Recommendation]:
    """The DLA segments of a partition the island policy would move to the fallback device."""
    policy = load_policy()
    engine_of = {o: s.engine for s in segments for o in s.outputs}
    graph_inputs = set(model.input_names)
    graph_outputs = set(model.output_names)
    rate = dla_macs_per_ms(target)
    total_macs = max(sum(v.macs for v in verdicts), 1)
    found = []
    for seg in segments:
        if seg.engine != "dla":
            continue
        fed = all(engine_of.get(t) == "fallback" for t in seg.inputs) and not graph_inputs & set(
            seg.inputs
        )
        feeds_back = not graph_outputs & set(seg.outputs)
        if not (fed and feeds_back):
            continue
        handoffs = len(seg.inputs) + len(seg.outputs)
        cost_ms = handoffs * policy["handoff_ms"]
        dla_ms = seg.macs / rate
        share = seg.macs / total_macs
        if cost_ms <= dla_ms or share > policy["island_max_fraction"]:
            continue
        reason = Reason(
            rule="partition.island",
            message=(
                f"DLA island of {len(seg.nodes)} node(s) ({seg.macs / 1e6:.2f} MMAC, "
                f"{100 * share:.1f}% of the model) between fallback nodes: its {handoffs} "
                f"handoffs (~{cost_ms:.2f} ms) cost more than its DLA compute (~{dla_ms:.3f} ms)"
            ),
            source=policy["handoff_source"],
            attribute="handoffs",
            value=handoffs,
            limit=f"DLA compute > handoff cost, or > {100 * policy['island_max_fraction']:g}% "
            "of the model's MACs",
            kind="policy",
        )
        found.append(
            Recommendation(
                reason=reason,
                segment=seg.id,
                nodes=list(seg.nodes),
                handoffs=handoffs,
                macs=seg.macs,
            )
        )
    return found
