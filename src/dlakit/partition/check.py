"""``check_model``: verdicts, partition, recommendations and summary for one model on one target.

By default the result predicts what the target's toolchain does (TensorRT on Jetson targets,
dlakit's compiler on open NVDLA): its per-layer rules, subgraph rules and partitioning. dlakit's
placement policy (partition/policy.py) is listed beside it as recommendations; ``apply_policy``
applies them to the placement.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dlakit import __version__
from dlakit.graph import LoadedModel
from dlakit.partition.policy import Recommendation, islands
from dlakit.partition.segments import Segment, partition
from dlakit.support.rules import resolve_trt_version
from dlakit.support.verdict import NodeVerdict, node_verdicts
from dlakit.targets import Target

CHECK_SCHEMA = "dlakit.check"
CHECK_SCHEMA_VERSION = 3


@dataclass
class CheckResult:
    model: LoadedModel
    target: Target
    rule_set: str
    trt_version: str | None
    nodes: list[NodeVerdict]
    segments: list[Segment]
    recommendations: list[Recommendation] = field(default_factory=list)
    policy_applied: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def fallback_device(self) -> str:
        return self.target.fallback_device

    def to_json(self) -> dict[str, Any]:
        names = [n.name for n in self.model.nodes]
        return {
            "schema": CHECK_SCHEMA,
            "schema_version": CHECK_SCHEMA_VERSION,
            "dlakit_version": __version__,
            "model": {
                "path": str(self.model.path),
                "inputs": {k: list(v) for k, v in self.model.input_shapes.items()},
                "opset": self.model.opset,
            },
            "target": self.target.name,
            "rule_set": {"name": self.rule_set, "trt_version": self.trt_version},
            "policy_applied": self.policy_applied,
            "nodes": [
                {
                    "name": v.name,
                    "op": v.op,
                    "engine": v.engine,
                    "hw_engine": v.hw_engine,
                    "precision": v.precision,
                    "macs": v.macs,
                    "segment": v.segment,
                    "reasons": [r.as_dict() for r in v.reasons],
                    "notes": v.notes,
                    "modeled_fp32": v.modeled_fp32.as_dict() if v.modeled_fp32 else None,
                }
                for v in self.nodes
            ],
            "segments": [
                {
                    "id": s.id,
                    "engine": s.engine,
                    "nodes": [names[i] for i in s.nodes],
                    "inputs": s.inputs,
                    "outputs": s.outputs,
                    "macs": s.macs,
                }
                for s in self.segments
            ],
            "recommendations": [r.as_dict(names) for r in self.recommendations],
            "summary": self.summary,
        }


def summarize(result: CheckResult) -> dict[str, Any]:
    """The summary block of ``result`` (call again after pricing its recommendations)."""
    nodes, segments, model = result.nodes, result.segments, result.model
    on_dla = [v for v in nodes if v.engine == "dla"]
    macs_total = sum(v.macs for v in nodes)
    macs_dla = sum(v.macs for v in on_dla)
    engine_of_tensor = {t: s.engine for s in segments for t in s.outputs}
    for name in model.input_names:
        engine_of_tensor[name] = "input"
    transitions = 0
    reformat: list[str] = []
    for seg in segments:
        for name in seg.inputs:
            source = engine_of_tensor.get(name)
            if source in ("dla", "fallback") and source != seg.engine:
                transitions += 1
            if (seg.engine == "dla") != (source == "dla") and name not in reformat:
                reformat.append(name)  # crosses into or out of a DLA-native layout
    for seg in segments:
        if seg.engine == "dla":
            for name in seg.outputs:
                if name in model.output_names and name not in reformat:
                    reformat.append(name)
    dla_segments = sum(1 for s in segments if s.engine == "dla")
    limit = result.target.dla.loadables_per_core
    return {
        "nodes": len(nodes),
        "nodes_on_dla": len(on_dla),
        "nodes_on_dla_pct": round(100.0 * len(on_dla) / max(len(nodes), 1), 2),
        "macs": macs_total,
        "macs_on_dla": macs_dla,
        "macs_on_dla_pct": round(100.0 * macs_dla / macs_total, 2) if macs_total else 0.0,
        "dla_segments": dla_segments,
        "fallback_segments": len(segments) - dla_segments,
        "loadables_per_core_limit": limit,
        "within_loadable_limit": dla_segments <= limit,
        "transitions": transitions,
        "reformat_tensors": reformat,
        "fallback_device": result.fallback_device,
        "fallback_ops": dict(Counter(v.op for v in nodes if v.engine == "fallback").most_common()),
        "fp16_layers": sum(1 for v in on_dla if v.precision == "fp16"),
        "fixable_nodes": sum(
            1 for v in nodes if v.engine == "fallback" and any(r.fix for r in v.reasons)
        ),
        "policy_applied": result.policy_applied,
        "recommendations": len(result.recommendations),
        "recommended_nodes": sum(len(r.nodes) for r in result.recommendations),
        "recommended_saving_ms": _total_saving(result.recommendations),
    }


def _total_saving(recommendations: list[Recommendation]) -> float | None:
    """The sum of the priced savings; None when a recommendation is not priced."""
    if any(r.saving_ms is None for r in recommendations):
        return None
    return round(sum(r.saving_ms or 0.0 for r in recommendations), 4)


def check_model(
    model: LoadedModel,
    target: Target,
    trt: str | None = None,
    *,
    fallback_layers: Iterable[str] = (),
    fp16_layers: Iterable[str] = (),
    apply_policy: bool = False,
) -> CheckResult:
    """Verdict per node, DLA/fallback segments, recommendations and a summary.

    The placement is the prediction (see the module docstring); ``apply_policy`` moves the
    recommended nodes too and partitions again (TensorRT's rules then see them as placed on
    the fallback device). ``fallback_layers``/``fp16_layers`` are the user's placements; they
    show as reasons/notes.
    """
    trt_version = None
    version = None
    if target.rule_set == "trt":
        trt_version, version = resolve_trt_version(trt, target)
    verdicts = node_verdicts(
        model, target, version, fallback_layers=fallback_layers, fp16_layers=fp16_layers
    )
    placed = copy.deepcopy(verdicts) if apply_policy else verdicts
    segments = partition(model, placed, target)
    recommendations = islands(segments, placed, model, target)
    if apply_policy:
        placed = verdicts  # as the rules left them, before the predicted partition moved any
        for rec in recommendations:
            for i in rec.nodes:
                placed[i].move_to_fallback(rec.reason)
            rec.applied = True
        segments = partition(model, placed, target)
    result = CheckResult(
        model=model,
        target=target,
        rule_set=target.rule_set,
        trt_version=trt_version,
        nodes=placed,
        segments=segments,
        recommendations=recommendations,
        policy_applied=apply_policy,
    )
    result.summary = summarize(result)
    return result
