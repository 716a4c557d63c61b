"""The fast calibration passes give exactly what their definition gives.

- Collection: onnxruntime writing into arena rows through an I/O binding and the compiled
  range and histogram loops (:func:`observe_ranges`, :func:`observe_histograms`) against numpy
  on the arrays ``session.run`` returns (:func:`reference_ranges`,
  :func:`reference_histograms`), bit for bit, with the rows kept and with the model run again;
  on synthetic edge cases and on a real zoo model with real photos.
- The KL search: :func:`entropy_divergences` (per-level terms from a table) against the
  per-candidate closed form it replaced, on random and real histograms: the same KL, bit for
  bit, so the same threshold.
"""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.graph import load_model, save_model
from dlakit.quant import observe_kernels as kernels
from dlakit.quant.calibrators import (
    EMPTY_BIN_EPS,
    NUM_LEVELS,
    SIGNED_BINS,
    SIGNED_LEVELS,
    compute_amax,
    entropy_divergences,
)
from dlakit.quant.inputs import ArrayInputs
from dlakit.quant.observe import (
    Observer,
    Store,
    clipped_tensors,
    observe_histograms,
    observe_ranges,
    reference_histograms,
    reference_ranges,
)


def _assert_same(fast, reference):
    assert list(fast) == list(reference)
    for name, entry in fast.items():
        want = reference[name]
        assert (entry.min, entry.max) == (want.min, want.max), name
        assert np.array_equal(entry.counts, want.counts), name
        assert np.array_equal(entry.signed, want.signed), name
        assert compute_amax(entry.histogram(), "entropy") == compute_amax(
            want.histogram(), "entropy"
        ), name


def _both_ways(loaded, inputs):
    """(fast with the rows kept, fast with the model run again, fast with half the rows kept
    and the rest run again, the definition)."""
    observer = Observer(loaded)
    results = []
    row_bytes, half = observer.layout.width * 4, max(1, len(inputs) // 2)
    for budget, kept in ((1 << 40, len(inputs)), (0, 0), (half * row_bytes + 5, half)):
        store = Store(observer.layout, len(inputs), budget)
        assert store.complete == (kept == len(inputs))
        stats = observe_ranges(observer, inputs, store=store)
        assert store.kept == kept
        before = observer.runs
        observe_histograms(observer, inputs, stats, store=store)
        assert observer.runs - before == len(inputs) - kept  # only the runs past the kept rows
        results.append(stats)
    reference = reference_ranges(observer, inputs)
    reference_histograms(observer, inputs, reference)
    return (*results, reference)


def _toy(path, shape=(2, 3, 40, 41)):
    """x -> Conv -> Relu -> Mul(-1e-3), and x * 0: ReLU zeros, -0.0, tiny and negative values,
    a tensor of only zeros; Clips of the Conv (both bounds), of x (an upper bound only) and of
    the Relu (a clip of a clipped tensor, so stored)."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    scale = numpy_helper.from_array(np.array(-1e-3, np.float32), "k")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "z")
    low = numpy_helper.from_array(np.array(-0.5, np.float32), "low")
    high = numpy_helper.from_array(np.array(0.7, np.float32), "high")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Mul", ["relu", "k"], ["small"], name="small"),
        helper.make_node("Mul", ["x", "z"], ["nothing"], name="nothing"),
        helper.make_node("Clip", ["conv", "low", "high"], ["clip"], name="clip"),
        helper.make_node("Clip", ["x", "", "high"], ["clip_x"], name="clip_x"),
        helper.make_node("Clip", ["relu", "low", "high"], ["clip_relu"], name="clip_relu"),
    ]
    out_shape = [shape[0], 4, shape[2], shape[3]]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [
            helper.make_tensor_value_info("small", TensorProto.FLOAT, out_shape),
            helper.make_tensor_value_info("nothing", TensorProto.FLOAT, list(shape)),
        ],
        [weights, scale, zero, low, high],
    )
    graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                        for n in ("clip", "clip_x", "clip_relu"))  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    save_model(model, path)
    return load_model(path)


def test_collection_equals_the_definition_on_edge_cases(tmp_path):
    loaded = _toy(tmp_path / "toy.onnx")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5, 2, 3, 40, 41)) * 3).astype(np.float32)
    x.reshape(5, -1)[:, :9] = 0.0  # exact zeros, -0.0 among them
    x.reshape(5, -1)[:, 9] = -0.0
    # The input's extreme value sits exactly on the last bin's edge.
    x[3, 1, 2, 7, 7] = np.abs(x).max() * 1.5
    inputs = ArrayInputs("toy", "x", (2, 3, 40, 41), x.reshape(10, 3, 40, 41), [""] * 10)
    assert clipped_tensors(loaded, Observer(loaded).tensors) == {
        "relu": ("conv", 0.0, np.inf),
        "clip": ("conv", np.float32(-0.5), np.float32(0.7)),
        "clip_x": ("x", -np.inf, np.float32(0.7)),
    }
    kept, again, partly, reference = _both_ways(loaded, inputs)
    _assert_same(kept, reference)
    _assert_same(again, reference)
    _assert_same(partly, reference)
    assert reference["nothing"].absmax == 0 and reference["x"].counts[-1] >= 1
    assert reference["small"].counts[0] > 0 and reference["small"].max <= 0


@pytest.mark.parametrize("populate", ["thread", "failing", "none"])
def test_kept_rows_equal_the_definition_however_their_pages_come(tmp_path, monkeypatch, populate):
    """The kept rows' pages mapped by the thread, by onnxruntime's writes where the kernel
    refuses the call (the thread gives up), or at once where there is no such call."""
    from dlakit.quant import observe

    if populate == "failing":
        monkeypatch.setattr(observe, "_populate_write", lambda: lambda address, length: False)
    elif populate == "none":
        monkeypatch.setattr(observe, "_populate_write", lambda: None)
    loaded = _toy(tmp_path / "toy.onnx", (1, 3, 8, 8))
    x = np.random.default_rng(3).standard_normal((6, 3, 8, 8)).astype(np.float32)
    inputs = ArrayInputs("toy", "x", (1, 3, 8, 8), x, [""] * 6)
    observer = Observer(loaded)
    store = Store(observer.layout, len(inputs), 1 << 40)
    stats = observe_ranges(observer, inputs, store=store)
    assert store.kept == 6
    observe_histograms(observer, inputs, stats, store=store)
    reference = reference_ranges(observer, inputs)
    reference_histograms(observer, inputs, reference)
    _assert_same(stats, reference)


def test_store_thread_maps_rows_in_order_and_stops_when_closed(monkeypatch):
    """wait_row returns only once its row is mapped; close stops the thread early."""
    import mmap
    import threading

    from dlakit.quant import observe

    calls: list[tuple[int, int]] = []
    gate = threading.Semaphore(0)

    def populate(address, length):
        gate.acquire()
        calls.append((address, length))
        return True

    monkeypatch.setattr(observe, "_populate_write", lambda: populate)
    layout = observe.Layout.of(["a"], [(1, 3000)])
    store = Store(layout, 8, 1 << 40)
    base, row_bytes = store.rows.ctypes.data, layout.width * 4
    gate.release()
    store.wait_row(0)
    assert calls == [
        (
            base // mmap.PAGESIZE * mmap.PAGESIZE,
            base + row_bytes - base // mmap.PAGESIZE * mmap.PAGESIZE,
        )
    ]
    gate.release()
    store.wait_row(1)
    start = (base + row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
    assert calls[1] == (start, base + 2 * row_bytes - start)
    store.close()
    gate.release()  # the row under way finishes; no further row is mapped
    store.wait_row(7)  # the stopped thread leaves nothing to wait for
    assert len(calls) == 3
    store.rows[:] = 1.0  # every row stays usable


def test_a_differing_count_is_seen(tmp_path):
    """The comparison can fail: one value moved to another bin is caught."""
    loaded = _toy(tmp_path / "toy.onnx", (1, 3, 8, 8))
    x = np.random.default_rng(2).standard_normal((3, 1, 3, 8, 8)).astype(np.float32)
    inputs = ArrayInputs("toy", "x", (1, 3, 8, 8), x.reshape(3, 3, 8, 8), [""] * 3)
    kept, _, _, reference = _both_ways(loaded, inputs)
    counts = kept["conv"].signed
    bin_ = int(np.flatnonzero(counts)[0])
    counts[bin_] -= 1
    counts[bin_ + 1] += 1
    with pytest.raises(AssertionError):
        _assert_same(kept, reference)


def test_work_items_cover_every_value_once():
    sizes = np.array([0, 5, kernels.ITEM_VALUES * 2 + 3, 1000, kernels.ITEM_VALUES], np.int64)
    for rows in (1, 7, 200):
        covered = [np.zeros((rows, s), np.int64) for s in sizes]
        for tensor, r0, r1, lo, hi in kernels.work_items(sizes, rows):
            covered[tensor][r0:r1, lo:hi] += 1
        assert all((c == 1).all() for c in covered)


def test_ranges_find_nan_and_infinity():
    row = np.zeros((1, 48), np.float32)
    offsets = np.array([0, 16, 32], np.int64)
    items = kernels.work_items(np.array([16, 16, 16], np.int64), 1)
    row[0, :16] = np.linspace(-3, 2, 16)
    row[0, 20] = -np.inf
    row[0, 40] = np.nan
    low, high = kernels.ranges(row, offsets, items)
    assert (low[0], high[0]) == (np.float32(-3), np.float32(2))
    assert low[1] == -np.inf and high[1] == 0
    assert np.isnan(low[2]) or np.isnan(high[2])


@pytest.fixture(scope="module")
def mobilenet_stats():
    """The fast and the reference statistics of every tensor of the zoo's MobileNetV2 on
    three real photos."""
    from dlakit.data import load_inputs
    from dlakit.zoo import resolve_model

    loaded = load_model(resolve_model("mobilenetv2"))
    shape = tuple(loaded.input_shapes[loaded.input_names[0]])
    x = load_inputs("foolbox-imagenet", "imagenet", shape, 3)
    inputs = ArrayInputs("3 photos", loaded.input_names[0], shape, x, ["a", "b", "c"])
    return _both_ways(loaded, inputs)


@pytest.mark.network
def test_collection_equals_the_definition_on_mobilenetv2(mobilenet_stats):
    kept, again, partly, reference = mobilenet_stats
    assert len(reference) > 100
    _assert_same(kept, reference)
    _assert_same(again, reference)
    _assert_same(partly, reference)


def _per_candidate_divergences(signed: np.ndarray) -> np.ndarray:
    """The KL of every candidate by the closed form with every level computed per candidate
    (the implementation before the level table)."""
    h = np.asarray(signed, dtype=np.float64)
    total, centre = h.sum(), len(h) // 2

    def xlogx(v):
        return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)

    half = np.arange(NUM_LEVELS, centre + 1)
    start, stop = centre - half, centre + half + 1
    per_level = (stop - start) // SIGNED_LEVELS
    cum = np.concatenate(([0.0], np.cumsum(h)))
    cum_nonempty = np.concatenate(([0], np.cumsum(h > 0)))
    cum_hlogh = np.concatenate(([0.0], np.cumsum(xlogx(h))))
    lo = start[:, None] + np.arange(SIGNED_LEVELS)[None, :] * per_level[:, None]
    hi = lo + per_level[:, None]
    hi[:, -1] = stop
    level_sum = cum[hi] - cum[lo]
    level_q = level_sum / np.maximum(cum_nonempty[hi] - cum_nonempty[lo], 1)
    plogq_levels = np.where(
        level_sum > 0, level_sum * np.log(np.where(level_q > 0, level_q, 1.0)), 0.0
    ).sum(axis=1)
    left, right = cum[start], total - cum[stop]
    h_first, h_last = h[start], h[stop - 1]
    q_first = np.where(h_first > 0, level_q[:, 0], EMPTY_BIN_EPS)
    q_last = np.where(h_last > 0, level_q[:, -1], EMPTY_BIN_EPS)
    mass_q = cum[stop] - cum[start]
    mass_q = mass_q + np.where((h_first == 0) & (left > 0), EMPTY_BIN_EPS, 0.0)
    mass_q = mass_q + np.where((h_last == 0) & (right > 0), EMPTY_BIN_EPS, 0.0)
    plogp = (
        cum_hlogh[stop] - cum_hlogh[start] - xlogx(h_first) - xlogx(h_last)
        + xlogx(h_first + left) + xlogx(h_last + right)
    )  # fmt: skip
    plogq = plogq_levels + left * np.log(q_first) + right * np.log(q_last)
    with np.errstate(divide="ignore"):
        kl = (plogp - plogq) / total + np.log(mass_q / total)
    return np.where(cum[stop] - cum[start] > 0, kl, np.inf)


def _random_histograms():
    rng = np.random.default_rng(5)
    for case in range(40):
        kind = case % 4
        if kind == 0:  # Gaussian with outliers
            x = np.concatenate([rng.normal(size=50_000), rng.uniform(-40, 40, size=case)])
        elif kind == 1:  # ReLU-like: a spike at zero and a long positive tail
            x = np.maximum(rng.standard_t(3, size=30_000), 0)
        elif kind == 2:  # sparse: a few hundred values, most bins empty
            x = rng.laplace(size=300 + case)
        else:  # a constant background spike next to the signal (MNIST-like)
            x = np.concatenate([np.full(20_000, -0.42), rng.uniform(-0.42, 2.8, 5_000)])
        absmax = np.abs(x).max()
        yield np.histogram(x, bins=SIGNED_BINS, range=(-absmax, absmax))[0]


def test_kl_table_equals_per_candidate_levels_on_random_histograms():
    for signed in _random_histograms():
        half, kl = entropy_divergences(signed)
        want = _per_candidate_divergences(signed)
        assert np.array_equal(kl, want)
        assert half[np.argmin(kl)] == half[np.argmin(want)]


@pytest.mark.network
def test_kl_table_equals_per_candidate_levels_on_mobilenetv2(mobilenet_stats):
    for entry in mobilenet_stats[0].values():
        if entry.signed.sum() == 0:
            continue
        assert np.array_equal(entropy_divergences(entry.signed)[1],
                              _per_candidate_divergences(entry.signed)), entry.name  # fmt: skip


@pytest.mark.parametrize("histograms", [("signed",), ("abs",)])
def test_one_histogram_counts_what_both_count(tmp_path, histograms):
    """A method reads one histogram (entropy the signed, percentile |x|): pass 2 counting only
    that one gives it exactly as counting both does, and the other is marked not counted."""
    loaded = _toy(tmp_path / "toy.onnx", (1, 3, 12, 13))
    x = np.random.default_rng(5).standard_normal((4, 3, 12, 13)).astype(np.float32) * 2
    inputs = ArrayInputs("toy", "x", (1, 3, 12, 13), x, [""] * 4)
    observer = Observer(loaded)
    both = observe_ranges(observer, inputs)
    observe_histograms(observer, inputs, both)
    one = observe_ranges(observer, inputs)
    observe_histograms(observer, inputs, one, histograms=histograms)
    for name, entry in one.items():
        hist, want = entry.histogram(), both[name].histogram()
        if histograms == ("signed",):
            assert hist.counts is None and np.array_equal(hist.signed, want.signed), name
        else:
            assert hist.signed is None and np.array_equal(hist.counts, want.counts), name
    with pytest.raises(ValueError, match="histograms"):
        observe_histograms(observer, inputs, one, histograms=("both",))
