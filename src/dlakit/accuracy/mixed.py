"""Mixed precision by tensor: which INT8 tensors to move to FP16, and what each move buys.

Moving a tensor to FP16 moves its producer and every consumer together (the layers that write
and read it), so the tensor itself never exists in INT8 (TensorRT's per-layer precisions do the
same when a layer and its neighbours are set to FP16; one convolution alone in FP16, between
INT8 neighbours, keeps both of its tensors quantized). The search is greedy, as Polygraphy's
``debug precision`` narrows down layers: each step ranks the INT8 tensors by the SQNR they lose
against the tensors their producer reads, evaluates the ``candidates`` worst ones moved to FP16
on the search inputs, and keeps the one with the largest output SQNR gain per MAC moved, while
the FP16 share of the model's MACs stays within ``budget``. Every step records the output SQNR,
the agreement (all and confident inputs), the FP16 share of the MACs and the modeled latency
(``latency``: a callable from the FP16 node set to seconds, the performance model's; the
accuracy stage does not import the performance model, its caller passes it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dlakit.accuracy.compare import (
    agreement,
    confident_agreement,
    float_run,
    int8_run,
    layer_sqnr,
    sqnr_db,
)
from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.lower.lowering import ScaleSource, quantize_model
from dlakit.lower.qgraph import QConv, QGraph, QReshape

Latency = Callable[[frozenset[str]], float]


@dataclass
class MixStep:
    """One point of the accuracy-vs-latency curve: ``layers`` (ONNX nodes) in FP16."""

    tensor: str | None  # the tensor this step moved (None: the all-INT8 start)
    layers: list[str]
    sqnr_db: float
    agreement: float
    agreement_confident: float | None
    fp16_mac_share: float
    latency_s: float | None
    sqnr_gain_db: float = 0.0
    latency_cost_s: float | None = None


@dataclass
class MixResult:
    budget: float
    steps: list[MixStep] = field(default_factory=list)

    @property
    def chosen(self) -> MixStep:
        """The best output SQNR among the steps (all within the budget)."""
        return max(self.steps, key=lambda s: s.sqnr_db)

    def to_json(self) -> dict:
        return {
            "budget": self.budget,
            "chosen_layers": self.chosen.layers,
            "steps": [vars(s) for s in self.steps],
        }


def layer_macs(graph: QGraph) -> dict[str, int]:
    """MACs per image of every convolution-like layer, by the ONNX nodes it fuses (the first)."""
    macs: dict[str, int] = {}
    for layer in graph.layers:
        if isinstance(layer, QConv):
            out = graph.tensors[layer.outputs[0]].shape
            _, cg, r, s = layer.weight.shape
            elems = int(np.prod(out[1:])) if len(out) > 1 else 1
            for node in layer.onnx_nodes:
                macs[node] = 0
            macs[layer.onnx_nodes[0]] = elems * int(cg * r * s)
    return macs


def tensor_layers(graph: QGraph) -> dict[str, list[str]]:
    """ONNX tensor -> the ONNX nodes that write and read it on the DLA in INT8 (layout layers
    are followed to their readers): what moves to FP16 with it."""
    readers = graph.readers()
    writers = graph.writers()
    found: dict[str, list[str]] = {}
    for name, tensor in graph.tensors.items():
        if tensor.precision != "int8" or "::" in name:
            continue
        nodes: list[str] = []
        if name in writers:
            w = graph.layers[writers[name]]
            if w.engine != "dla" or isinstance(w, QReshape):
                continue
            nodes += w.onnx_nodes
        todo = [name, f"{name}::int8"]
        while todo:
            t = todo.pop()
            for i in readers.get(t, []):
                layer = graph.layers[i]
                if layer.engine != "dla":
                    continue
                nodes += layer.onnx_nodes
                if isinstance(layer, QReshape):
                    todo += layer.outputs
        unique = list(dict.fromkeys(nodes))
        if unique:
            found[name] = unique
    return found


def search_fp16(
    loaded: LoadedModel,
    scales: ScaleSource,
    target: str,
    x: np.ndarray,
    budget: float,
    *,
    latency: Latency | None = None,
    candidates: int = 4,
    max_steps: int = 12,
    fp16_layers: Sequence[str] = (),
    output_precision: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> MixResult:
    """The greedy tensor search (module docstring) on inputs ``x``; ``budget`` is the largest
    share of the model's MACs allowed in FP16 (0..1)."""
    if not 0.0 <= budget <= 1.0:
        raise DlakitError(f"--auto-fp16 {budget:g}: the budget is a share of the MACs, 0 to 1")
    inp, first = loaded.input_names[0], loaded.output_names[0]
    ref = float_run(loaded, x)[first]

    def lower(nodes: Sequence[str]) -> QGraph:
        return quantize_model(loaded, scales, target, fp16_layers=list(nodes),
                              output_precision=output_precision)  # fmt: skip

    base = lower(fp16_layers)
    macs = layer_macs(base)
    total = sum(macs.values()) or 1

    def share(nodes: Sequence[str]) -> float:
        return sum(macs.get(n, 0) for n in set(nodes)) / total

    def measure(tensor: str | None, nodes: list[str], graph: QGraph) -> MixStep:
        out = int8_run(graph, inp, x)[first]
        conf, _ = confident_agreement(ref, out)
        lat = latency(frozenset(nodes)) if latency else None
        return MixStep(tensor, nodes, sqnr_db(ref, out), agreement(ref, out), conf,
                       share(nodes), lat)  # fmt: skip

    result = MixResult(budget)
    current = measure(None, list(fp16_layers), base)
    result.steps.append(current)
    graph = base
    for _ in range(max_steps):
        moves = tensor_layers(graph)
        ranked = _ranked(loaded, graph, x, moves)
        trials: list[MixStep] = []
        for tensor in ranked:
            nodes = list(dict.fromkeys([*current.layers, *moves[tensor]]))
            if share(nodes) > budget + 1e-12:
                continue
            step = measure(tensor, nodes, lower(nodes))
            if progress:
                progress(f"{tensor}: SQNR {step.sqnr_db:.1f} dB, {100 * step.fp16_mac_share:.1f}% "
                         "of the MACs in FP16")  # fmt: skip
            trials.append(step)
            if len(trials) == candidates:
                break
        if not trials:
            break

        best = max(trials, key=lambda s, now=current: _gain_per_mac(s, now))
        if best.sqnr_db <= current.sqnr_db:
            break
        best.sqnr_gain_db = best.sqnr_db - current.sqnr_db
        if best.latency_s is not None and current.latency_s is not None:
            best.latency_cost_s = best.latency_s - current.latency_s
        result.steps.append(best)
        current = best
        graph = lower(current.layers)
    return result


def _gain_per_mac(step: MixStep, now: MixStep) -> float:
    """Output SQNR gained per share of the MACs moved to FP16."""
    return (step.sqnr_db - now.sqnr_db) / max(step.fp16_mac_share - now.fp16_mac_share, 1e-4)


def _ranked(
    loaded: LoadedModel, graph: QGraph, x: np.ndarray, moves: dict[str, list[str]]
) -> list[str]:
    """Movable tensors, the largest SQNR drop against their producer's inputs first."""
    stats = {s.tensor: s.sqnr_db for s in layer_sqnr(loaded, graph, x)}
    writers = graph.writers()
    drops = []
    for tensor in moves:
        if tensor not in stats:
            continue
        before = 60.0
        if tensor in writers:
            srcs = [n.removesuffix("::int8") for n in graph.layers[writers[tensor]].inputs]
            known = [stats[s] for s in srcs if s in stats]
            before = min(known) if known else 60.0
        drops.append((before - stats[tensor], tensor))
    drops.sort(key=lambda d: -d[0])
    return [t for _, t in drops]
