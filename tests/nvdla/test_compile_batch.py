"""A batch through the simulator equals the images run one at a time on the unit models.

The reference is the definition: every hardware operation decoded afresh from its registers and
run by the unit models, one image after another (``Runner(decode=False, batch=1)``). The batched
run decodes once, fuses what it can and replays on all images of a batch together.
"""

import numpy as np
import pytest
from test_compile_bitexact import _features_model, _residual_model

from dlakit.run.runner import Runner
from nvdla_cases import compile_case, segment_outputs

RNG = np.random.default_rng(11)


def _same_as_one_at_a_time(comp, x: np.ndarray, batches: list[int]) -> None:
    keep = set(segment_outputs(comp))
    reference = Runner(comp, "cpu", batch=1, decode=False)
    ref_out, ref_stats = reference.run({"x": x}, keep=keep)
    for batch in batches:
        runner = Runner(comp, "cpu", batch=batch)
        assert runner.fast_operations > 0
        out, stats = runner.run({"x": x}, keep=keep)
        assert stats.batch == min(batch, len(x))
        for name, value in ref_out.items():
            assert np.array_equal(out[name], value), f"batch {batch}: output {name}"
        for name in keep:
            assert np.array_equal(stats.kept[name], ref_stats.kept[name]), f"batch {batch}: {name}"


@pytest.fixture(params=["compiled", "torch"])
def fast_path(request, monkeypatch):
    """The compiled loops (CPU), or the whole-tensor torch path that CUDA runs."""
    if request.param == "torch":
        from dlakit.sim import sdp_fused

        monkeypatch.setattr(sdp_fused, "_KERNELS", [None])
    return request.param


@pytest.mark.parametrize("target", ["nv_small", "nv_full"])
def test_batch_of_n_equals_n_single_runs(tmp_path, target, fast_path):
    x = RNG.normal(size=(5, 3, 20, 20)).astype(np.float32)
    _, _, comp = compile_case(_features_model(tmp_path / "f.onnx"), x, target)
    # 5 at once, and 2 + 2 + 1 (a last, smaller batch).
    _same_as_one_at_a_time(comp, x, [5, 2])


def test_batched_residual_add_on_nv_full(tmp_path, fast_path):
    path, _ = _residual_model(tmp_path, 40)
    x = RNG.normal(size=(4, 4, 12, 12)).astype(np.float32)
    _, _, comp = compile_case(path, x, "nv_full")
    _same_as_one_at_a_time(comp, x, [4])
