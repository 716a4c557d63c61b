"""One model's costs for the planner: its cut points, its layer groups, their DLA and GPU work.

A *cut* is a position in the model's node order (topological) where the model can be split into
two ONNX pieces: no DLA hardware layer and no GPU kernel has nodes on both sides, and at most
:data:`MAX_CROSSING` tensors cross it. The spans between kept cuts are the *groups* every
strategy places (HaX-CoNN's layer groups, JEDI's stage boundaries, seed 004's front/tail split).

Per group, from the shared cost model in :mod:`dlakit.perf`:

* DLA work per image, one core alone: the phases of the existing cycle model
  (:func:`dlakit.perf.cost.dla_layer_cost`, batch-linear: TensorRT runs a DLA batch as a loop);
  a group runs on the DLA only if ``check`` puts every node of it there;
* GPU work for a batch: the phases of :mod:`dlakit.perf.gpu_model`'s fused kernels;
* the elements per image that cross its end (what a handoff there moves).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel
from dlakit.partition import check_model
from dlakit.perf.contention import Phase
from dlakit.perf.cost import dla_layer_cost
from dlakit.perf.gpu_model import (
    GpuParams,
    JetsonGpu,
    gpu_kernels,
    kernel_bytes,
    kernel_terms,
    kernel_time,
)
from dlakit.perf.hw import DlaConfig, Params
from dlakit.perf.layers import HwLayer, build_layers
from dlakit.perf.model import sram_resident

MAX_CROSSING = 2  # tensors a cut may hand over (a residual block's two live tensors)
MAX_GROUPS = 24  # groups per model kept for the searches (cuts beyond it are thinned out)


@dataclass
class Group:
    """Nodes ``[start, end)`` of the model's node order."""

    start: int
    end: int
    dla_ok: bool  # every node runs on the DLA (check's verdicts)
    dla: list[Phase] = field(default_factory=list)  # per image, one core alone
    kernels: list[HwLayer] = field(default_factory=list)  # GPU kernels anchored in the group
    out_elems: int = 0  # per image, crossing the cut at ``end``
    macs: int = 0  # per image


@dataclass
class ModelCosts:
    """Everything the strategies need to know about one model on one target and mode."""

    name: str
    model: LoadedModel
    gpu: JetsonGpu
    gpu_params: GpuParams
    dla: DlaConfig | None
    groups: list[Group]
    batch_of_file: int  # the batch the model file was loaded at (pieces are re-pinned)
    dla_params: Params | None = None

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @cached_property
    def front(self) -> int:
        """Groups of the DLA-able front: the longest prefix of groups that run on the DLA."""
        n = 0
        while n < len(self.groups) and self.groups[n].dla_ok:
            n += 1
        return n

    def dla_ok(self, lo: int, hi: int) -> bool:
        return self.dla is not None and all(g.dla_ok for g in self.groups[lo:hi])

    def dla_phases(self, lo: int, hi: int) -> list[Phase]:
        """Per-image DLA phases of groups ``[lo, hi)``."""
        return [p for g in self.groups[lo:hi] for p in g.dla]

    def dla_time(self, lo: int, hi: int) -> float:
        """Seconds per image of groups ``[lo, hi)`` on one DLA core alone."""
        bw = self.dla_bytes_per_s
        return sum(p.time_at(bw) for p in self.dla_phases(lo, hi))

    @property
    def dla_bytes_per_s(self) -> float:
        return 0.0 if self.dla is None else self.dla.dram_bytes_per_s(self.dla_params)

    def gpu_phases(self, lo: int, hi: int, batch: int) -> list[Phase]:
        """GPU phases of groups ``[lo, hi)`` for one batch of ``batch`` images."""
        phases = []
        for g in self.groups[lo:hi]:
            for k in g.kernels:
                if k.kind in ("view", "concat"):
                    continue
                launch, compute, _ = kernel_terms(k, self.gpu, self.gpu_params, batch)
                nbytes = float(kernel_bytes(k, self.gpu.bytes_per_elem, batch))
                phases.append(Phase(launch, float(compute), nbytes, k.macs * batch))
        return phases

    def gpu_curve(self, lo: int, hi: int, batches: np.ndarray) -> np.ndarray:
        """GPU seconds alone of groups ``[lo, hi)`` for each batch in ``batches`` (0 for 0)."""
        b = np.asarray(batches, dtype=float)
        total = np.zeros_like(b)
        for g in self.groups[lo:hi]:
            for k in g.kernels:
                total += kernel_time(k, self.gpu, self.gpu_params, b)
        return np.where(b > 0, total, 0.0)

    def gpu_time(self, lo: int, hi: int, batch: int) -> float:
        bw = self.gpu.bytes_per_s
        return sum(p.time_at(bw) for p in self.gpu_phases(lo, hi, batch))

    @cached_property
    def gpu_group_times(self) -> dict[int, np.ndarray]:
        """Cache: batch -> per-group GPU time alone (filled by :meth:`gpu_times`)."""
        return {}

    def gpu_times(self, batch: int) -> np.ndarray:
        """Per-group GPU seconds alone at ``batch`` (cached)."""
        cached = self.gpu_group_times.get(batch)
        if cached is None:
            cached = np.array([self.gpu_time(i, i + 1, batch) for i in range(self.n_groups)])
            self.gpu_group_times[batch] = cached
        return cached

    @cached_property
    def dla_group_times(self) -> np.ndarray:
        return np.array([self.dla_time(i, i + 1) for i in range(self.n_groups)])

    def crossing(self, cut: int) -> int:
        """Elements per image handed over at the end of group ``cut - 1`` (0 at the ends)."""
        if cut <= 0 or cut >= self.n_groups:
            return 0
        return self.groups[cut - 1].out_elems

    @property
    def macs(self) -> int:
        return sum(g.macs for g in self.groups)

    def node_range(self, lo: int, hi: int) -> tuple[int, int]:
        return self.groups[lo].start, self.groups[hi - 1].end


def model_costs(
    name: str,
    model: LoadedModel,
    target,
    gpu: JetsonGpu,
    gpu_params: GpuParams,
    dla: DlaConfig | None,
    dla_params: Params | None,
) -> ModelCosts:
    """Cut ``model`` into groups and cost each (see the module docstring)."""
    nodes = model.nodes
    index = {n.name: i for i, n in enumerate(nodes)}
    kernels = gpu_kernels(model)
    on_dla: set[str] = set()
    dla_layers: list[HwLayer] = []
    in_sram: set[str] = set()
    if dla is not None:
        on_dla = {v.name for v in check_model(model, target).nodes if v.engine == "dla"}
        dla_layers = [lay for lay in build_layers(model, target) if lay.engine == "dla"]
        in_sram = sram_resident(dla_layers, model, dla)
    blocked = _straddled(kernels, index) | _straddled(dla_layers, index)
    crossing = _crossing(model)
    inner = [
        p for p in range(1, len(nodes)) if p not in blocked and len(crossing[p]) <= MAX_CROSSING
    ]
    cuts = [0, *inner, len(nodes)]
    if len(cuts) < 2:
        raise DlakitError(f"{name}: the model has no nodes")
    dla_ok = [n.name in on_dla for n in nodes]
    cuts = _thin(cuts, dla_ok, kernels, index, crossing)
    groups = []
    for start, end in itertools.pairwise(cuts):
        groups.append(
            Group(
                start=start,
                end=end,
                dla_ok=dla is not None and all(dla_ok[start:end]),
                out_elems=sum(_elems(model, t) for t in crossing[end]) if end < len(nodes) else 0,
            )
        )
    starts = [g.start for g in groups]

    def group_of(layer: HwLayer) -> int | None:
        first = min((index[n] for n in layer.nodes if n in index), default=None)
        if first is None:
            return None
        return int(np.searchsorted(starts, first, side="right")) - 1

    for k in kernels:
        gi = group_of(k)
        if gi is not None:
            groups[gi].kernels.append(k)
            groups[gi].macs += k.macs
    if dla is not None and dla_params is not None:
        for layer in dla_layers:
            gi = group_of(layer)
            if gi is None:
                continue
            c = dla_layer_cost(layer, dla, dla_params, in_sram)
            groups[gi].dla.append(
                Phase(c.overhead_s + c.fill_s, c.compute_s, float(c.dram_bytes), float(c.macs))
            )
    return ModelCosts(
        name=name,
        model=model,
        gpu=gpu,
        gpu_params=gpu_params,
        dla=dla,
        groups=groups,
        batch_of_file=_batch(model),
        dla_params=dla_params,
    )


def _batch(model: LoadedModel) -> int:
    shapes = [s for s in model.input_shapes.values() if s]
    return int(shapes[0][0]) if shapes else 1


def _elems(model: LoadedModel, name: str) -> int:
    shape = model.shapes.get(name, ())
    return math.prod(shape[1:]) if len(shape) >= 2 else 1


def _straddled(layers: list[HwLayer], index: dict[str, int]) -> set[int]:
    """Cut positions inside a fused layer (between its first and last node)."""
    blocked: set[int] = set()
    for layer in layers:
        positions = [index[n] for n in layer.nodes if n in index]
        if len(positions) > 1:
            blocked.update(range(min(positions) + 1, max(positions) + 1))
    return blocked


def _crossing(model: LoadedModel) -> list[list[str]]:
    """For each position p, the tensors made before p (or graph inputs) read at or after p."""
    nodes = model.nodes
    inits = set(model.initializers)
    made_at: dict[str, int] = {name: -1 for name in model.input_names}
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            if t and t not in inits:
                last_use[t] = i
        for t in node.output:
            if t:
                made_at[t] = i
    live: list[list[str]] = [[] for _ in range(len(nodes) + 1)]
    for t, made in made_at.items():
        end = last_use.get(t)
        if end is None:
            continue
        for p in range(made + 1, end + 1):
            live[p].append(t)
    return live


def _thin(
    cuts: list[int],
    dla_ok: list[bool],
    kernels: list[HwLayer],
    index: dict[str, int],
    crossing: list[list[str]],
) -> list[int]:
    """At most :data:`MAX_GROUPS` groups: keep every cut where DLA-ability changes, prefer cuts
    handing over one tensor, then cuts spread evenly over the model's MACs."""
    if len(cuts) - 1 <= MAX_GROUPS:
        return cuts
    n = len(dla_ok)
    keep = {0, n}
    for p in cuts[1:-1]:
        if dla_ok[p - 1] != dla_ok[p]:
            keep.add(p)
    macs = np.zeros(n + 1)
    for k in kernels:
        positions = [index[x] for x in k.nodes if x in index]
        if positions:
            macs[min(positions) + 1] += k.macs
    cum = np.cumsum(macs)
    inner = [p for p in cuts[1:-1] if p not in keep]
    single = [p for p in inner if len(crossing[p]) <= 1] or inner
    want = MAX_GROUPS - (len(keep) - 1)
    if want > 0 and single:
        targets = np.linspace(0, cum[-1], want + 2)[1:-1]
        values = np.array([cum[p] for p in single])
        for t in targets:
            keep.add(single[int(np.argmin(np.abs(values - t)))])
    return sorted(keep)
