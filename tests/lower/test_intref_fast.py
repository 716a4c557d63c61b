"""The integer reference's compiled CACC + SDP pass gives the integers of its whole-tensor
functions (the definition), on random chains with extreme operands and on lowered models."""

import numpy as np
import pytest

from dlakit.lower.intref import IntReference
from dlakit.lower.qgraph import EwUnit, OutCvt, QConv, QGraph, QSdp, QTensor, SdpChain, XUnit

pytest.importorskip("numba")


def _x(rng, k: int) -> XUnit | None:
    if rng.random() < 0.2:
        return None
    per_channel = rng.random() < 0.5
    n = k if per_channel else 1
    return XUnit(
        alu=[None, "sum", "max", "min"][int(rng.integers(0, 4))],
        alu_operand=rng.integers(-(2**15), 2**15, n),
        alu_shift=int(rng.integers(0, 40)),
        mul=rng.integers(-(2**15), 2**15, n) if rng.random() < 0.8 else None,
        prelu=bool(rng.random() < 0.3),
        truncate=int(rng.integers(0, 64)),
        relu=bool(rng.random() < 0.3),
    )


def _chain(rng, k: int, ew: bool) -> SdpChain:
    y = None
    if ew:
        alu = ["sum", "max", "min"][int(rng.integers(0, 3))]
        y = EwUnit("e", int(rng.integers(-200, 200)), int(rng.integers(-(2**15), 2**15)),
                   int(rng.integers(0, 40)), alu)  # fmt: skip
    return SdpChain(
        _x(rng, k),
        _x(rng, k),
        y,
        c=OutCvt(
            int(rng.integers(-(2**20), 2**20)),
            int(rng.integers(-(2**15), 2**15)),
            int(rng.integers(0, 40)),
        ),
    )


def _graph(layer, shapes):
    tensors = {n: QTensor(n, s, "int8", 1.0) for n, s in shapes.items()}
    return QGraph("t", "nv_full", [layer], tensors, [layer.inputs[0]], layer.outputs)


def _both(graph, feeds):
    fast = IntReference(graph, fused=True).run(feeds)
    slow = IntReference(graph, fused=False).run(feeds)
    for name in graph.outputs:
        assert np.array_equal(fast[name], slow[name]), name


@pytest.mark.parametrize("seed", range(8))
def test_conv_chain_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    groups = [1, 2, 6][seed % 3]
    c, k = 6, 12
    w = rng.integers(-127, 128, (k, c // groups, 3, 3)).astype(np.int8)
    if seed == 7:  # sums beyond 2^24: the float64 path
        w = np.full((k, c // groups, 3, 3), 127, np.int8)
    ew = seed % 2 == 1
    layer = QConv("c", ["x", "e"] if ew else ["x"], ["y"], weight=w, stride=(1, 2),
                  pads=(1, 0, 1, 2), groups=groups, pad_value=int(rng.integers(-128, 128)),
                  cacc_truncate=int(rng.integers(0, 24)), sdp=_chain(rng, k, ew))  # fmt: skip
    x = rng.integers(-128, 128, (3, c, 7, 9))
    out_shape = (1, k, 7, 5)
    graph = _graph(layer, {"x": (1, c, 7, 9), "y": out_shape, "e": out_shape})
    feeds = {"x": x.astype(np.float32)}
    if ew:  # the Y operand is a graph input here: fed INT8, dequantized at scale 1
        graph.inputs.append("e")
        feeds["e"] = rng.integers(-128, 128, (3, *out_shape[1:])).astype(np.float32)
    _both(graph, feeds)


@pytest.mark.parametrize("seed", range(4))
def test_standalone_sdp_matches_the_definition(seed):
    rng = np.random.default_rng(100 + seed)
    layer = QSdp("s", ["x"], ["y"], sdp=_chain(rng, 5, False))
    graph = _graph(layer, {"x": (1, 5, 4, 3), "y": (1, 5, 4, 3)})
    x = rng.integers(-128, 128, (2, 5, 4, 3)).astype(np.float32)
    _both(graph, {"x": x})


def test_quantize_matches_the_definition_and_still_names_nan():
    from dlakit.errors import DlakitError
    from dlakit.lower.qgraph import QQuantize

    rng = np.random.default_rng(7)
    scale = 0.037
    layer = QQuantize("q", ["x"], ["y"], scale=scale)
    graph = QGraph("t", "nv_full", [layer], {"x": QTensor("x", (1, 3, 5, 7), "fp32"),
                   "y": QTensor("y", (1, 3, 5, 7), "int8", scale)}, ["x"], ["y"])  # fmt: skip
    x = (rng.normal(size=(4, 3, 5, 7)) * 3).astype(np.float32)
    # Halves of the scale (ties round away from zero), saturation, zeros and signed zeros.
    x.reshape(-1)[:8] = np.float32([0.5, -0.5, 1.5, -1.5, 1e9, -1e9, 0.0, -0.0]) * scale
    _both(graph, {"x": x})
    x.reshape(-1)[3] = np.nan
    with pytest.raises(DlakitError, match="tensor 'x' holds NaN"):
        IntReference(graph, fused=True).run({"x": x})
