"""The compiled calibration loops count exactly what the numpy definition counts, and pass 2
bins the activations pass 1 kept (no second model run) with the same result."""

import numpy as np
import pytest

from dlakit.quant.calibrators import NUM_BINS, SIGNED_BINS
from dlakit.quant.observe import TensorStats, observe_histograms, observe_ranges

kernels = pytest.importorskip("dlakit.quant.observe_kernels")


class _Observer:
    """Stands in for onnxruntime: fixed tensors per run, and counts the runs."""

    def __init__(self, runs):
        self.runs = runs
        self.tensors = sorted(runs[0])
        self.calls = 0

    def run(self, sample):
        self.calls += 1
        yield from self.runs[sample[1]["i"]].items()


class _Inputs:
    description = "test inputs"

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter([(f"#{i}", {"i": i}) for i in range(self.n)])


def _runs(rng, n):
    def tensor(shape, scale):
        x = (rng.standard_normal(shape) * scale).astype(np.float32)
        x.reshape(-1)[:7] = 0.0  # exact zeros, -0.0 among them
        x.reshape(-1)[7] = -0.0
        return x

    return [{"a": tensor((3, 50, 7), 3.0), "b": np.abs(tensor((2, 999), 1e-3)),
             "c": np.zeros((4, 4), np.float32)} for _ in range(n)]  # fmt: skip


@pytest.mark.parametrize("keep", [True, False])
def test_histograms_equal_the_numpy_definition(keep):
    from dlakit.quant.observe import Store

    rng = np.random.default_rng(3)
    runs = _runs(rng, 4)
    # The tensor's extreme value sits exactly on the last bin's edge.
    runs[2]["a"].reshape(-1)[100] = np.abs(np.concatenate([r["a"].ravel() for r in runs])).max()
    observer, inputs = _Observer(runs), _Inputs(4)
    store = Store(1 << 30) if keep else None
    stats = observe_ranges(observer, inputs, store=store)
    reference = {n: TensorStats(n, s.min, s.max) for n, s in stats.items()}
    observe_histograms(observer, inputs, reference, fused=False)
    calls = observer.calls
    observe_histograms(observer, inputs, stats, store=store)
    assert observer.calls == (calls if keep else calls + 4)  # kept: no second run
    for name in stats:
        assert np.array_equal(stats[name].counts, reference[name].counts), name
        assert np.array_equal(stats[name].signed, reference[name].signed), name
        assert stats[name].zeros == reference[name].zeros
        assert stats[name].counts.sum() == sum(r[name].size for r in runs)
    assert len(stats["a"].counts) == NUM_BINS and len(stats["a"].signed) == SIGNED_BINS


def test_a_store_over_budget_gives_up():
    from dlakit.quant.observe import Store

    store = Store(100)
    store.add([("a", np.zeros(10, np.float32))])
    assert store.complete
    store.add([("a", np.zeros(100, np.float32))])
    assert not store.complete and store.runs is None
