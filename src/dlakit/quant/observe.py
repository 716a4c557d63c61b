"""Run the FP32 model over calibration inputs and summarise every float tensor it computes.

The model runs in onnxruntime with every intermediate float tensor added as a graph output. The
ranges come in two passes, so the histogram range never has to grow mid-way (which would need
re-binning and lose resolution):

1. min and max of every tensor over the whole calibration set (this alone serves ``max``);
2. a histogram of |x| in 2048 bins over ``[0, absmax]`` from pass 1, and one of x in 4095
   bins over ``[-absmax, absmax]`` (for entropy, percentile).

onnxruntime writes each run's tensors straight into one float32 row, an *arena* (a
:class:`Layout` gives each tensor its offset), through an I/O binding: no fresh output arrays,
no copies. Pass 1 writes the first runs' rows, as many as the memory budget holds, into a
:class:`Store`; pass 2 bins those instead of running the model again, and runs it again only
for the runs after them (one reused row). The per-value work is compiled
(:mod:`dlakit.quant.observe_kernels`), one call per pass or run for every tensor;
:func:`reference_ranges` and :func:`reference_histograms` are its definition in numpy, on the
values ``session.run`` returns.

For bias correction, pass 1 can also sum the per-channel (axis 1) values of chosen tensors
(:class:`ChannelMeans`): the inputs of convolutions, whose means the correction needs.

A NaN or infinite value stops the run with a DlakitError naming the tensor and the input.
"""

from __future__ import annotations

import mmap
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import onnx

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.quant import observe_kernels as kernels
from dlakit.quant.calibrators import NUM_BINS, SIGNED_BINS, RangeHistogram

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
_ALIGN = 16  # float32 values: each tensor starts on a 64-byte line of its row

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
    counted: tuple[str, ...] = ("abs", "signed")  # the histograms pass 2 filled

    @property
    def absmax(self) -> float:
        return float(max(abs(self.min), abs(self.max))) if self.min <= self.max else 0.0

    def histogram(self) -> RangeHistogram:
        return RangeHistogram(self.counts if "abs" in self.counted else None, self.absmax,
                              self.signed if "signed" in self.counted else None)  # fmt: skip


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


def clipped_tensors(loaded: LoadedModel, names: list[str]) -> dict[str, tuple[str, float, float]]:
    """Float32 tensors made by Relu or Clip with constant bounds from another float32 tensor
    of ``names`` that is not one of these itself: ``{tensor: (source, low, high)}``. Their values
    are ``min(max(x, low), high)`` of the source's exactly, so they are binned from the
    source's values and onnxruntime never writes them out."""
    float32 = {n for n in names if loaded.dtypes.get(n) == onnx.TensorProto.FLOAT}
    inits = loaded.initializers
    clipped: dict[str, tuple[str, float, float]] = {}
    for node in loaded.nodes:
        if node.op_type not in ("Relu", "Clip") or not node.input or not node.output:
            continue
        source, out = node.input[0], node.output[0]
        if out not in float32 or source not in float32 or source in clipped:
            continue
        low, high = (0.0, np.inf) if node.op_type == "Relu" else (-np.inf, np.inf)
        if node.op_type == "Clip":
            attrs = {a.name: a.f for a in node.attribute}
            bounds = [attrs.get("min"), attrs.get("max")]
            constant = True
            for i, name in enumerate(node.input[1:3]):
                if not name:
                    continue
                value = inits.get(name)
                if value is None or value.size != 1:
                    constant = False
                    break
                bounds[i] = float(np.float32(value.reshape(())))
            if not constant:
                continue
            low = bounds[0] if bounds[0] is not None else -np.inf
            high = bounds[1] if bounds[1] is not None else np.inf
        clipped[out] = (source, low, high)
    return clipped


@dataclass
class Layout:
    """Where each calibrated tensor's values lie in an arena row (float32): its own values at
    its offset, or a clipped tensor's source values at the source's offset, clipped to
    ``[low, high]`` as they are read (other tensors: -inf, inf, so no change)."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    offsets: np.ndarray  # int64, first value of each tensor (of its source for a clipped one)
    sizes: np.ndarray  # int64, values of each tensor
    width: int  # values per row
    source: np.ndarray  # int64, the tensor whose values are read: itself unless clipped
    low: np.ndarray  # float32 clip bounds
    high: np.ndarray

    @classmethod
    def of(
        cls,
        names: list[str],
        shapes: list[tuple[int, ...]],
        clipped: dict[str, tuple[str, float, float]] | None = None,
    ) -> Layout:
        clipped = clipped or {}
        index = {name: i for i, name in enumerate(names)}
        sizes = np.array([int(np.prod(s, dtype=np.int64)) for s in shapes], dtype=np.int64)
        source = np.array([index[clipped[n][0]] if n in clipped else i
                           for i, n in enumerate(names)], dtype=np.int64)  # fmt: skip
        own = source == np.arange(len(names))
        padded = np.where(own, -(-sizes // _ALIGN) * _ALIGN, 0)
        offsets = np.concatenate(([0], np.cumsum(padded)[:-1])).astype(np.int64)[source]
        low = np.array([clipped[n][1] if n in clipped else -np.inf for n in names], np.float32)
        high = np.array([clipped[n][2] if n in clipped else np.inf for n in names], np.float32)
        return cls(names, shapes, offsets, sizes, int(padded.sum()), source, low, high)

    @property
    def index(self) -> np.ndarray:
        return np.arange(len(self.names))

    def view(self, row: np.ndarray, index: int) -> np.ndarray:
        """Tensor ``index``'s values in ``row`` (a new array for a clipped tensor)."""
        start = int(self.offsets[index])
        values = row[start : start + int(self.sizes[index])].reshape(self.shapes[index])
        if self.source[index] == index:
            return values
        return np.minimum(np.maximum(values, self.low[index]), self.high[index])


def _session(loaded: LoadedModel, outputs: list[str]):
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(loaded.proto)
    present = {o.name for o in probe.graph.output}
    for name in outputs:
        if name not in present:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Idle threads that spin between runs would take the cores the binning loops need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise DlakitError(f"{loaded.path}: onnxruntime cannot run the model: {exc}") from None


class Observer:
    """onnxruntime sessions that write every calibrated tensor of ``loaded`` into an arena row
    on each run (:meth:`run_into`; clipped tensors are read from their sources), or return
    them all (:meth:`run`, the definition)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.tensors = calibration_tensors(loaded)
        inputs = set(loaded.input_names)
        self.outputs = [name for name in self.tensors if name not in inputs]
        clipped = clipped_tensors(loaded, self.tensors)
        # Only the tensors the row holds are graph outputs: onnxruntime skips writing the rest.
        self.written = [name for name in self.outputs if name not in clipped]
        self.session = _session(loaded, self.written)
        self._reference = None
        self.layout = Layout.of(self.tensors, self._shapes(), clipped)
        index = {name: i for i, name in enumerate(self.tensors)}
        # onnxruntime writes float32 outputs into the row itself; others are cast into it.
        self.bound = [(n, index[n]) for n in self.written
                      if loaded.dtypes.get(n) == onnx.TensorProto.FLOAT]  # fmt: skip
        bound = {n for n, _ in self.bound}
        self.copied = [(n, index[n]) for n in self.written if n not in bound]
        self.binding = self.session.io_binding()
        self.runs = 0  # model runs by run_into

    def _shapes(self) -> list[tuple[int, ...]]:
        shapes = dict(self.loaded.shapes)
        shapes.update(self.loaded.input_shapes)
        if any(name not in shapes for name in self.tensors):
            # Shapes the model file does not give: one run on zeros finds them.
            feeds = {
                i.name: np.zeros(shapes[i.name], onnx.helper.tensor_dtype_to_np_dtype(
                    self.loaded.dtypes.get(i.name, onnx.TensorProto.FLOAT)))
                for i in self.session.get_inputs()
            }  # fmt: skip
            values = self.session.run(self.written, feeds)
            shapes.update((n, v.shape) for n, v in zip(self.written, values, strict=True))
            for name, (source, _, _) in clipped_tensors(self.loaded, self.tensors).items():
                shapes.setdefault(name, shapes[source])
        return [tuple(int(d) for d in shapes[name]) for name in self.tensors]

    def run(self, sample: Sample) -> Iterator[tuple[str, np.ndarray]]:
        """(name, value) of every calibrated tensor for one run, inputs first, as
        ``session.run`` returns them with every tensor a graph output."""
        source, feeds = sample
        self._check_feeds(source, feeds)
        if self._reference is None:
            self._reference = _session(self.loaded, self.outputs)
        try:
            values = self._reference.run(self.outputs, feeds)
        except Exception as exc:
            raise DlakitError(f"onnxruntime failed on input {source}: {exc}") from None
        for name in self.tensors:
            if name in feeds:
                yield name, feeds[name]
        yield from zip(self.outputs, values, strict=True)

    def run_into(self, sample: Sample, row: np.ndarray) -> None:
        """Run the model once and write the values of every tensor the row holds into it."""
        source, feeds = sample
        self._check_feeds(source, feeds)
        self.runs += 1
        layout, binding = self.layout, self.binding
        for index, name in enumerate(self.tensors):
            if name in feeds:
                layout.view(row, index)[...] = feeds[name]
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        base = row.ctypes.data
        for name, index in self.bound:
            binding.bind_output(name, "cpu", 0, np.float32, list(layout.shapes[index]),
                                base + 4 * int(layout.offsets[index]))  # fmt: skip
        for name, _ in self.copied:
            binding.bind_output(name, "cpu")
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:
            raise DlakitError(f"onnxruntime failed on input {source}: {exc}") from None
        if self.copied:
            values = binding.copy_outputs_to_cpu()[len(self.bound) :]
            for (_, index), value in zip(self.copied, values, strict=True):
                layout.view(row, index)[...] = value
        binding.clear_binding_outputs()
        binding.clear_binding_inputs()

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


_PAGE = mmap.PAGESIZE
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14: fault in and zero a range's pages, writable


def _populate_write() -> Callable[[int, int], bool] | None:
    """``populate(address, length)``: Linux's madvise(MADV_POPULATE_WRITE) through ctypes,
    which lets go of the GIL while the kernel works; None where there is no such call."""
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return lambda address, length: madvise(address, length, _MADV_POPULATE_WRITE) == 0


class Store:
    """Arena rows for the first runs, as many as ``budget`` bytes hold (``rows`` None where not
    one does): pass 1 writes them, pass 2 bins them and runs the model again only for the runs
    after them.

    A thread maps the rows' pages in, row by row, while onnxruntime fills the rows before
    them (:meth:`wait_row`): mapping 1.8 GB (MobileNetV2, 64 runs) costs the kernel about
    0.46 s, which then hides behind the model's runs instead of coming before them; the
    onnxruntime runs on 2 threads leave a core partly idle between their nodes."""

    def __init__(self, layout: Layout, runs: int, budget: int) -> None:
        row_bytes = layout.width * 4
        fit = min(runs, budget // row_bytes) if row_bytes > 0 else 0
        self.runs = runs
        self.rows: np.ndarray | None = None
        self.kept = 0  # rows pass 1 filled
        self._ready = fit  # rows whose pages are mapped (all, unless the thread maps them)
        self._changed = threading.Condition()
        self._stop = False
        if fit <= 0:
            return
        populate = _populate_write()
        # Not numpy's allocator: it asks for transparent huge pages, and where the kernel
        # compacts memory to find them, writing a few GiB took 11 s instead of 2 (measured).
        # Without the thread the pages are mapped at once (MAP_POPULATE): cheaper than a
        # fault for each page as onnxruntime first writes it (0.56 s instead of 0.7 for 1.8 GB).
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        if populate is None:
            flags |= getattr(mmap, "MAP_POPULATE", 0)
        pages = mmap.mmap(-1, fit * row_bytes, flags=flags)
        self.rows = np.frombuffer(pages, np.float32).reshape(fit, layout.width)
        if populate is not None:
            self._ready = 0
            # The thread holds ``pages``: the mapping outlives it even if the rows are dropped.
            threading.Thread(
                target=self._populate,
                args=(populate, pages, self.rows.ctypes.data, row_bytes, fit),
                daemon=True,
            ).start()

    def _populate(self, populate, pages: mmap.mmap, base: int, row_bytes: int, runs: int) -> None:
        for run in range(runs):
            if self._stop:
                break
            start = (base + run * row_bytes) // _PAGE * _PAGE
            if not populate(start, base + (run + 1) * row_bytes - start):
                break  # an older kernel: the rows' pages come as onnxruntime writes them
            with self._changed:
                self._ready = run + 1
                self._changed.notify_all()
        with self._changed:
            self._ready = runs  # done, or given up: nothing to wait for any more
            self._changed.notify_all()

    def wait_row(self, run: int) -> None:
        """Return once row ``run``'s pages are mapped (or the thread has stopped mapping)."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready > run)

    def close(self) -> None:
        """Stop mapping rows in (pass 1 ended early); the rows stay valid."""
        self._stop = True

    @property
    def complete(self) -> bool:
        """Whether the rows hold every run the source announced."""
        return self.rows is not None and len(self.rows) >= self.runs

    def row(self, run: int) -> np.ndarray | None:
        """Run ``run``'s kept row, its pages mapped, or None past the kept rows."""
        if self.rows is None or run >= len(self.rows):
            return None
        self.wait_row(run)
        return self.rows[run]


def observe_ranges(
    observer: Observer,
    inputs: InputSource,
    step: Callable[[], None] | None = None,
    store: Store | None = None,
    means: ChannelMeans | None = None,
) -> dict[str, TensorStats]:
    """Pass 1: min and max of every calibrated tensor over all inputs (kept in ``store``; the
    per-channel sums of ``means``' tensors added to it)."""
    layout = observer.layout
    # Clipped tensors' extremes follow from their sources'; no item reads them.
    items = kernels.work_items(np.where(layout.source == layout.index, layout.sizes, 0), 1)
    low = np.full(len(layout.names), np.inf, dtype=np.float32)
    high = np.full(len(layout.names), -np.inf, dtype=np.float32)
    scratch = np.empty(layout.width, np.float32)
    averaged = [(i, n) for i, n in enumerate(layout.names) if means and n in means.names]
    try:
        for run, sample in enumerate(inputs):
            kept = store.row(run) if store is not None else None
            row = scratch if kept is None else kept
            observer.run_into(sample, row)
            run_low, run_high = kernels.ranges(row[None], layout.offsets, items)
            # Clipping is monotone: a clipped tensor's extremes are its source's, clipped.
            run_low = np.minimum(np.maximum(run_low[layout.source], layout.low), layout.high)
            run_high = np.minimum(np.maximum(run_high[layout.source], layout.low), layout.high)
            finite = (np.isfinite(run_low) & np.isfinite(run_high)) | (layout.sizes == 0)
            if not finite.all():
                index = int(np.argmin(finite))
                _check_finite(layout.names[index], run_low[index], run_high[index], sample[0])
            np.minimum(low, run_low, out=low)
            np.maximum(high, run_high, out=high)
            for index, name in averaged:
                means.add(name, layout.view(row, index))  # type: ignore[union-attr]
            if kept is not None:
                store.kept = run + 1  # type: ignore[union-attr]
            if step:
                step()
    finally:
        if store is not None:
            store.close()  # an error or fewer runs: stop mapping rows nobody will write
    if not np.isfinite(low).any():
        raise DlakitError(f"no calibration inputs in {inputs.description}")
    return {
        name: TensorStats(name, float(low[i]), float(high[i]))
        for i, name in enumerate(layout.names)
    }


def bin_factors(stats: dict[str, TensorStats]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (absmax, |x| factor, signed factor) per tensor: bin ``trunc(|x| * factor)`` of
    NUM_BINS over [0, absmax] and ``trunc((x + absmax) * signed factor)`` of SIGNED_BINS over
    [-absmax, absmax], x = 0 in the centre bin."""
    absmax = [s.absmax for s in stats.values()]
    factor = [NUM_BINS / a if a > 0 else 0.0 for a in absmax]
    signed = [f * SIGNED_BINS / (2 * NUM_BINS) for f in factor]
    return tuple(np.array(v, dtype=np.float32) for v in (absmax, factor, signed))  # type: ignore[return-value]


# Runs of the store binned per call: the progress bar moves, the calls stay few.
_PROGRESS_STEPS = 16


_FILL = {"abs": kernels.ABS, "signed": kernels.SIGNED}


def observe_histograms(
    observer: Observer,
    inputs: InputSource,
    stats: dict[str, TensorStats],
    step: Callable[[], None] | None = None,
    store: Store | None = None,
    histograms: tuple[str, ...] = ("abs", "signed"),
) -> None:
    """Pass 2: fill each tensor's ``histograms`` (|x| "abs", "signed") over its range from
    pass 1, from the rows the ``store`` kept, and by running the model again for the rest."""
    layout = observer.layout
    if list(stats) != layout.names:
        raise ValueError("observe_histograms needs the stats observe_ranges gave")
    if not histograms or any(h not in _FILL for h in histograms):
        raise ValueError(f"histograms {histograms}: 'abs', 'signed' or both")
    absmax, factor, signed_factor = bin_factors(stats)
    fill = sum(_FILL[h] for h in set(histograms))
    hist = kernels.Histograms(len(layout.names), NUM_BINS, SIGNED_BINS, fill)
    offsets = layout.offsets
    kept = store.kept if store is not None and store.rows is not None else 0
    if kept:
        block = max(1, -(-kept // _PROGRESS_STEPS))
        items = {}
        for start in range(0, kept, block):
            rows = store.rows[start : min(kept, start + block)]  # type: ignore[union-attr]
            if len(rows) not in items:
                items[len(rows)] = kernels.work_items(layout.sizes, len(rows))
            hist.add(
                rows,
                offsets,
                items[len(rows)],
                layout.low,
                layout.high,
                absmax,
                factor,
                signed_factor,
            )
            for _ in range(len(rows)):
                if step:
                    step()
    row = np.empty((1, layout.width), np.float32)
    items_one = kernels.work_items(layout.sizes, 1)
    for run, sample in enumerate(inputs):
        if run < kept:
            continue  # binned from its kept row
        observer.run_into(sample, row[0])
        hist.add(row, offsets, items_one, layout.low, layout.high, absmax, factor, signed_factor)
        if step:
            step()
    counts, signed = hist.totals()
    for index, entry in enumerate(stats.values()):
        entry.counts += counts[index]
        entry.signed += signed[index]
        entry.counted = tuple(h for h in ("abs", "signed") if h in histograms)


def reference_ranges(observer: Observer, inputs: InputSource) -> dict[str, TensorStats]:
    """Pass 1 by definition: numpy's min and max of the tensors ``session.run`` returns."""
    stats = {name: TensorStats(name) for name in observer.tensors}
    for sample in inputs:
        for name, value in observer.run(sample):
            entry = stats[name]
            entry.min = min(entry.min, float(np.min(value)))
            entry.max = max(entry.max, float(np.max(value)))
    return stats


def reference_histograms(
    observer: Observer, inputs: InputSource, stats: dict[str, TensorStats]
) -> None:
    """Pass 2 by definition: numpy's float32 arithmetic and bincount on ``session.run``'s
    tensors (values at absmax land in the last bin, as in np.histogram)."""
    absmax, factor, signed_factor = bin_factors(stats)
    index_of = {name: i for i, name in enumerate(stats)}
    for sample in inputs:
        for name, value in observer.run(sample):
            i, entry = index_of[name], stats[name]
            flat = np.asarray(value, dtype=np.float32).ravel()
            signed_index = ((flat + absmax[i]) * signed_factor[i]).astype(np.intp)
            np.clip(signed_index, 0, SIGNED_BINS - 1, out=signed_index)
            entry.signed += np.bincount(signed_index, minlength=SIGNED_BINS)
            index = (np.abs(flat) * factor[i]).astype(np.intp)
            np.minimum(index, NUM_BINS - 1, out=index)
            entry.counts += np.bincount(index, minlength=NUM_BINS)
