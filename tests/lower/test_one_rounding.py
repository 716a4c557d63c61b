"""Every requantization rounds once: the integer path equals a float64 evaluation of the same
register values rounded once (half away from zero), byte for byte, on every layer kind.

The float64 reference below is written from the register semantics (``nvdla.md`` §5.4/§5.5),
not from ``intref``: each unit's ALU, multiplier and shift are applied as exact real operations
(a right shift is a division by a power of two, no rounding), ReLU/clip where the chain applies
them, and the result is rounded once and saturated. A chain that rounds twice (the earlier X1
then X2 split) differs from it, which ``test_the_reference_catches_double_rounding`` shows.
"""

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dlakit.accuracy.compare import float_run
from dlakit.graph import load_model, save_model
from dlakit.lower import hwparams, intref
from dlakit.lower.intref import IntReference
from dlakit.lower.lowering import quantize_model
from dlakit.lower.qgraph import OutCvt, QConv, QPool, QSdp, SdpChain, XUnit

RNG = np.random.default_rng(17)


def _channel(values, ndim: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return v.reshape((1, -1) + (1,) * (ndim - 2)) if v.size > 1 else v.reshape(())


def exact_chain(
    acc: np.ndarray,
    chain: SdpChain,
    ew: np.ndarray | None = None,
    *,
    rounded: bool = True,
    clip_out: bool = True,
) -> np.ndarray:
    """float64 of the chain's register values, rounded once (``rounded``) and saturated
    (``clip_out``); in-range data (no 32-bit saturation on the way). With ``clip_out`` off and a
    chain without Y and C, X's last shift is the rounding: X's integer result."""
    v = np.asarray(acc, dtype=np.float64)
    for unit in (chain.x1, chain.x2):
        if unit is None:
            continue
        if unit.alu is not None:
            op = _channel(unit.alu_operand, v.ndim) * 2.0**unit.alu_shift
            v = (
                v + op
                if unit.alu == "sum"
                else (np.minimum if unit.alu == "min" else np.maximum)(v, op)
            )
        if unit.mul is not None:
            v = v * _channel(unit.mul, v.ndim)
        v = v / 2.0**unit.truncate
        if unit.relu:
            v = np.maximum(v, 0.0)
    if chain.y is not None:
        y = chain.y
        v = v + (np.asarray(ew, np.float64) - y.cvt_offset) * y.cvt_scale / 2.0**y.cvt_truncate
    c = chain.c
    v = (v - c.offset) * c.scale / 2.0**c.shift
    if not rounded:
        return v
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    if not clip_out:
        return r
    r = np.clip(r, *hwparams.output_range(c.precision))
    return r.astype(np.float16).astype(np.float64) if c.precision == "fp16" else r


def _integer(acc: np.ndarray, chain: SdpChain, ew: np.ndarray | None = None) -> np.ndarray:
    ew_t = None if ew is None else torch.as_tensor(ew)
    return intref.sdp(torch.as_tensor(acc), chain, ew_t).to(torch.float64).numpy()


def _accs(rescale: np.ndarray, n: int = 4000, reach: float = 180.0) -> np.ndarray:
    """Accumulator values per channel spreading the output over about +-reach units."""
    k = len(rescale)
    out = RNG.uniform(-reach, reach, (n, k)) / np.abs(rescale)
    return np.round(out).astype(np.int64).reshape(n, k, 1, 1)


SPREAD = 2.0 ** RNG.uniform(-10, 0, 24)  # per-channel weight scales over 10 octaves (depthwise)

CASES = {
    # name: (acc_scale, bias (real), out_scale, clip, ew_scale, out precision)
    "per-tensor conv + bias": (np.full(16, 0.02 * 0.004), RNG.normal(0, 0.2, 16), 0.03,
                               (None, None), None, "int8"),
    "per-channel conv + bias + relu": (0.02 * 0.004 * SPREAD, RNG.normal(0, 0.05, 24), 0.03,
                                       (0.0, None), None, "int8"),
    "per-channel + relu6 biting": (0.02 * 0.004 * SPREAD, RNG.normal(0, 0.05, 24), 0.08,
                                   (0.0, 6.0), None, "int8"),
    "per-tensor + relu6 biting": (np.full(8, 1e-4), RNG.normal(0, 0.05, 8), 0.08, (0.0, 6.0),
                                  None, "int8"),
    "standalone bn (negative gamma)": (0.05 * RNG.uniform(-2, 2, 12), RNG.normal(0, 1, 12), 0.04,
                                       (None, None), None, "int8"),
    "requantize": (np.array([0.031]), None, 0.047, (None, None), None, "int8"),
    "conv + residual add": (0.02 * 0.004 * SPREAD, RNG.normal(0, 0.05, 24), 0.05, (None, None),
                            0.04, "int8"),
    "add of two tensors": (np.array([0.06]), None, 0.05, (None, None), 0.045, "int8"),
    "fc with fp16 output": (0.02 * 0.004 * SPREAD, RNG.normal(0, 0.5, 24), 6.0 / 2048,
                            (None, None), None, "fp16"),
}  # fmt: skip


EW = {name for name, case in CASES.items() if case[4] is not None}


def _case(name: str):
    """(chain, accumulators, Y operand or None) of a case; the accumulator bound the lowering
    would pass (a convolution's ``128 * sum |w|``) is the data's largest value here."""
    acc_scale, bias, out_scale, clip, ew_scale, precision = CASES[name]
    rescale = np.broadcast_to(acc_scale / out_scale, (len(np.atleast_1d(acc_scale)),))
    reach = 3000.0 if precision == "fp16" else 180.0
    acc = _accs(rescale, reach=reach)
    if len(rescale) == 1:
        acc = acc.repeat(6, axis=1)
    bound = np.abs(acc).max(axis=(0, 2, 3)) if len(rescale) > 1 else float(np.abs(acc).max())
    chain = hwparams.conv_chain(acc_scale, bias, out_scale, clip, ew_scale, "b", precision,
                                bound)  # fmt: skip
    ew = RNG.integers(-128, 128, acc.shape) if ew_scale is not None else None
    return chain, acc, ew


@pytest.mark.parametrize("name", sorted(set(CASES) - EW))
def test_chain_equals_float64_rounded_once(name):
    chain, acc, ew = _case(name)
    got, want = _integer(acc, chain, ew), exact_chain(acc, chain, ew)
    assert np.array_equal(got, want), f"{int((got != want).sum())} of {got.size} values differ"
    qmax = hwparams.output_range(chain.c.precision)[1]
    assert np.mean(np.abs(want) < 0.95 * qmax) > 0.3  # the data spans the range, not saturation


@pytest.mark.parametrize("name", sorted(EW))
def test_ew_add_rounds_once_on_the_grid_of_its_operands(name):
    """A Y add: X's result and the converted operand stand on a grid of 2^-H output units (the
    32-bit sum and the converter's INT8 x INT16 product allow no finer), and C rounds their sum
    once. Exact against float64 with X rounded to that grid; against the once-rounded exact sum
    it differs only by one unit, only where that sum lies within 2^-H of a half."""
    chain, acc, ew = _case(name)
    h = chain.c.shift
    assert h >= 14 and chain.y.cvt_truncate == 0  # the operand is exact on the grid
    got = _integer(acc, chain, ew)
    assert np.array_equal(got, on_grid_reference(acc, chain, ew))
    differ = _differ_only_near_half(got, acc, chain, ew)
    assert differ.mean() < 2.0**-12


def on_grid_reference(acc: np.ndarray, chain: SdpChain, ew: np.ndarray) -> np.ndarray:
    """float64 of a Y-add chain where X's last shift rounds (to the 2^-H grid) and the sum is
    rounded once by C; the converted operand is exact on the grid (cvt truncate 0)."""
    grid = exact_chain(acc, SdpChain(chain.x1, chain.x2, c=OutCvt()), None, clip_out=False)
    v = (grid + ew * chain.y.cvt_scale / 2.0**chain.y.cvt_truncate) / 2.0**chain.c.shift
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -128, 127)


def _differ_only_near_half(got, acc, chain, ew) -> np.ndarray:
    """Where ``got`` differs from the once-rounded exact sum: by one unit, and only where that
    sum lies within 2^-H of a half. Returns the mask of differences."""
    once = exact_chain(acc, chain, ew)
    exact = exact_chain(acc, chain, ew, rounded=False)
    differ = got != once
    assert np.all(np.abs(got - once)[differ] == 1)
    near_half = np.abs(np.abs(exact - np.trunc(exact)) - 0.5) <= 2.0**-chain.c.shift
    assert np.all(near_half[differ])
    return differ


@pytest.mark.parametrize("name", sorted(CASES))
def test_registers_hold_the_scales_to_15_bits(name):
    """The float64 reference is of the register values; these are the calibrated scales to
    the precision of a 15-bit mantissa (round to nearest: relative error <= 2^-15)."""
    acc_scale, _, out_scale, *_ = CASES[name]
    chain, _, _ = _case(name)
    v = np.ones(len(np.atleast_1d(acc_scale)))
    for unit in (chain.x1, chain.x2):
        if unit is not None:
            v = v * (1 if unit.mul is None else np.asarray(unit.mul, np.float64))
            v = v / 2.0**unit.truncate
    held = v / 2.0**chain.c.shift
    wanted = np.asarray(acc_scale, dtype=np.float64) / out_scale
    assert np.all(np.abs(held / wanted - 1) <= 2.0**-15)


def test_the_reference_catches_double_rounding():
    """The earlier split (X1 rounds to a mantissa's shift, X2 rounds again) is caught."""
    rescale = 0.02 * 0.004 * SPREAD / 0.03
    m, own = hwparams.mantissas(rescale)
    base = int(own.min())
    d = int(own.max()) - base
    double = SdpChain(
        x1=XUnit(mul=m, truncate=base),
        x2=XUnit(mul=(np.int64(1) << (d - (own - base))).astype(np.int64), truncate=d),
    )
    acc = _accs(rescale)
    assert not np.array_equal(_integer(acc, double), exact_chain(acc, double))


@pytest.mark.parametrize("kernel", [(3, 3), (2, 3), (7, 7), (8, 8)])
def test_average_pool_rounds_once(kernel):
    recip_w, recip_h = hwparams.pool_reciprocals(kernel)
    assert recip_w == 1 << 16  # the width stage multiplies by one: exact
    x = RNG.integers(-128, 128, (3, 4, 9, 9))
    layer = QPool("p", ["x"], ["y"], method="avg", kernel=kernel, stride=(1, 1),
                  recip_w=recip_w, recip_h=recip_h)  # fmt: skip
    got = intref.pool(torch.as_tensor(x), layer).numpy()
    sums = torch.nn.functional.avg_pool2d(
        torch.as_tensor(x, dtype=torch.float64), kernel, 1, divisor_override=1
    ).numpy()
    v = sums * recip_h / 2.0**16
    want = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -128, 127)
    assert np.array_equal(got, want)


# ---------------------------------------------------------------- a lowered model, layer by layer


def _model(path):
    """Conv+BN+ReLU6 (clip biting), depthwise+ReLU, residual add, standalone BN with a negative
    gamma, ReLU, concat (requantized input), average pool, GAP, FC (the output)."""
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        mk("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn1"], name="bn1"),
        mk("Clip", ["bn1", "zero", "six"], ["r1"], name="relu6"),
        mk("Conv", ["r1", "wd"], ["dw"], name="dw", group=32, pads=[1, 1, 1, 1]),
        mk("Relu", ["dw"], ["r2"], name="relu2"),
        mk("Conv", ["r2", "wp"], ["pr"], name="project"),
        mk("Add", ["pr", "r1"], ["res"], name="add"),
        mk("BatchNormalization", ["res", "g2", "be2", "m2", "v2"], ["bn2"], name="bn2"),
        mk("Relu", ["bn2"], ["r3"], name="relu3"),
        mk("Concat", ["r3", "r2"], ["cat"], name="concat", axis=1),
        mk("AveragePool", ["cat"], ["ap"], name="avgpool", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
           count_include_pad=1),
        mk("GlobalAveragePool", ["ap"], ["gap"], name="gap"),
        mk("Flatten", ["gap"], ["flat"], name="flatten"),
        mk("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1),
    ]  # fmt: skip
    c = 32  # one nv_full memory atom: the concatenation stays on the DLA
    w = lambda *s: RNG.normal(scale=0.3, size=s)  # noqa: E731
    dw = w(c, 1, 3, 3) * 2.0 ** RNG.uniform(-6, 0, (c, 1, 1, 1))  # channels over 6 octaves
    inits = {
        "w1": w(c, 3, 3, 3), "b1": w(c), "g": 1 + 0.1 * w(c), "be": w(c), "m": w(c),
        "v": 1 + np.abs(w(c)), "zero": np.array(0.0), "six": np.array(6.0), "wd": dw,
        "wp": w(c, c, 1, 1), "g2": np.where(np.arange(c) % 3 == 0, -1.0, 1.0) * (1 + w(c)),
        "be2": w(c), "m2": w(c), "v2": 1 + np.abs(w(c)), "wf": w(10, 2 * c), "bf": w(10),
    }  # fmt: skip
    graph = helper.make_graph(
        nodes, "case", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, path)


def _scales(loaded, x):
    """Per-tensor max scales, with the ReLU6 output's range above 6 so the clip bites."""
    names = [n for n in loaded.shapes if n not in loaded.initializers]
    values = float_run(loaded, x, extra=names)
    scales = {n: max(float(np.abs(v).max()), 1e-6) / 127.0 for n, v in values.items()}
    scales["r1"] = 8.0 / 127
    return scales


@pytest.mark.parametrize("target", ["nv_full", "nv_small"])
def test_every_lowered_layer_rounds_once(tmp_path, target):
    loaded = load_model(_model(tmp_path / "m.onnx"))
    x = RNG.normal(size=(4, 3, 8, 8)).astype(np.float32)
    graph = quantize_model(loaded, _scales(loaded, x), target)
    ref = IntReference(graph)
    values = {"x": torch.as_tensor(x)}
    seen: set[str] = set()
    for layer in graph.layers:
        ref._handlers[type(layer)](layer, values)
        if layer.engine != "dla":
            continue
        got = values[layer.outputs[0]].to(torch.float64).numpy()
        if isinstance(layer, QConv | QSdp):
            src = values[layer.inputs[0]].to(torch.int64)
            if isinstance(layer, QConv):
                src = src.reshape(src.shape[0], -1, 1, 1) if src.ndim == 2 else src
                src = intref.conv_accumulate(src, layer)
            if layer.sdp.y is not None:
                ew = values[layer.inputs[1]].to(torch.float64).numpy().reshape(src.shape)
                want = on_grid_reference(src.numpy(), layer.sdp, ew).reshape(got.shape)
                _differ_only_near_half(got.reshape(src.shape), src.numpy(), layer.sdp, ew)
            else:
                want = exact_chain(src.numpy(), layer.sdp).reshape(got.shape)
            seen.add("two-stage" if layer.sdp.x1 and layer.sdp.x1.truncate == 0 else "one-stage")
            seen.update(["clip"] if _clips(layer.sdp) else [])
            seen.update(["ew"] if layer.sdp.y is not None else [])
        elif isinstance(layer, QPool) and layer.method == "avg":
            sums = torch.nn.functional.avg_pool2d(
                torch.nn.functional.pad(values[layer.inputs[0]].to(torch.float64),
                                        (layer.pads[1], layer.pads[3], layer.pads[0],
                                         layer.pads[2])),
                layer.kernel, layer.stride, divisor_override=1,
            ).numpy()  # fmt: skip
            v = sums * layer.recip_w / 2.0**16 * layer.recip_h / 2.0**16
            want = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -128, 127).reshape(got.shape)
            seen.add("avgpool")
        else:
            continue
        assert np.array_equal(got, want), f"{layer.name}: {int((got != want).sum())} differ"
    expected = {"one-stage", "two-stage", "clip", "avgpool"} | ({"ew"} if target == "nv_full"
                                                                else set())  # fmt: skip
    assert expected <= seen


def _clips(chain: SdpChain) -> bool:
    return any(u is not None and u.alu == "min" for u in (chain.x1, chain.x2))
