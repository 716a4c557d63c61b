"""Per-node DLA verdicts with reasons.

For every node, the target's rule set says whether it can run on the DLA; every "no" carries
the violated rule, the attribute, its value, the limit, the rule's source and the rewrite that
would fix it. The rule set's subgraph rules then look at each DLA node's DLA neighbours
(support/subgraph.py). Partitioning (dlakit.partition) groups the DLA nodes into loadables.

Every reason has a kind (:data:`ReasonKind`): what the target does (``rule``: TensorRT's rules
on Jetson, the hardware's on open NVDLA), what dlakit's own lowering cannot build where it is the
compiler (``lowering``), what the user asked for (``user``), or dlakit's placement advice
(``policy``, from dlakit.partition: a recommendation, not a prediction).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from dlakit.errors import DlakitError, TargetError
from dlakit.graph import LoadedModel
from dlakit.graph.stats import node_macs
from dlakit.support.checks import PREDICATES, NodeView, Violation
from dlakit.support.lowering import LoweringRules
from dlakit.support.rules import RuleSet, Version, in_range, load_rule_set, parse_version
from dlakit.support.subgraph import SUBGRAPH_PREDICATES
from dlakit.targets import Target

# Where a node runs: on the DLA, or on the target's fallback device (the GPU on Jetson boards,
# the host CPU beside an open NVDLA).
Engine = Literal["dla", "fallback"]
ReasonKind = Literal["rule", "lowering", "user", "policy"]


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
    kind: ReasonKind = "rule"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "kind": self.kind,
            "message": self.message,
            "source": self.source,
        }
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
    # Jetson DLAs: why dlakit's integer reference computes this DLA layer in FP32 (None: INT8 or
    # FP16 as the DLA does). Open NVDLA targets send such nodes to the fallback instead.
    modeled_fp32: Reason | None = None
    # A fallback node that keeps its INT8 tensors (pure data movement, exact on any device).
    fallback_int8: bool = False

    def to_fallback(self, reason: Reason) -> None:
        self.engine = "fallback"
        self.reasons.append(reason)

    def move_to_fallback(self, reason: Reason) -> None:
        """A move after the verdict is settled (partitioning, policy): no DLA fields remain."""
        self.to_fallback(reason)
        self.hw_engine = None
        self.precision = None
        self.modeled_fp32 = None


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
        if check["check"] == "channels_aligned" and ctx.target.nvdla is not None:
            params["atom"] = ctx.target.nvdla.memory_atomic
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


USER_SOURCE = "command line"


def node_verdicts(
    model: LoadedModel,
    target: Target,
    version: Version | None,
    *,
    fallback_layers: Iterable[str] = (),
    fp16_layers: Iterable[str] = (),
) -> list[NodeVerdict]:
    """One verdict per node, in graph order.

    ``fallback_layers`` and ``fp16_layers`` are the user's placements (as TensorRT's layer device
    types and ``--layerPrecisions``); each one shows as the node's reason or note.
    """
    if target.dla_cores == 0:
        raise TargetError(f"target '{target.name}' has no DLA to check against")
    fallback, fp16 = set(fallback_layers), set(fp16_layers)
    names = {n.name for n in model.nodes}
    unknown = sorted((fallback | fp16) - names)
    if unknown:
        raise DlakitError(f"--fallback-layers/--fp16-layers name unknown node(s): {unknown}")
    both = sorted(fallback & fp16)
    if both:
        raise DlakitError(f"node(s) {both} are in both --fallback-layers and --fp16-layers")
    rules = load_rule_set(target.rule_set)
    ctx = RuleContext(target=target, rules=rules, general=load_rule_set("general"), version=version)
    lowering = LoweringRules()
    own_compiler = target.rule_set == "nvdla"  # the lowering is the compiler of this target
    int8_only = target.dla.precisions == ("int8",)
    verdicts = []
    for node in model.nodes:
        view = NodeView(node, model, ctx.generation)
        verdict = NodeVerdict(
            name=node.name, op=node.op_type, engine="dla", macs=node_macs(node, model)
        )
        verdict.precision = "int8"
        if own_compiler:
            _nvdla_verdict(view, verdict, ctx)
        else:
            _trt_verdict(view, verdict, ctx)
        if verdict.engine == "dla":
            for reason in _run_checks(view, ctx.general.data["checks"], ctx, ""):
                verdict.to_fallback(reason)
        if verdict.engine == "dla" and node.name in fallback:
            verdict.to_fallback(
                Reason(
                    rule="user.fallback_layers",
                    message="--fallback-layers puts this node on the fallback device",
                    source=USER_SOURCE,
                    kind="user",
                )
            )
        if verdict.engine == "dla" and node.name in fp16:
            verdict.precision = "fp16"
            verdict.notes.append("--fp16-layers runs it in FP16")
        if verdict.engine == "dla" and verdict.precision == "int8":
            _lowering_verdict(view, verdict, lowering, own_compiler)
        if int8_only and verdict.engine == "dla" and verdict.precision == "fp16":
            verdict.to_fallback(
                Reason(
                    rule="precision.int8_only",
                    message=f"{target.name} computes INT8 only; this layer needs FP16",
                    source="nvdla.md §2 (nv_small: INT8 only)",
                )
            )
        verdicts.append(verdict)
    _subgraph_verdicts(model, verdicts, ctx)
    for node, verdict in zip(model.nodes, verdicts, strict=True):
        if verdict.engine == "fallback":
            verdict.hw_engine = None
            verdict.precision = None
            verdict.modeled_fp32 = None
            verdict.fallback_int8 = lowering.int8_on_fallback(
                NodeView(node, model, ctx.generation), [r.rule for r in verdict.reasons]
            )
    return verdicts


def _subgraph_verdicts(model: LoadedModel, verdicts: list[NodeVerdict], ctx: RuleContext) -> None:
    """The rule set's subgraph rules, on the DLA nodes the per-layer rules left (one pass, as
    TensorRT validates the subgraphs its per-layer decisions formed)."""
    rules = [r for r in ctx.rules.data.get("subgraph", []) if _applies(r, ctx)]
    if not rules:
        return
    on_dla = {v.name for v in verdicts if v.engine == "dla"}
    for node, verdict in zip(model.nodes, verdicts, strict=True):
        if verdict.engine != "dla":
            continue
        for rule in rules:
            violation = SUBGRAPH_PREDICATES[rule["check"]](node, model, on_dla, rule)
            if violation is not None:
                verdict.to_fallback(_violation_reason(rule, violation, rule["source"]))


def _lowering_verdict(
    view: NodeView, verdict: NodeVerdict, lowering: LoweringRules, own_compiler: bool
) -> None:
    """Apply what dlakit's lowering can build for an INT8 DLA node (see support/lowering.py)."""
    refusal = lowering.refusal(view, hardware=not own_compiler)
    if refusal is not None:
        reason = Reason(
            rule=refusal.rule,
            message=refusal.message,
            source=refusal.source,
            attribute=refusal.attribute,
            value=_jsonable(refusal.value),
            limit=refusal.limit,
            fix=refusal.fix,
            kind="lowering",
        )
        if own_compiler:
            verdict.to_fallback(reason)
        else:
            verdict.modeled_fp32 = reason
            verdict.notes.append(
                f"dlakit's integer reference computes it in FP32: {reason.message}"
            )
        return
    if lowering.precision(view.op) == "fp16":
        verdict.precision = "fp16"
        verdict.notes.append("dlakit lowers this layer in FP16 (no INT8 lookup-table form yet)")
