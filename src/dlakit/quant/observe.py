"""Run the FP32 model over calibration inputs and summarise every float tensor it computes.

The model runs in onnxruntime with every intermediate float tensor added as a graph output. The
ranges come in two streamed passes, so the histogram range never has to grow mid-way (which would
need re-binning and lose resolution):

1. min and max of every tensor over the whole calibration set (this alone serves ``max``);
2. a histogram of |x| in 2048 bins over ``[0, absmax]`` from pass 1 (for entropy, percentile).

Running the model with every tensor exposed is most of the cost, so pass 1 keeps the
activations it saw (a :class:`Store`) while they fit the memory budget, and pass 2 bins those
instead of running the model again. The per-value work runs as compiled loops where numba is
installed (:mod:`dlakit.quant.observe_kernels`, the same float32 arithmetic as the numpy code
here, which stays the definition).

For bias correction, pass 1 can also sum the per-channel (axis 1) values of chosen tensors
(:class:`ChannelMeans`): the inputs of convolutions, whose means the correction needs.

A NaN or infinite value stops the run with a DlakitError naming the tensor and the input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import onnx

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.quant.calibrators import NUM_BINS, SIGNED_BINS, RangeHistogram

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}

# One model run: a label for messages (usually the input file) and the feeds by input name.
Sample = tuple[str, dict[str, np.ndarray]]


class InputSource(Protocol):
    """Calibration inputs: iterable more than once, each item one model run."""

    description: str

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Sample]: ...


@dataclass
class TensorStats:
    """What the calibration passes learned about one tensor."""

    name: str
    min: float = np.inf
    max: float = -np.inf
    counts: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, dtype=np.int64))
    signed: np.ndarray = field(default_factory=lambda: np.zeros(SIGNED_BINS, dtype=np.int64))
    zeros: int = 0

    @property
    def absmax(self) -> float:
        return float(max(abs(self.min), abs(self.max))) if self.min <= self.max else 0.0

    def histogram(self) -> RangeHistogram:
        return RangeHistogram(self.counts, self.absmax, self.zeros, self.signed)


def calibration_tensors(loaded: LoadedModel) -> list[str]:
    """Float tensors that get an activation scale: graph inputs, then node outputs in order."""
    inits = {t.name for t in loaded.proto.graph.initializer}
    names: list[str] = []
    seen: set[str] = set()
    candidates = [*loaded.input_names, *(o for n in loaded.nodes for o in n.output)]
    for name in candidates:
        if (
            name
            and name not in seen
            and name not in inits
            and loaded.dtypes.get(name) in _FLOAT_TYPES
        ):
            names.append(name)
            seen.add(name)
    return names


class Observer:
    """An onnxruntime session that returns every calibrated tensor of ``loaded`` on each run."""

    def __init__(self, loaded: LoadedModel) -> None:
        import onnxruntime as ort

        self.loaded = loaded
        self.tensors = calibration_tensors(loaded)
        inputs = set(loaded.input_names)
        self.outputs = [name for name in self.tensors if name not in inputs]
        probe = onnx.ModelProto()
        probe.CopyFrom(loaded.proto)
        present = {o.name for o in probe.graph.output}
        for name in self.outputs:
            if name not in present:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle threads that spin between runs would take the cores the binning loops need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise DlakitError(f"{loaded.path}: onnxruntime cannot run the model: {exc}") from None

    def run(self, sample: Sample) -> Iterator[tuple[str, np.ndarray]]:
        """(name, value) of every calibrated tensor for one run, inputs first."""
        source, feeds = sample
        self._check_feeds(source, feeds)
        try:
            values = self.session.run(self.outputs, feeds)
        except Exception as exc:
            raise DlakitError(f"onnxruntime failed on input {source}: {exc}") from None
        for name in self.tensors:
            if name in feeds:
                yield name, feeds[name]
        yield from zip(self.outputs, values, strict=True)

    def _check_feeds(self, source: str, feeds: dict[str, np.ndarray]) -> None:
        for name, shape in self.loaded.input_shapes.items():
            if name not in feeds:
                raise DlakitError(f"input {source} gives no value for model input '{name}'")
            if tuple(feeds[name].shape) != tuple(shape):
                raise DlakitError(
                    f"input {source}: model input '{name}' needs shape "
                    f"{'x'.join(map(str, shape))}, the data gives "
                    f"{'x'.join(map(str, feeds[name].shape))}; check --preprocess"
                )


def _check_finite(name: str, low: float, high: float, source: str) -> None:
    if not (np.isfinite(low) and np.isfinite(high)):
        kind = "NaN" if np.isnan(low) or np.isnan(high) else "infinite"
        raise DlakitError(
            f"tensor '{name}' has {kind} values on calibration input {source}; "
            "the FP32 model overflows there (check the input and its preprocessing)"
        )


@dataclass
class ChannelMeans:
    """Per-channel mean (axis 1, over every other axis and every run) of the tensors named."""

    names: set[str]
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, value: np.ndarray) -> None:
        if name not in self.names or value.ndim < 2:
            return
        axes = tuple(d for d in range(value.ndim) if d != 1)
        total = np.asarray(value, dtype=np.float64).sum(axis=axes)
        self.sums[name] = self.sums.get(name, 0.0) + total
        self.counts[name] = self.counts.get(name, 0) + value.size // value.shape[1]

    def means(self) -> dict[str, np.ndarray]:
        return {name: self.sums[name] / self.counts[name] for name in self.sums}


class Store:
    """The activations pass 1 saw, kept for pass 2 while they fit in ``budget`` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.runs: list[list[tuple[str, np.ndarray]]] | None = []

    def add(self, values: list[tuple[str, np.ndarray]]) -> None:
        if self.runs is None:
            return
        size = sum(v.nbytes for _, v in values)
        if self.used + size > self.budget:
            self.runs = None  # over budget: pass 2 runs the model again
            return
        self.used += size
        self.runs.append(values)

    @property
    def complete(self) -> bool:
        return self.runs is not None


def _kernels():
    try:
        from dlakit.quant import observe_kernels
    except ImportError:
        return None
    return observe_kernels


def observe_ranges(
    observer: Observer,
    inputs: InputSource,
    step: Callable[[], None] | None = None,
    store: Store | None = None,
    means: ChannelMeans | None = None,
) -> dict[str, TensorStats]:
    """Pass 1: min and max of every calibrated tensor over all inputs (kept in ``store``; the
    per-channel sums of ``means``' tensors added to it)."""
    stats = {name: TensorStats(name) for name in observer.tensors}
    for sample in inputs:
        values = []
        for name, value in observer.run(sample):
            # numpy's min and max are vectorised already (0.6 ns a value here).
            low, high = float(np.min(value)), float(np.max(value))
            _check_finite(name, low, high, sample[0])
            entry = stats[name]
            entry.min = min(entry.min, low)
            entry.max = max(entry.max, high)
            if means is not None:
                means.add(name, value)
            values.append((name, np.asarray(value, dtype=np.float32)))
        if store is not None:
            store.add(values)
        if step:
            step()
    if not any(np.isfinite(s.min) for s in stats.values()):
        raise DlakitError(f"no calibration inputs in {inputs.description}")
    return stats


def observe_histograms(
    observer: Observer,
    inputs: InputSource,
    stats: dict[str, TensorStats],
    step: Callable[[], None] | None = None,
    store: Store | None = None,
    fused: bool = True,
) -> None:
    """Pass 2: fill each tensor's |x| and signed histograms over its range from pass 1, from
    the ``store`` when it holds every run, else by running the model again. ``fused=False``
    bins with numpy (the definition)."""
    factors = {n: (NUM_BINS / s.absmax if s.absmax > 0 else 0.0) for n, s in stats.items()}
    # Signed bins over [-absmax, absmax]: x = 0 falls in the centre bin, SIGNED_BINS // 2.
    signed_factors = {n: f * SIGNED_BINS / (2 * NUM_BINS) for n, f in factors.items()}
    kernels = _kernels() if fused else None
    if kernels is not None and store is not None and store.runs is not None:
        # One compiled pass per tensor over all the runs it was kept for (a call per tensor
        # and run would cost more than the binning for the small ones).
        for name in stats:
            parts = [value for run in store.runs for n, value in run if n == name]
            if not parts:
                continue
            entry = stats[name]
            entry.zeros += kernels.histograms(
                np.concatenate([p.reshape(-1) for p in parts]),
                np.float32(entry.absmax),
                np.float32(factors[name]),
                np.float32(signed_factors[name]),
                entry.counts,
                entry.signed,
            )
        if step:
            for _ in store.runs:
                step()
        return
    runs = (
        iter(store.runs)
        if store is not None and store.runs is not None
        else (list(observer.run(sample)) for sample in inputs)
    )
    for values in runs:
        for name, value in values:
            if kernels is not None:
                entry = stats[name]
                entry.zeros += kernels.histograms(
                    value,
                    np.float32(entry.absmax),
                    np.float32(factors[name]),
                    np.float32(signed_factors[name]),
                    entry.counts,
                    entry.signed,
                )
                continue
            flat = np.asarray(value, dtype=np.float32).ravel()
            shifted = (flat + np.float32(stats[name].absmax)) * np.float32(signed_factors[name])
            signed_index = shifted.astype(np.intp)
            np.clip(signed_index, 0, SIGNED_BINS - 1, out=signed_index)
            stats[name].signed += np.bincount(signed_index, minlength=SIGNED_BINS)
            magnitude = np.abs(flat)
            stats[name].zeros += magnitude.size - int(np.count_nonzero(magnitude))
            # Bin index by one in-place multiply; values at absmax land in the last bin, as in
            # np.histogram. intp indices spare bincount a conversion copy.
            magnitude *= np.float32(factors[name])
            index = magnitude.astype(np.intp)
            np.minimum(index, NUM_BINS - 1, out=index)
            stats[name].counts += np.bincount(index, minlength=NUM_BINS)
        if step:
            step()
