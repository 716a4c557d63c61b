"""``fix_model``: run the rewrite passes to a fixed point, re-canonicalize, verify with onnxruntime.

Each round runs every pass once over the graph (in ``PASSES`` order); rounds repeat until one
changes nothing. After each pass that changed something the graph is topologically sorted,
unused initializers are dropped and shapes re-inferred, so the next pass sees a valid model.
Every pass's result is compared with the original by :mod:`dlakit.rewrite.verify`; a rewrite
that breaks it is found by bisection, undone, and refused with the measured error as its reason
(rounding can matter: a deep network may amplify the 1e-7 change of a BatchNorm fold past 1e-5).
The final, re-canonicalized model is checked once more.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import onnx

from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel
from dlakit.graph.load import canonicalize, name_nodes
from dlakit.graph.nodes import producers
from dlakit.rewrite.base import Change, Graph, Refusal, Rewrite, RewritePass, label
from dlakit.rewrite.broadcast_by_resize import BroadcastByResizePass
from dlakit.rewrite.depth_to_space import DepthToSpaceToConvTransposePass
from dlakit.rewrite.div_to_mul import DivToMulPass
from dlakit.rewrite.flatten_to_reshape import FlattenToReshapePass
from dlakit.rewrite.fold_batchnorm import FoldBatchNormPass
from dlakit.rewrite.fold_pad import FoldPadPass
from dlakit.rewrite.gather_to_conv import GatherToConvPass
from dlakit.rewrite.gemm_to_conv import GemmToConvPass
from dlakit.rewrite.global_pool_to_avgpool import GlobalPoolToAveragePoolPass
from dlakit.rewrite.hard_sigmoid import HardSigmoidPass
from dlakit.rewrite.hard_swish import HardSwishPass
from dlakit.rewrite.pin_shapes import pinned_inputs
from dlakit.rewrite.reshape_round_trip import ReshapeRoundTripPass
from dlakit.rewrite.resize_sizes_to_scales import ResizeSizesToScalesPass
from dlakit.rewrite.space_to_depth import SpaceToDepthToConvPass
from dlakit.rewrite.split_maxpool import SplitMaxPoolPass
from dlakit.rewrite.strided_slice_to_conv import StridedSliceToConvPass
from dlakit.rewrite.verify import (
    TOLERANCE,
    Verification,
    VerifyInputs,
    compare,
    random_inputs,
    run_model,
)
from dlakit.targets import Target

# Order matters only for what a pass sees: Flatten becomes Reshape before Gemm looks for the 4-D
# source, Pads fold before pools and convs are rewritten, BatchNorm folds before anything else
# touches its Conv.
PASSES: tuple[type[RewritePass], ...] = (
    FlattenToReshapePass,
    FoldPadPass,
    FoldBatchNormPass,
    GlobalPoolToAveragePoolPass,
    GemmToConvPass,
    ReshapeRoundTripPass,
    SplitMaxPoolPass,
    ResizeSizesToScalesPass,
    DepthToSpaceToConvTransposePass,
    SpaceToDepthToConvPass,
    GatherToConvPass,
    StridedSliceToConvPass,
    HardSigmoidPass,
    HardSwishPass,
    DivToMulPass,
    BroadcastByResizePass,
)
MAX_ROUNDS = 8


@dataclass
class FixResult:
    """What ``fix`` did: the rewrites applied, the ones refused, the new model, its check."""

    model: onnx.ModelProto
    rewrites: list[Rewrite]
    refusals: list[Refusal]
    verification: Verification
    nodes_before: int
    nodes_after: int
    limits: dict[str, Any] = field(default_factory=dict)

    def to_json(self, placement: dict[str, Any] | None = None) -> dict[str, Any]:
        """The report as plain data (schema ``dlakit.fix`` v2, see docs/fix.md); ``placement``
        is the DLA coverage and dlakit's placement the caller worked out (None: not computed)."""
        v = self.verification
        return {
            "schema": "dlakit.fix",
            "schema_version": 2,
            "placement": placement,
            "nodes": {"before": self.nodes_before, "after": self.nodes_after},
            "rewrites": [
                {
                    "pass": r.pass_name,
                    "before": list(r.before),
                    "after": list(r.after),
                    "description": r.description,
                }
                for r in self.rewrites
            ],
            "refusals": [
                {"pass": f.pass_name, "node": f.node, "op": f.op_type, "reason": f.reason}
                for f in self.refusals
            ],
            "verification": {
                "max_rel_error": v.max_rel_error,
                "worst_output": v.worst_output,
                "runs": v.runs,
                "inputs": v.source,
                "tolerance": TOLERANCE,
            },
            "limits": self.limits,
        }


def rewrite_limits(target: Target) -> dict[str, Any]:
    """The per-layer limits for the target's rule set, with the target's own overrides."""
    text = (resources.files("dlakit.rewrite") / "limits.toml").read_text()
    table = tomllib.loads(text)
    limits = dict(table.get(target.rule_set, table["trt"]))
    limits.update(target.rewrite_limits)
    return limits


def fix_model(
    loaded: LoadedModel, target: Target, verify_inputs: VerifyInputs | None = None
) -> FixResult:
    """Rewrite ``loaded`` for ``target`` and check the result against it with onnxruntime."""
    limits = rewrite_limits(target)
    passes = [cls(limits) for cls in PASSES]
    inputs = verify_inputs or random_inputs(loaded.proto, loaded.input_shapes)
    reference: list = []  # the original's outputs, computed on the first check

    def check(model: onnx.ModelProto) -> Verification:
        if not reference:
            reference.extend(run_model(loaded.proto, inputs))
        return compare(reference, run_model(model, inputs), inputs.source)

    model, rewrites, refusals = rewrite(loaded.proto, passes, check)
    if not rewrites:  # nothing to verify: the model is returned as it was loaded
        model = loaded.proto
        verification = Verification(0.0, "", 0, "no rewrite applied")
    else:
        model = canonicalize(model, loaded.input_shapes, loaded.path)
        verification = check(model)
    if not verification.ok:
        raise DlakitError(
            f"re-canonicalizing the rewritten model changed its function: max relative error "
            f"{verification.max_rel_error:.3g} on '{verification.worst_output}' "
            f"({inputs.source}); the model was not written"
        )
    return FixResult(
        model=model,
        rewrites=pinned_inputs(loaded) + rewrites,
        refusals=refusals,
        verification=verification,
        nodes_before=len(loaded.proto.graph.node),
        nodes_after=len(model.graph.node),
        limits=limits,
    )


Check = Callable[[onnx.ModelProto], Verification]


@dataclass
class _Candidate:
    change: Change
    record: Rewrite

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(sorted(n.name for n in self.change.remove))


def rewrite(
    model: onnx.ModelProto, passes: list[RewritePass], check: Check | None = None
) -> tuple[onnx.ModelProto, list[Rewrite], list[Refusal]]:
    """Run ``passes`` to a fixed point on a copy of ``model``; the refusals are the last round's.

    With ``check``, each pass's result is verified; rewrites that break it (found by bisection)
    are undone and refused from then on, with the measured error as the reason.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    name_nodes(model)
    model = _tidy(model)
    applied: list[Rewrite] = []
    blocked: dict[tuple[str, ...], str] = {}
    for _ in range(MAX_ROUNDS):
        refusals: list[Refusal] = []
        changed = False
        for rewrite_pass in passes:
            candidates, refused = _match(model, rewrite_pass, blocked)
            refusals += refused
            if not candidates:
                continue
            result = _apply(model, candidates)
            if check is not None and not (verdict := check(result)).ok:
                failing = _failing(model, candidates, check, verdict.max_rel_error)
                for bad, error in failing:
                    reason = (
                        f"undone: output moved by {error:.3g} (> {TOLERANCE:g}) vs the original"
                    )
                    blocked[bad.key] = reason
                    first = bad.change.remove[0]
                    refusals.append(Refusal(rewrite_pass.name, first.name, first.op_type, reason))
                bad_keys = {bad.key for bad, _ in failing}
                candidates = [c for c in candidates if c.key not in bad_keys]
                result = _apply(model, candidates) if candidates else model
            if candidates:
                model = result
                applied += [c.record for c in candidates]
                changed = True
        if not changed:
            return model, applied, refusals
    raise DlakitError(f"rewrites did not settle after {MAX_ROUNDS} rounds (a pass undoes another)")


def _match(
    model: onnx.ModelProto, rewrite_pass: RewritePass, blocked: dict[tuple[str, ...], str]
) -> tuple[list[_Candidate], list[Refusal]]:
    """Every non-overlapping match of one pass over the graph, and its refusals."""
    graph = Graph(model)
    candidates: list[_Candidate] = []
    refused: list[Refusal] = []
    gone: set[str] = set()
    for node in list(model.graph.node):
        if node.op_type not in rewrite_pass.op_types or node.domain not in ("", "ai.onnx"):
            continue
        if node.name in gone:
            continue
        result = rewrite_pass.match(graph, node)
        if isinstance(result, Refusal):
            refused.append(result)
        elif isinstance(result, Change):
            candidate = _Candidate(
                result,
                Rewrite(
                    rewrite_pass.name,
                    tuple(label(n) for n in result.remove),
                    tuple(label(n) for n in result.add),
                    result.description,
                ),
            )
            if candidate.key in blocked:
                refused.append(rewrite_pass.refuse(node, blocked[candidate.key]))
                continue
            if any(r.name in gone for r in result.remove):
                continue  # overlaps a change already taken; the next round sees it again
            gone.update(candidate.key)
            candidates.append(candidate)
    return candidates, refused


def _apply(model: onnx.ModelProto, candidates: list[_Candidate]) -> onnx.ModelProto:
    """A copy of ``model`` with the candidates' changes made, sorted and shape-inferred."""
    out = onnx.ModelProto.FromString(model.SerializeToString())
    gone = {name for c in candidates for name in c.key}
    kept = [n for n in out.graph.node if n.name not in gone]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    for candidate in candidates:
        out.graph.node.extend(candidate.change.add)
        out.graph.initializer.extend(candidate.change.initializers)
    return _tidy(out)


def _failing(
    model: onnx.ModelProto, candidates: list[_Candidate], check: Check, error: float
) -> list[tuple[_Candidate, float]]:
    """The candidates that break the check, by bisection; together they moved the output by
    ``error``. Halves that each pass alone but fail together are all refused, not guessed at."""
    if len(candidates) == 1:
        return [(candidates[0], error)]
    found = []
    for half in (candidates[: len(candidates) // 2], candidates[len(candidates) // 2 :]):
        verdict = check(_apply(model, half))
        if not verdict.ok:
            found += _failing(model, half, check, verdict.max_rel_error)
    return found or [(c, error) for c in candidates]


def _tidy(model: onnx.ModelProto) -> onnx.ModelProto:
    """Topological order, no orphan nodes or initializers, fresh shapes."""
    graph = model.graph
    wanted = {o.name for o in graph.output}
    producer_of = producers(graph.node)
    ordered: list[onnx.NodeProto] = []
    placed: set[str] = set()

    def visit(node: onnx.NodeProto) -> None:
        stack = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            if current.name in placed:
                continue
            if expanded:
                placed.add(current.name)
                ordered.append(current)
                continue
            stack.append((current, True))
            for name in reversed(current.input):
                source = producer_of.get(name)
                if source is not None and source.name not in placed:
                    stack.append((source, False))

    # Only nodes that lead to a graph output are kept: a replaced chain leaves its feeders unread.
    for name in wanted:
        if name in producer_of:
            visit(producer_of[name])
    used = {name for node in ordered for name in node.input} | wanted
    kept_inits = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(ordered)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    del graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # a pass built an invalid node: that is a dlakit bug, say which
        raise DlakitError(f"rewritten model fails shape inference: {exc}") from exc
