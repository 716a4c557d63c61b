"""Subgraph rules: what TensorRT's DLA compiler refuses for what a layer is connected to.

After the per-layer rules, TensorRT hands each DLA subgraph to the DLA compiler, which validates
it layer by layer ("Validation failed for DLA layer: X. Switching to GPU fallback."); a layer that
passed its own checks can fail there because of its neighbours on the DLA. The rules are the rule
set's ``[[subgraph]]`` tables; each names a predicate registered here, which sees the node, the
model and the names of the nodes the per-layer rules left on the DLA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import onnx

from dlakit.graph import LoadedModel
from dlakit.support.checks import Violation

SubgraphPredicate = Callable[
    [onnx.NodeProto, LoadedModel, set[str], dict[str, Any]], Violation | None
]
SUBGRAPH_PREDICATES: dict[str, SubgraphPredicate] = {}


def subgraph_predicate(name: str) -> Callable[[SubgraphPredicate], SubgraphPredicate]:
    def register(fn: SubgraphPredicate) -> SubgraphPredicate:
        SUBGRAPH_PREDICATES[name] = fn
        return fn

    return register


def neighbours(node: onnx.NodeProto, model: LoadedModel) -> list[onnx.NodeProto]:
    """The nodes that produce ``node``'s inputs and read its outputs, in that order."""
    producers, consumers = model.producers(), model.consumers()
    found = [producers[n] for n in node.input if n in producers]
    found += [c for o in node.output if o for c in consumers.get(o, [])]
    return found


@subgraph_predicate("dla_neighbour_op")
def dla_neighbour_op(
    node: onnx.NodeProto, model: LoadedModel, on_dla: set[str], p: dict[str, Any]
) -> Violation | None:
    """A node of ``p["ops"]`` with a DLA neighbour whose op is one of ``p["neighbours"]``."""
    if node.op_type not in p["ops"]:
        return None
    for other in neighbours(node, model):
        if other.name in on_dla and other.op_type in p["neighbours"]:
            return Violation(
                "DLA neighbour",
                f"{other.name} ({other.op_type})",
                "no " + " / ".join(p["neighbours"]) + " directly connected on the DLA",
            )
    return None
