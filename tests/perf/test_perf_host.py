"""The ``host`` target times layers for real on a CUDA GPU (skipped without one)."""

from __future__ import annotations

import pytest

from dlakit.perf.host import time_layers
from dlakit.perf.layers import HwLayer


def _conv(c: int, k: int, hw: int) -> HwLayer:
    return HwLayer(
        name=f"conv{c}",
        kind="conv",
        ops=["Conv"],
        nodes=["conv"],
        engine="fallback",
        in_shape=(c, hw, hw),
        out_shape=(k, hw, hw),
        kernel=(3, 3),
        weights=k * c * 9,
        in_elems=c * hw * hw,
        out_elems=k * hw * hw,
        macs=k * c * 9 * hw * hw,
    )


@pytest.mark.gpu
def test_host_timing_is_positive_and_grows_with_work():
    small, big = time_layers([_conv(64, 64, 56), _conv(256, 256, 112)], batch=8, runs=20)
    assert 0 < small.median_s < big.median_s
    # 256->256 at 112x112 x8 is 59 GMAC: at most a few hundred TFLOP/s on any GPU today.
    assert big.median_s > big.layer.macs * 8 / 2e15
