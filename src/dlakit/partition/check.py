"""``check_model``: verdicts, partition and summary for one model on one target."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dlakit import __version__
from dlakit.graph import LoadedModel
from dlakit.partition.segments import Segment, partition
from dlakit.support.rules import resolve_trt_version
from dlakit.support.verdict import NodeVerdict, node_verdicts
from dlakit.targets import Target

CHECK_SCHEMA = "dlakit.check"
CHECK_SCHEMA_VERSION = 2


@dataclass
class CheckResult:
    model: LoadedModel
    target: Target
    rule_set: str
    trt_version: str | None
    nodes: list[NodeVerdict]
    segments: list[Segment]
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
            "summary": self.summary,
        }


def _summary(result: CheckResult) -> dict[str, Any]:
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
    }


def check_model(
    model: LoadedModel,
    target: Target,
    trt: str | None = None,
    *,
    fallback_layers: Iterable[str] = (),
    fp16_layers: Iterable[str] = (),
) -> CheckResult:
    """Verdict per node, DLA/fallback segments and a summary for ``model`` on ``target``.

    ``fallback_layers``/``fp16_layers`` are the user's placements; they show as reasons/notes.
    """
    trt_version = None
    version = None
    if target.rule_set == "trt":
        trt_version, version = resolve_trt_version(trt, target)
    verdicts = node_verdicts(
        model, target, version, fallback_layers=fallback_layers, fp16_layers=fp16_layers
    )
    segments = partition(model, verdicts, target)
    result = CheckResult(
        model=model,
        target=target,
        rule_set=target.rule_set,
        trt_version=trt_version,
        nodes=verdicts,
        segments=segments,
    )
    result.summary = _summary(result)
    return result
