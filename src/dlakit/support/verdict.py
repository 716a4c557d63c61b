"""Per-node DLA verdicts with reasons.

For every node, the target's rule set says whether it can run on the DLA; every "no" carries
the violated rule, the attribute, its value, the limit, the rule's source and the rewrite that
would fix it. Partitioning (dlakit.partition) then groups the DLA nodes into loadables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dlakit.graph import LoadedModel
from dlakit.graph.stats import node_macs
from dlakit.support.checks import PREDICATES, NodeView, Violation
from dlakit.support.rules import RuleSet, Version, in_range, load_rule_set, parse_version
from dlakit.targets import Target

# Where a node runs: on the DLA, or on the target's fallback device (the GPU on Jetson boards,
# the host CPU beside an open NVDLA).
Engine = Literal["dla", "fallback"]


@dataclass
class Reason:
    """Why a node does not run on the DLA."""

    rule: str
    message: str
    source: str
    attribute: str | None = None
    value: Any = None
    limit: str | None = None
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "message": self.message, "source": self.source}
        for key in ("attribute", "value", "limit", "fix"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass
class NodeVerdict:
    name: str
    op: str
    engine: Engine  # "fallback" runs on the target's fallback device (Target.fallback_device)
    reasons: list[Reason] = field(default_factory=list)
    hw_engine: str | None = None  # the DLA block that runs it (conv, sdp, pdp, ...)
    precision: str | None = None  # "int8", or "fp16" where the DLA upgrades INT8 to FP16
    macs: int = 0
    notes: list[str] = field(default_factory=list)
    segment: int | None = None

    def to_fallback(self, reason: Reason) -> None:
        self.engine = "fallback"
        self.reasons.append(reason)


@dataclass(frozen=True)
class RuleContext:
    target: Target
    rules: RuleSet
    general: RuleSet
    version: Version | None  # TensorRT version for the "trt" rule set

    @property
    def generation(self) -> str:
        return self.target.dla_generation or self.target.name


def _violation_reason(check: dict[str, Any], v: Violation, source: str) -> Reason:
    return Reason(
        rule=check["id"],
        message=check["message"],
        source=check.get("source", source),
        attribute=v.attribute,
        value=_jsonable(v.value),
        limit=v.limit,
        fix=check.get("fix"),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def _applies(check: dict[str, Any], ctx: RuleContext) -> bool:
    scoped = "targets" in check and check["check"] != "target_in"
    if scoped and ctx.generation not in check["targets"]:
        return False
    if "versions" in check and ctx.version is not None:
        return in_range(ctx.version, check["versions"])
    return True


def _run_checks(
    view: NodeView, checks: list[dict[str, Any]], ctx: RuleContext, source: str
) -> list[Reason]:
    reasons = []
    for check in checks:
        if not _applies(check, ctx):
            continue
        params = dict(check)
        if check["check"] == "max_batch":
            params["limit"] = ctx.target.dla.max_batch
        violation = PREDICATES[check["check"]](view, params)
        if violation is not None:
            reasons.append(_violation_reason(check, violation, source))
    return reasons


def _trt_verdict(view: NodeView, verdict: NodeVerdict, ctx: RuleContext) -> None:
    entry = ctx.rules.ops.get(view.op)
    if view.node.domain not in ("", "ai.onnx"):
        entry = None
    if entry is None:
        rfe = ctx.rules.data.get("rfe", {})
        if view.op in rfe.get("ops", []):
            message = f"{view.op} is native in the DLA software but not exposed by TensorRT (RFE)"
            source = rfe["source"]
        else:
            message = f"{view.op} is not in the DLA operator matrix: no TensorRT DLA layer for it"
            source = "dla_rules.md §1.2 (DLA-SW ONNX operator matrix)"
        verdict.to_fallback(Reason(rule="op.unsupported", message=message, source=source))
        return
    source = entry.get("source", "")
    status = entry.get("status", "native")
    if status != "native":
        verdict.to_fallback(
            Reason(
                rule=f"op.{status}",
                message=entry.get("message", f"{view.op} has no DLA layer in TensorRT"),
                source=source,
                fix=entry.get("fix"),
            )
        )
        return
    since = entry.get("since")
    if since and ctx.version is not None and ctx.version < parse_version(since):
        verdict.to_fallback(
            Reason(
                rule="op.version",
                message=f"{view.op} reaches the DLA in TensorRT {since}",
                source=source,
                attribute="TensorRT version",
                value=".".join(map(str, ctx.version)),
                limit=f">= {since}",
                fix=entry.get("since_fix"),
            )
        )
        return
    verdict.hw_engine = entry.get("engine")
    for reason in _run_checks(view, entry.get("checks", []), ctx, source):
        verdict.to_fallback(reason)
    if entry.get("int8") == "fp16":
        verdict.precision = "fp16"
        verdict.notes.append("INT8 is upgraded to FP16 on the DLA for this layer")
    if entry.get("note"):
        verdict.notes.append(entry["note"])


def _nvdla_verdict(view: NodeView, verdict: NodeVerdict, ctx: RuleContext) -> None:
    entry = ctx.rules.ops.get(view.op)
    if entry is None or view.node.domain not in ("", "ai.onnx"):
        verdict.to_fallback(
            Reason(
                rule="op.unsupported",
                message=f"no NVDLA engine computes {view.op}",
                source="nvdla.md §1 (units) and §9.2 (compiler support matrix)",
            )
        )
        return
    source = entry.get("source", "")
    engine = entry["engine"]
    if len(view.data_inputs()) >= 2 and "engine_if_two_tensors" in entry:
        engine = entry["engine_if_two_tensors"]
    verdict.hw_engine = engine
    present = ctx.target.engines
    needed = "sdp_bs" if engine == "sdp" else engine
    if engine != "memory" and not present.get(needed, False):
        name = ctx.rules.data["engine_names"][engine]
        verdict.to_fallback(
            Reason(
                rule="engine.absent",
                message=f"{ctx.target.name} has no {name}",
                source=f"targets/data/{ctx.target.name}.toml [nvdla.engines]; nvdla.md §2",
                attribute="engine",
                value=engine,
                limit="present in the configuration",
            )
        )
        return
    for reason in _run_checks(view, entry.get("checks", []), ctx, source):
        verdict.to_fallback(reason)
    if entry.get("note"):
        verdict.notes.append(entry["note"])


def node_verdicts(model: LoadedModel, target: Target, version: Version | None) -> list[NodeVerdict]:
    """One verdict per node, in graph order."""
    if target.dla_cores == 0:
        from dlakit.errors import TargetError

        raise TargetError(f"target '{target.name}' has no DLA to check against")
    rules = load_rule_set(target.rule_set)
    ctx = RuleContext(target=target, rules=rules, general=load_rule_set("general"), version=version)
    int8_only = target.dla.precisions == ("int8",)
    verdicts = []
    for node in model.nodes:
        view = NodeView(node, model, ctx.generation)
        verdict = NodeVerdict(
            name=node.name, op=node.op_type, engine="dla", macs=node_macs(node, model)
        )
        verdict.precision = "int8"
        if target.rule_set == "nvdla":
            _nvdla_verdict(view, verdict, ctx)
        else:
            _trt_verdict(view, verdict, ctx)
        if verdict.engine == "dla":
            for reason in _run_checks(view, ctx.general.data["checks"], ctx, ""):
                verdict.to_fallback(reason)
        if int8_only and verdict.precision == "fp16":
            verdict.to_fallback(
                Reason(
                    rule="precision.int8_only",
                    message=f"{target.name} computes INT8 only; this layer needs FP16",
                    source="nvdla.md §2 (nv_small: INT8 only)",
                )
            )
        if verdict.engine == "fallback":
            verdict.hw_engine = None
            verdict.precision = None
        verdicts.append(verdict)
    return verdicts
