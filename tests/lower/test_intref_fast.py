"""The integer reference's compiled CACC + SDP pass gives the integers of its whole-tensor
functions (the definition), on random chains with extreme operands and on lowered models."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlakit import system
from dlakit.lower import intref
from dlakit.lower.intref import IntReference
from dlakit.lower.qgraph import (
    EwUnit,
    OutCvt,
    QConv,
    QGraph,
    QPool,
    QSdp,
    QTensor,
    SdpChain,
    XUnit,
)

pytest.importorskip("numba")

import numba

from dlakit.lower import intref_kernels  # needs numba


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


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("chunk_bytes", [intref.CHUNK_BYTES, 64])
@pytest.mark.parametrize("seed", range(6))
def test_pointwise_conv_by_int8_matmul_matches_the_definition(
    seed, chunk_bytes, monkeypatch, two_torch_threads
):
    """A 1x1 convolution fed INT8 by the chain before it runs as ``torch._int_mm``; seeds 4-5
    take every input and weight to the INT8 extremes, with sums beyond 2^24 (float64 in the
    definition) at 1100 channels. With chunks of 64 bytes, the 60 pixels go through the
    matrix product and the chain 8 at a time (the last one shorter), in two threads."""
    monkeypatch.setattr(intref, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(200 + seed)
    c, k = (1100, 24) if seed >= 4 else (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
    w = rng.integers(-128, 128, (k, c, 1, 1)).astype(np.int8)
    x = rng.integers(-128, 128, (3, c, 5, 4))
    if seed >= 4:
        w[:] = -128 if seed == 4 else 127
        x[:] = 127 if seed == 4 else -128
        x[0, : c // 2] = -x[0, : c // 2] - 1  # mixed signs: sums of every size
    first = QSdp("s", ["x"], ["h"], sdp=SdpChain(None, None, None, c=OutCvt(0, 1, 0)))
    ew = seed % 2 == 1
    # Odd seeds: random chains (with Y); even ones: a converter shift that keeps the sums'
    # top 8 bits, so that a sum off by a little changes the output.
    bound = 128 * int(np.abs(w.astype(np.int64)).sum(axis=(1, 2, 3)).max())
    plain = SdpChain(None, None, None, c=OutCvt(0, 1, max(0, bound.bit_length() - 8)))
    conv = QConv("c", ["h", "e"] if ew else ["h"], ["y"], weight=w, stride=(1, 1),
                 pads=(0, 0, 0, 0), cacc_truncate=int(rng.integers(0, 24)) if ew else 0,
                 sdp=_chain(rng, k, ew) if ew else plain)  # fmt: skip
    shapes = {"x": (1, c, 5, 4), "h": (1, c, 5, 4), "y": (1, k, 5, 4), "e": (1, k, 5, 4)}
    tensors = {n: QTensor(n, s, "int8", 1.0) for n, s in shapes.items()}
    graph = QGraph("t", "nv_full", [first, conv], tensors, ["x"], ["y"])
    feeds = {"x": x.astype(np.float32)}
    if ew:
        graph.inputs.append("e")
        feeds["e"] = rng.integers(-128, 128, (3, k, 5, 4)).astype(np.float32)
    fast = IntReference(graph, fused=True)
    got = fast.run(feeds)["y"]
    assert fast._matrices["c"] is not None  # the matmul path ran
    assert "s" not in fast._copies  # and its input needed no float copy
    assert torch.get_num_threads() == 2  # torch's threads back after the chunks
    assert np.array_equal(got, IntReference(graph, fused=False).run(feeds)["y"])


@pytest.mark.parametrize("seed", range(3))
def test_pointwise_conv_with_fp16_output_sums_by_int8_matmul(seed, monkeypatch):
    """A pointwise layer whose chain the compiled pass does not cover (FP16 out, as a
    classifier's) sums its INT8 input by the INT8 matrix product, then runs the definition's
    SDP: the result of the float convolution, extremes included."""
    rng = np.random.default_rng(600 + seed)
    c, k = (1300, 17) if seed == 2 else (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
    w = rng.integers(-128, 128, (k, c, 1, 1)).astype(np.int8)
    x = rng.integers(-128, 128, (5, c, 2, 1))
    if seed == 2:
        w[:] = -128
        x[:] = -128
        x[0, : c // 3] = 127
    first = QSdp("s", ["x"], ["h"], sdp=SdpChain(None, None, None, c=OutCvt(0, 1, 0)))
    bound = 128 * int(np.abs(w.astype(np.int64)).sum(axis=(1, 2, 3)).max())
    shift = max(0, bound.bit_length() - 17)
    chain = SdpChain(_x(rng, k), None, None, c=OutCvt(int(rng.integers(-99, 99)), 1, shift,
                                                      precision="fp16"))  # fmt: skip
    conv = QConv("c", ["h"], ["y"], weight=w, stride=(1, 1), pads=(0, 0, 0, 0), sdp=chain)
    tensors = {n: QTensor(n, (1, c, 2, 1), "int8", 1.0) for n in ("x", "h")}
    tensors["y"] = QTensor("y", (1, k, 2, 1), "fp16", None)
    graph = QGraph("t", "nv_full", [first, conv], tensors, ["x"], ["y"])
    feeds = {"x": x.astype(np.float32)}
    products = []
    int_mm = torch._int_mm
    monkeypatch.setattr(torch, "_int_mm", lambda *a, **kw: products.append(1) or int_mm(*a, **kw))
    got = IntReference(graph, fused=True).run(feeds)["y"]
    assert products  # the INT8 product summed it
    assert np.array_equal(got, IntReference(graph, fused=False).run(feeds)["y"])


@pytest.mark.parametrize("seed", range(8))
def test_depthwise_conv_in_the_compiled_pass_matches_the_definition(seed):
    """A depthwise convolution fed INT8 sums its taps in the compiled pass: strides,
    dilations, uneven pads with any pad value, and (seeds 6-7) INT8 extremes."""
    rng = np.random.default_rng(300 + seed)
    c = int(rng.integers(2, 40))
    kh, kw = [(3, 3), (5, 5), (3, 1), (1, 2)][seed % 4]
    stride, dilation = (1 + seed % 2, 1 + seed // 4 % 2), (1 + seed // 2 % 2, 1)
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    w = rng.integers(-128, 128, (c, 1, kh, kw)).astype(np.int8)
    x = rng.integers(-128, 128, (3, c, 9, 8))
    if seed >= 6:
        w[:] = -128
        x[:] = 127
        x[0, :, :4] = -128
    out_h = (9 + pads[0] + pads[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (8 + pads[1] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    first = QSdp("s", ["x"], ["h"], sdp=SdpChain(None, None, None, c=OutCvt(0, 1, 0)))
    ew = seed % 3 == 2
    bound = 128 * 128 * kh * kw
    plain = SdpChain(None, None, None, c=OutCvt(0, 1, max(0, bound.bit_length() - 8)))
    conv = QConv("c", ["h", "e"] if ew else ["h"], ["y"], weight=w, stride=stride,
                 pads=pads, dilation=dilation, groups=c, pad_value=int(rng.integers(-128, 128)),
                 cacc_truncate=int(rng.integers(0, 24)) if ew else 0,
                 sdp=_chain(rng, c, ew) if ew else plain)  # fmt: skip
    out_shape = (1, c, out_h, out_w)
    shapes = {"x": (1, c, 9, 8), "h": (1, c, 9, 8), "y": out_shape, "e": out_shape}
    tensors = {n: QTensor(n, s, "int8", 1.0) for n, s in shapes.items()}
    graph = QGraph("t", "nv_full", [first, conv], tensors, ["x"], ["y"])
    feeds = {"x": x.astype(np.float32)}
    if ew:
        graph.inputs.append("e")
        feeds["e"] = rng.integers(-128, 128, (3, *out_shape[1:])).astype(np.float32)
    fast = IntReference(graph, fused=True)
    got = fast.run(feeds)["y"]
    assert fast._filters["c"] is not None  # the compiled depthwise pass ran
    assert "s" not in fast._copies
    assert np.array_equal(got, IntReference(graph, fused=False).run(feeds)["y"])


@pytest.mark.parametrize("seed", range(6))
def test_depthwise_int16_pairs_give_the_exact_sums(seed):
    """The 3x3 depthwise taps summed in int16 pairs (``pairs``) give the int64 sums of the
    definition at every pixel, borders (the pad value) included, with the extremes that
    bound a pair: inputs -128 and 127, weights +-127 and a -128 beside a 127."""
    rng = np.random.default_rng(500 + seed)
    c = int(rng.integers(2, 70))
    stride, dilation = (1 + seed % 2, 1 + seed // 2 % 2), (1 + seed // 4, 1)
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    w = rng.integers(-127, 128, (c, 1, 3, 3))
    x = rng.integers(-128, 128, (2, c, 9, 8))
    if seed >= 3:
        w[:, :, :2] = rng.choice([-127, 127], (c, 1, 2, 3))
        w[0, 0, 0] = [-128, 127, -127]  # a -128 whose pair partner is not -128
        w[0, 0, 2, 2] = -128  # the ninth tap, alone
        x[0] = -128
        x[1, :, ::2] = 127
    pad = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    layer = QConv("c", ["x"], ["y"], weight=w.astype(np.int8), stride=stride, pads=pads,
                  dilation=dilation, groups=c, pad_value=pad)  # fmt: skip
    weight = intref.depthwise_weights(layer)
    paired = intref_kernels.pairs(weight, pad)
    assert paired.shape == (9, c)
    want = intref.conv_accumulate(torch.as_tensor(x), layer).permute(0, 2, 3, 1).numpy()
    top, left = pads[:2]
    geometry = np.array([*stride, *dilation, top, left, pad, *want.shape[1:3]], np.int64)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.int8)
    assert np.array_equal(_pair_sums(nhwc, paired, geometry), want)


@numba.njit
def _pair_sums(x, paired, geometry):
    out_h, out_w = geometry[7], geometry[8]
    sums = np.empty((x.shape[0], out_h, out_w, x.shape[3]), np.int32)
    pad_row = np.full(x.shape[3], geometry[6], dtype=np.int8)
    for b in range(x.shape[0]):
        for oy in range(out_h):
            for ox in range(out_w):
                intref_kernels._pair_pixel(sums[b, oy], ox, x, b, oy, ox, geometry, paired,
                                           pad_row)  # fmt: skip
    return sums


def test_depthwise_pairs_refused_where_a_pair_could_leave_int16():
    """Two -128 weights in one pair (128 * 128 * 2 = 2^15), a pad value outside INT8 or a
    kernel other than 3x3 keep the int32 taps; the layer's result is the definition's."""
    w = np.full((3, 3, 4), 127, dtype=np.int32)
    assert intref_kernels.pairs(w, 0).shape == (9, 4)
    assert intref_kernels.pairs(w, 128).shape == (0, 4)
    assert intref_kernels.pairs(w[:2], 0).shape == (0, 4)
    w[0, 0, 1] = w[0, 1, 1] = -128  # taps 0 and 1: one pair
    assert intref_kernels.pairs(w, 0).shape == (0, 4)
    w[0, 1, 1] = 127
    w[2, 2, 1] = -128  # the ninth tap is summed alone
    assert intref_kernels.pairs(w, 0).shape == (9, 4)
    rng = np.random.default_rng(7)
    weight = rng.integers(-127, 128, (16, 1, 3, 3)).astype(np.int8)
    weight[3, 0, 1, 1] = weight[3, 0, 1, 2] = -128  # taps 4 and 5: one pair
    conv = QConv("c", ["h"], ["y"], weight=weight, pads=(1, 1, 1, 1), groups=16, pad_value=-128,
                 sdp=SdpChain(None, None, None, c=OutCvt(0, 1, 9)))  # fmt: skip
    first = QSdp("s", ["x"], ["h"], sdp=SdpChain(None, None, None, c=OutCvt(0, 1, 0)))
    shapes = {"x": (1, 16, 6, 7), "h": (1, 16, 6, 7), "y": (1, 16, 6, 7)}
    tensors = {n: QTensor(n, s, "int8", 1.0) for n, s in shapes.items()}
    graph = QGraph("t", "nv_full", [first, conv], tensors, ["x"], ["y"])
    feeds = {"x": rng.choice([-128, 127], (2, 16, 6, 7)).astype(np.float32)}
    fast = IntReference(graph, fused=True)
    got = fast.run(feeds)["y"]
    assert fast._pairs["c"].shape[0] == 0  # the int32 taps ran
    assert np.array_equal(got, IntReference(graph, fused=False).run(feeds)["y"])


def test_int8_matmul_is_refused_where_it_would_saturate(monkeypatch):
    """A kernel that shifts the input to UINT8 and sums its products in 16-bit saturating
    pairs (``vpmaddubsw``, CPUs without VNNI) fails the probe, and pointwise layers then take
    the float convolution."""

    def saturating(a, b, out=None):
        products = (a.long() + 128).unsqueeze(2) * b.long().unsqueeze(0)
        c = products.shape[1] // 2 * 2
        paired = (products[:, 0:c:2] + products[:, 1:c:2]).clamp(-(2**15), 2**15 - 1)
        sums = paired.sum(1) + products[:, c:].sum(1) - 128 * b.long().sum(0)
        return sums.to(torch.int32) if out is None else out.copy_(sums)

    monkeypatch.setattr(torch, "_int_mm", saturating)
    monkeypatch.setattr(system, "_INT8_MATMUL_EXACT", [])
    layer = QConv("c", ["x"], ["y"], weight=np.ones((4, 8, 1, 1), np.int8), stride=(1, 1),
                  pads=(0, 0, 0, 0), sdp=SdpChain(None, None, None, c=OutCvt(0, 1, 0)))  # fmt: skip
    assert intref.matmul_weights(layer) is None
    monkeypatch.setattr(system, "_INT8_MATMUL_EXACT", [])
    monkeypatch.undo()
    assert intref.matmul_weights(layer) is not None


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


def test_quantize_casts_the_first_convs_input_channels_last():
    """A quantize whose result the next layer convolves with float sums (a model's first
    convolution) also writes it as float32 channels-last, which that convolution reads; with
    NaN in the input the definition still names the tensor."""
    from dlakit.errors import DlakitError
    from dlakit.lower.qgraph import QQuantize

    rng = np.random.default_rng(8)
    quantize = QQuantize("q", ["x"], ["h"], scale=0.02)
    w = rng.integers(-128, 128, (6, 3, 3, 3)).astype(np.int8)
    conv = QConv("c", ["h"], ["y"], weight=w, stride=(2, 2), pads=(1, 1, 0, 1),
                 sdp=SdpChain(None, None, None, c=OutCvt(3, 1, 10)))  # fmt: skip
    tensors = {"x": QTensor("x", (1, 3, 9, 8), "fp32"), "h": QTensor("h", (1, 3, 9, 8), "int8"),
               "y": QTensor("y", (1, 6, 4, 4), "int8", 1.0)}  # fmt: skip
    graph = QGraph("t", "nv_full", [quantize, conv], tensors, ["x"], ["y"])
    x = (rng.normal(size=(3, 3, 9, 8)) * 2).astype(np.float32)
    fast = IntReference(graph, fused=True)
    assert "q" in fast._copies
    assert np.array_equal(
        fast.run({"x": x})["y"], IntReference(graph, fused=False).run({"x": x})["y"]
    )
    x[1, 2, 3, 4] = np.nan
    with pytest.raises(DlakitError, match="tensor 'x' holds NaN"):
        fast.run({"x": x})


# ------------------------------------------------------------- the compiled pass, property-based

INT16_EDGES = [-32768, -32767, -1, 0, 1, 2, 255, 32767]
SHIFTS = [0, 1, 2, 15, 16, 17, 26, 31, 32, 33, 34, 48, 49, 50, 63]


def _int16s(k: int):
    value = st.one_of(st.sampled_from(INT16_EDGES), st.integers(-(2**15), 2**15 - 1))
    per_channel = st.lists(value, min_size=k, max_size=k)
    return st.one_of(per_channel, per_channel.map(lambda v: v[:1])).map(np.array)


def _x_units(k: int):
    return st.builds(
        XUnit,
        alu=st.sampled_from([None, "sum", "max", "min"]),
        alu_operand=_int16s(k),
        alu_shift=st.sampled_from([0, 1, 15, 16, 31, 32, 40, 63]),
        mul=st.one_of(st.none(), _int16s(k)),
        prelu=st.booleans(),
        truncate=st.one_of(st.sampled_from(SHIFTS), st.integers(0, 63)),
        relu=st.booleans(),
    )


def _requant(k: int):
    """The chain lowering writes most: X1 multiplier (truncate 0), X2 bias + multiplier +
    truncate (+ ReLU), plain output converter: the folded and fused path of the pass."""
    x1 = st.builds(XUnit, mul=_int16s(k))
    x2 = st.builds(XUnit, alu=st.sampled_from([None, "sum"]), alu_operand=_int16s(k),
                   alu_shift=st.sampled_from([0, 4, 16]), mul=_int16s(k),
                   truncate=st.sampled_from(SHIFTS), relu=st.booleans())  # fmt: skip
    return st.tuples(x1, x2)


CVTS = st.one_of(
    st.just(OutCvt()),
    st.builds(OutCvt, offset=st.one_of(st.sampled_from([0, -1, 2**31 - 1, -(2**31)]),
                                       st.integers(-(2**20), 2**20)),
              scale=st.sampled_from(INT16_EDGES), shift=st.sampled_from(SHIFTS)),
)  # fmt: skip
EWS = st.one_of(
    st.none(),
    st.builds(EwUnit, operand=st.just("e"), cvt_offset=st.integers(-(2**31), 2**31 - 1),
              cvt_scale=st.sampled_from(INT16_EDGES), cvt_truncate=st.sampled_from(SHIFTS),
              alu=st.sampled_from(["sum", "max", "min"])),
)  # fmt: skip


@st.composite
def _cases(draw):
    k = draw(st.integers(1, 5))
    if draw(st.booleans()):
        x1, x2 = draw(_requant(k))
    else:
        x1, x2 = draw(st.one_of(st.none(), _x_units(k))), draw(st.one_of(st.none(), _x_units(k)))
    chain = SdpChain(x1, x2, draw(EWS), c=draw(CVTS))
    # Inputs: INT8 from memory (no CACC), or accumulators below a bound (float32 sums below
    # 2^24, float64 below 2^33) with a CACC truncate.
    bound = draw(st.sampled_from([128, 2**10, 2**23, 2**33 - 1]))
    memory = bound == 128 and draw(st.booleans())
    truncate = -1 if memory else draw(st.sampled_from([0, 1, 15, 16, 17, 31]))
    edges = [bound, -bound, 0, -1, 1, bound // 2, -(bound // 2) - 1]
    value = st.one_of(st.sampled_from(edges), st.integers(-bound, bound))
    pixels = draw(st.integers(1, 7))
    acc = np.array(draw(st.lists(value, min_size=pixels * k, max_size=pixels * k)))
    ew = np.array(draw(st.lists(st.integers(-128, 127), min_size=pixels * k,
                                max_size=pixels * k)))  # fmt: skip
    if memory:
        acc = np.clip(acc, -128, 127)
    return chain, truncate, bound, acc.reshape(pixels, k), ew.reshape(pixels, k)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(_cases())
def test_compiled_pass_matches_the_definition(case):
    """``intref_kernels.chain`` (with its float copy) against ``cacc_output`` + ``sdp``, on random
    chains with edge shifts (0, >= the input width), saturating operands, negative values,
    PReLU, a Y ALU with a second tensor, and the folded X1 + X2 of the common requantization."""
    chain, truncate, bound, acc, ew = case
    x = torch.as_tensor(acc.T.reshape(1, acc.shape[1], 1, -1))  # [1, K, 1, pixels]
    if truncate >= 0:
        x = intref.cacc_output(x, truncate)
    e = torch.as_tensor(ew.T.reshape(x.shape))
    want = intref.sdp(x, chain, e).reshape(acc.shape[1], -1).T.numpy()
    # Sums as the float convolution (float32 below 2^24, else float64) or the INT8 matrix
    # product (int32) deliver them.
    kinds = [np.int8] if truncate < 0 else [np.float32 if bound < 2**24 else np.float64]
    if truncate >= 0 and bound < 2**31:
        kinds.append(np.int32)
    packed = intref_kernels.pack(chain, acc.shape[1], truncate, bound)
    for kind in kinds:
        # float sums are cleared (the shared accumulator) or not; int32 ones never are
        for clear in [False, True] if kind in (np.float32, np.float64) else [False]:
            for parallel in (False, True):  # on the calling thread, and on the pool
                out = np.empty(acc.shape, np.int8)
                wide = np.empty(acc.shape, np.float32)
                sums = acc.astype(kind)
                intref_kernels.chain(sums, out, *packed, ew.astype(np.int8), wide, clear,
                                     parallel)  # fmt: skip
                assert np.array_equal(out, want)
                assert np.array_equal(wide, want.astype(np.float32))
                assert not clear or not sums.any()  # the sums it read set to 0


@pytest.mark.parametrize("bound", [2**10, 2**23])
def test_x1_folds_into_x2_only_where_its_saturation_cannot_clip(bound):
    """X1 ``x * 32767`` clips at 2^31 for accumulators above 65537: there the pass must keep X1
    (and give sat32's 32 after X2's ``>> 26``, not 127); below it, X1 folds into X2."""
    chain = SdpChain(XUnit(mul=np.array([32767])), XUnit(mul=np.array([1]), truncate=26))
    cfg, *rows = intref_kernels.pack(chain, 1, 0, bound)
    assert bool(cfg[1]) == (bound * 32767 >= 2**31)  # X1 kept, or folded away
    acc = np.array([[bound], [-bound], [2**10], [3]], np.float32)
    out = np.empty(acc.shape, np.int8)
    intref_kernels.chain(acc, out, cfg, *rows)
    x = torch.as_tensor(acc.astype(np.int64).reshape(1, 1, 1, -1))
    want = intref.sdp(intref.cacc_output(x, 0), chain).reshape(-1, 1).numpy()
    assert np.array_equal(out, want)
    if bound == 2**23:
        assert out[:2, 0].tolist() == [32, -32]


@pytest.mark.parametrize("kind", [np.int32, np.float32])
@pytest.mark.parametrize("relu", [False, True])
def test_one_pass_rounds_ties_and_saturates_like_the_definition(kind, relu):
    """The lowering's requantization (X1 multiplier folded into X2's bias, multiplier,
    truncate), with a Y SUM and a converter, runs in the one-pass loop (``_one_pass_unit``):
    ties of the truncate round away from zero, and the Y sum saturates to 32 bits before a
    converter whose offset sits at the top of the range would read it."""
    k = 3
    acc = np.array([[-3, -1, 1], [3, -5, 5], [2**30, 2**30, -(2**30)], [-7, 7, 0]], np.int64)
    x1 = XUnit(mul=np.array([1, 1, -1]))
    x2 = XUnit(alu="sum", alu_operand=np.array([0, 0, 1]), mul=np.array([1, 1, 1]),
               truncate=1, relu=relu)  # fmt: skip
    ew_unit = EwUnit("e", -(2**31), 32767, 0, "sum")
    ew = np.array([[0, 0, 0], [0, 0, 0], [127, 127, -128], [0, 0, 0]], np.int64)
    for c in (OutCvt(), OutCvt(2**31 - 2, 1, 0), OutCvt(-3, 5, 2)):
        for y in (None, ew_unit):
            chain = SdpChain(x1, x2, y, c=c)
            cfg, *rows = intref_kernels.pack(chain, k, 0, 2**30)
            assert intref_kernels._one_pass_unit(cfg, False) == 7  # X1 folded into X2
            x = torch.as_tensor(acc.T.reshape(1, k, 1, -1))
            e = torch.as_tensor(ew.T.reshape(x.shape))
            want = intref.sdp(intref.cacc_output(x, 0), chain, e).reshape(k, -1).T.numpy()
            out = np.empty(acc.shape, np.int8)
            intref_kernels.chain(acc.astype(kind), out, cfg, *rows, ew.astype(np.int8))
            assert np.array_equal(out, want), (c, y)


def test_serial_pass_is_its_own_compilation(tmp_path):
    """The serial pass never touches numba's thread pool (not thread-safe: concurrent use
    aborts the process), also after the parallel one of the same signature was compiled and
    cached, so Python threads can run it side by side. In a subprocess with a cache of its
    own, since a failure aborts and the shared cache could hold either compilation."""
    import os
    import subprocess
    import sys

    script = """
import threading, numpy as np
from dlakit.lower import intref_kernels as K
from dlakit.lower.qgraph import OutCvt, SdpChain, XUnit
packed = K.pack(SdpChain(None, XUnit(mul=np.array([3]), truncate=2), None, c=OutCvt()), 8, 0, 99)
acc = np.ones((1 << 16, 8), np.int32)
out = np.empty(acc.shape, np.int8)
K.chain(acc, out, *packed, parallel=True)
def work(i):
    for _ in range(50):
        K.chain(acc[i << 15 : (i + 1) << 15], out[i << 15 : (i + 1) << 15], *packed,
                parallel=False)
threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
assert (out == 1).all()
"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]


@settings(max_examples=60, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    pad_value=st.sampled_from([0, 1, -5, 127, -128, (1 << 18) - 1, -(1 << 18)]),
    recips=st.tuples(
        *[st.sampled_from([0x10000, 0x1FFFF, 0x8000, 0x18000, 0x5555, 0x2493, 1, 0])] * 2
    ),
    extreme=st.sampled_from([None, -128, 127]),
    seed=st.integers(0, 2**16),
)
def test_compiled_average_pool_matches_the_definition(
    kernel, stride, pads, pad_value, recips, extreme, seed
):
    """The compiled average pool equals ``intref.pool``: any window, stride, pads and pad
    value, reciprocals with ties and saturation, INT8 extremes, also through the executor."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 20)), kernel[0] + int(rng.integers(0, 6)), kernel[1] + 3
    x = rng.integers(-128, 128, (2, c, h, w)).astype(np.int8)
    if extreme is not None:
        x[0] = extreme
    layer = QPool("p", ["x"], ["y"], method="avg", kernel=kernel, stride=stride, pads=pads,
                  pad_value=pad_value, recip_w=recips[0], recip_h=recips[1])  # fmt: skip
    want = intref.pool(torch.as_tensor(x).to(torch.int64), layer)
    graph = QGraph("t", "nv_full", [layer], {"x": QTensor("x", (1, c, h, w), "int8", 1.0),
                   "y": QTensor("y", (1, *want.shape[1:]), "int8", 1.0)}, ["x"], ["y"])  # fmt: skip
    reference = IntReference(graph, fused=True)
    values = {"x": torch.as_tensor(x).contiguous(memory_format=torch.channels_last)}
    reference._pool(layer, values)
    assert values["y"].dtype == torch.int8
    assert torch.equal(values["y"].to(torch.int64), want)
