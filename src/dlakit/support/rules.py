"""Rule sets as data: loading, TensorRT version resolution and version-range matching."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from dlakit.errors import TargetError
from dlakit.targets import Target

Version = tuple[int, int, int]
_VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}$")
_RANGE_RE = re.compile(r"^(>=|<=|>|<|==)?\s*([\d.]+)$")


def parse_version(text: str) -> Version:
    parts = [int(p) for p in text.split(".")]
    return tuple([*parts, 0, 0, 0][:3])  # type: ignore[return-value]


def in_range(version: Version, spec: str | None) -> bool:
    """``spec`` like ``">=8.4,<11.0"``; None or empty matches every version."""
    if not spec:
        return True
    for clause in spec.split(","):
        match = _RANGE_RE.match(clause.strip())
        if not match:
            raise ValueError(f"bad version range '{spec}'")
        op, bound = match.group(1) or "==", parse_version(match.group(2))
        ok = {
            ">=": version >= bound,
            "<=": version <= bound,
            ">": version > bound,
            "<": version < bound,
            "==": version == bound,
        }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class RuleSet:
    name: str
    data: dict[str, Any]

    @property
    def ops(self) -> dict[str, dict[str, Any]]:
        return self.data.get("ops", {})


@cache
def load_rule_set(name: str) -> RuleSet:
    path = resources.files("dlakit.support") / "rules" / f"{name}.toml"
    if not path.is_file():
        raise TargetError(f"unknown rule set '{name}'")
    return RuleSet(name=name, data=tomllib.loads(path.read_text()))


def rule_check(rule_set: str, check_id: str) -> dict[str, Any]:
    """The check ``check_id`` of ``rule_set`` (first op that lists it), for code that must honour
    the same limit the rules state, e.g. the lowering's PDP window."""
    for entry in load_rule_set(rule_set).ops.values():
        for check in entry.get("checks", []):
            if check["id"] == check_id:
                return {**check, "source": check.get("source", entry.get("source", ""))}
    raise KeyError(f"rule set {rule_set} has no check {check_id}")


def resolve_trt_version(requested: str | None, target: Target) -> tuple[str, Version]:
    """Map ``--trt`` (``8.6``, ``10``, ``8.6.12``) to a release; refuse versions without DLA."""
    rules = load_rule_set("trt").data
    text = (requested or target.default_trt or rules["default_version"]).strip()
    if not _VERSION_RE.match(text):
        raise TargetError(f"--trt '{text}' is not a TensorRT version (e.g. 8.5, 8.6, 10.7)")
    full = rules["aliases"].get(text, text)
    version = parse_version(full)
    for entry in rules.get("no_dla", []):
        applies = "targets" not in entry or target.dla_generation in entry["targets"]
        if applies and in_range(version, entry["versions"]):
            raise TargetError(f"TensorRT {text} on {target.name}: {entry['message']}")
    if not any(in_range(version, spec) for spec in rules["supported"]):
        known = ", ".join(rules["aliases"])
        raise TargetError(f"TensorRT {text} has no DLA support dlakit knows of (try {known})")
    return full, version
