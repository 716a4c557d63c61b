"""Group per-node verdicts into DLA loadables and fallback segments: the predicted partition.

TensorRT's partitioning rules (each one's reason is recorded on the nodes it moves):

1. Connected DLA nodes merge into one segment unless that would create a cycle through the
   fallback device (a path leaving the segment and coming back), or mix DLA batch sizes (one
   batch per loadable, TRT docs).
2. Loadables per core: beyond the target's limit (16 on Jetson), the smallest DLA segments (by
   MACs) move to the fallback device.

dlakit's own advice on top of this (islands not worth their handoffs) is in policy.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlakit.graph import LoadedModel
from dlakit.support.checks import dla_batch
from dlakit.support.verdict import Engine, NodeVerdict, Reason
from dlakit.targets import Target


@dataclass
class Segment:
    id: int
    engine: Engine
    nodes: list[int]  # node indices in graph order
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    macs: int = 0


class _Graph:
    def __init__(self, model: LoadedModel) -> None:
        nodes = model.nodes
        self.n = len(nodes)
        producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
        self.succ: list[set[int]] = [set() for _ in nodes]
        self.pred: list[set[int]] = [set() for _ in nodes]
        for i, node in enumerate(nodes):
            for name in node.input:
                j = producer.get(name)
                if j is not None and j != i:
                    self.succ[j].add(i)
                    self.pred[i].add(j)


def _creates_cycle(graph: _Graph, a: set[int], b: set[int]) -> bool:
    """Would merging groups a and b close a path that leaves them and comes back?"""
    union = a | b
    horizon = max(union)  # graph order is topological: later nodes cannot reach back
    frontier = [s for n in union for s in graph.succ[n] if s not in union and s <= horizon]
    seen = set(frontier)
    while frontier:
        node = frontier.pop()
        for nxt in graph.succ[node]:
            if nxt in union:
                return True
            if nxt not in seen and nxt <= horizon:
                seen.add(nxt)
                frontier.append(nxt)
    return False


def _group(graph: _Graph, verdicts: list[NodeVerdict], batch: list[int]) -> list[set[int]]:
    """Greedy merge of connected same-engine nodes, in graph order, refusing cycles."""
    group_of = list(range(graph.n))
    members: dict[int, set[int]] = {i: {i} for i in range(graph.n)}
    for v in range(graph.n):
        for u in sorted(graph.pred[v]):
            gu, gv = group_of[u], group_of[v]
            if gu == gv or verdicts[u].engine != verdicts[v].engine:
                continue
            if verdicts[v].engine == "dla" and batch[u] != batch[v]:
                continue
            if _creates_cycle(graph, members[gu], members[gv]):
                continue
            keep, gone = (gu, gv) if len(members[gu]) >= len(members[gv]) else (gv, gu)
            for node in members[gone]:
                group_of[node] = keep
            members[keep] |= members.pop(gone)
    return [members[g] for g in sorted(members, key=lambda g: min(members[g]))]


def _order(graph: _Graph, groups: list[set[int]]) -> list[set[int]]:
    """Topological order of the condensed graph (acyclic by construction)."""
    index = {n: gi for gi, g in enumerate(groups) for n in g}
    deps = [{index[p] for n in g for p in graph.pred[n]} - {gi} for gi, g in enumerate(groups)]
    done: set[int] = set()
    ordered: list[set[int]] = []
    pending = list(range(len(groups)))
    while pending:
        ready = [g for g in pending if deps[g] <= done]
        ready.sort(key=lambda g: min(groups[g]))
        first = ready[0]
        ordered.append(groups[first])
        done.add(first)
        pending.remove(first)
    return ordered


def _segments(
    model: LoadedModel, graph: _Graph, verdicts: list[NodeVerdict], groups: list[set[int]]
) -> list[Segment]:
    nodes = model.nodes
    graph_outputs = set(model.output_names)
    initializers = set(model.initializers)
    consumers_of: dict[str, set[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            if name:
                consumers_of.setdefault(name, set()).add(i)
    segments = []
    for sid, group in enumerate(_order(graph, groups)):
        ordered = sorted(group)
        produced = {o for i in ordered for o in nodes[i].output if o}
        inputs: list[str] = []
        for i in ordered:
            for name in nodes[i].input:
                if (
                    name
                    and name not in produced
                    and name not in initializers
                    and name not in inputs
                ):
                    inputs.append(name)
        outputs = [
            o
            for i in ordered
            for o in nodes[i].output
            if o and (o in graph_outputs or consumers_of.get(o, set()) - group)
        ]
        segment = Segment(
            id=sid,
            engine=verdicts[ordered[0]].engine,
            nodes=ordered,
            inputs=inputs,
            outputs=outputs,
            macs=sum(verdicts[i].macs for i in ordered),
        )
        for i in ordered:
            verdicts[i].segment = sid
        segments.append(segment)
    return segments


def _enforce_loadable_limit(
    segments: list[Segment], verdicts: list[NodeVerdict], target: Target
) -> bool:
    limit = target.dla.loadables_per_core
    dla = [s for s in segments if s.engine == "dla"]
    if len(dla) <= limit:
        return False
    for seg in sorted(dla, key=lambda s: s.macs)[: len(dla) - limit]:
        reason = Reason(
            rule="partition.loadables",
            message=(
                f"{len(dla)} DLA segments exceed the {limit} loadables a DLA core can hold; "
                f"the smallest ({seg.macs / 1e6:.2f} MMAC) runs on the fallback device"
            ),
            source="TRT docs dla-layer-restrictions: 16 DLA loadables per core (dla_rules.md §2.1)",
            attribute="DLA segments",
            value=len(dla),
            limit=f"<= {limit}",
        )
        for i in seg.nodes:
            verdicts[i].move_to_fallback(reason)
    return True


def partition(model: LoadedModel, verdicts: list[NodeVerdict], target: Target) -> list[Segment]:
    """Segments in execution order; updates ``verdicts`` for nodes the rules move."""
    graph = _Graph(model)
    batch = [dla_batch(model.shapes.get(n.output[0])) if n.output else 1 for n in model.nodes]
    while True:  # every move shrinks the DLA side, so this ends
        segments = _segments(model, graph, verdicts, _group(graph, verdicts, batch))
        if not _enforce_loadable_limit(segments, verdicts, target):
            return segments
