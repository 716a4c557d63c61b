"""What dlakit's lowering can express, as verdict data (``rules/lowering.toml``).

The target's rules decide whether a node may run on the DLA. This module adds what dlakit's own
lowering (the integer reference and the NVDLA compiler) can build for it, so that no later stage
changes a node's engine or precision without a reason ``check`` already printed:

* on open NVDLA targets a node the lowering cannot express goes to the fallback device, with the
  lowering's rule as the reason (the lowering is the compiler there);
* on Jetson DLAs it stays on the DLA, and the refusal is kept as the node's modeling note: the
  integer reference computes that layer in FP32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlakit.support.checks import PREDICATES, NodeView
from dlakit.support.rules import RuleSet, load_rule_set, rule_check

LOWERING_SOURCE = "support/rules/lowering.toml (dlakit's lowering)"


@dataclass(frozen=True)
class Refusal:
    """Why the lowering has no INT8 form for a node."""

    rule: str
    message: str
    attribute: str | None = None
    value: Any = None
    limit: str | None = None
    fix: str | None = None
    source: str = LOWERING_SOURCE


class LoweringRules:
    """The lowering table, with the hardware checks of the configuration Jetson DLAs are
    modeled as (``modeled_as``) resolved by id."""

    def __init__(self) -> None:
        self.table: RuleSet = load_rule_set("lowering")

    @property
    def modeled_as(self) -> str:
        return str(self.table.data["modeled_as"])

    def precision(self, op: str) -> str | None:
        """``int8`` or ``fp16`` as the lowering builds ``op``; None when it has no form."""
        entry = self.table.ops.get(op)
        return None if entry is None else str(entry["precision"])

    def refusal(self, view: NodeView, *, hardware: bool) -> Refusal | None:
        """The first lowering condition ``view`` fails; ``hardware`` adds the modeled
        configuration's limits (for Jetson DLAs, whose own rules are TensorRT's)."""
        entry = self.table.ops.get(view.op)
        if entry is None or view.node.domain not in ("", "ai.onnx"):
            return Refusal(
                rule="lower.op",
                message=f"dlakit's lowering has no form for {view.op}",
                attribute="op",
                value=view.op,
            )
        checks = [*self.table.data.get("checks", []), *entry.get("checks", [])]
        if hardware:
            checks += [rule_check("nvdla", i) for i in entry.get("hardware", [])]
        for check in checks:
            violation = PREDICATES[check["check"]](view, check)
            if violation is not None:
                return Refusal(
                    rule=check["id"],
                    message=check["message"],
                    attribute=violation.attribute,
                    value=violation.value,
                    limit=violation.limit,
                    fix=check.get("fix"),
                    source=check.get("source", LOWERING_SOURCE),
                )
        return None

    def int8_on_fallback(self, view: NodeView, reasons: list[str]) -> bool:
        """Whether a fallback node keeps its INT8 tensors (pure data movement, exact anywhere)."""
        entry = self.table.ops.get(view.op, {})
        rule = entry.get("fallback_int8")
        if rule is None:
            return False
        if rule != "always" and not set(reasons) <= set(rule):
            return False
        return self.refusal(view, hardware=False) is None
