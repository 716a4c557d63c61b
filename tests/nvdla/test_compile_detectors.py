"""Detector building blocks compiled for nv_full and run on the simulator, byte for byte against
the integer reference: channel Split/Slice views (surface offsets, copies, parents placed in a
concatenation), nearest Resize and ConvTranspose (phase convolution + RUBIK contract), the SDP
lookup table (on the fly and from memory) and two-tensor Mul/Max in SDP Y."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from dlakit.graph import save_model
from dlakit.lower.qgraph import QContract, QConv, QSdp, QView
from nvdla_cases import check_bitexact, compile_case

RNG = np.random.default_rng(14)
mk = helper.make_node


def _w(*shape):
    return RNG.normal(scale=0.3, size=shape)


def _silu(x, name):
    return [mk("Sigmoid", [x], [f"{name}_s"], name=f"{name}_sig"),
            mk("Mul", [x, f"{name}_s"], [f"{name}_y"], name=f"{name}_mul")]  # fmt: skip


def conv_model(path, nodes, inits, in_shape, out_name, out_shape):
    """A float model; integer initializers (split sizes, slice bounds) stay INT64."""
    arrays = [
        numpy_helper.from_array(v.astype(np.int64 if v.dtype.kind == "i" else np.float32), k)
        for k, v in inits.items()
    ]
    graph = helper.make_graph(
        nodes, "case",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_shape))], arrays,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return save_model(model, path)


def _ops(comp, kind):
    return [op for s in comp.segments for op in s.ops if op.kind == kind]


def _on_the_definition(comp) -> list[str]:
    """Layers whose operations the replay engine leaves to the unit models (the decoder covers
    no SDP lookup table, Y multiplier with a tensor operand, or RUBIK)."""
    from dlakit.run.runner import Runner
    from dlakit.sim.replay import Fallback

    ops = [op for s in comp.segments for op in s.ops]
    program = Runner(comp, "cpu", "torch").program
    return [
        ops[lo].layer
        for step, (lo, _) in zip(program.steps, program.spans, strict=True)
        if isinstance(step, Fallback)
    ]


def test_c2f_block_split_views_copies_and_silu(tmp_path):
    """YOLOv8's C2f: conv+SiLU, Split 16+16 (the second half starts inside a 32-channel atom:
    copied for its reader, while the concatenation places the parent whole), bottleneck with
    a residual add, Concat of the views and the bottleneck, 1x1 conv."""
    nodes = [
        mk("Conv", ["x", "w1", "b1"], ["c1"], name="cv1", pads=[1, 1, 1, 1]),
        *_silu("c1", "a1"),
        mk("Split", ["a1_y", "sp"], ["s0", "s1"], name="split", axis=1),
        mk("Conv", ["s1", "w2", "b2"], ["c2"], name="m_cv", pads=[1, 1, 1, 1]),
        *_silu("c2", "a2"),
        mk("Add", ["s1", "a2_y"], ["m"], name="m_add"),
        mk("Concat", ["s0", "s1", "m"], ["cat"], name="cat", axis=1),
        mk("Conv", ["cat", "w3", "b3"], ["y"], name="cv2"),
    ]
    inits = {
        "w1": _w(32, 3, 3, 3),
        "b1": _w(32),
        "sp": np.array([16, 16]),
        "w2": _w(16, 16, 3, 3),
        "b2": _w(16),
        "w3": _w(24, 48, 1, 1),
        "b3": _w(24),
    }
    path = conv_model(tmp_path / "c2f.onnx", nodes, inits, (1, 3, 12, 12), "y", (1, 24, 12, 12))
    x = RNG.normal(size=(2, 3, 12, 12)).astype(np.float32)
    _, graph, comp = compile_case(path, x, "nv_full")
    assert comp.stats["dla_segments"] == 1 and comp.stats["fallback_segments"] == 2  # in, out
    convs = {layer.name: layer for layer in graph.layers if isinstance(layer, QConv)}
    assert convs["cv1"].sdp.lut is not None and convs["cv1"].onnx_nodes[-1] == "a1_mul"
    copies = [op for op in _ops(comp, "conv") if "copy" in op.info]
    assert [op.layer for op in copies] == ["split:1"]  # s1 (channels 16..31) for its readers
    assert any(isinstance(layer, QView) for layer in graph.layers)
    check_bitexact(graph, comp, x)


def test_aligned_split_and_slice_are_surfaces_at_an_offset(tmp_path):
    nodes = [
        mk("Conv", ["x", "w1"], ["c1"], name="cv1", pads=[1, 1, 1, 1]),
        mk("Relu", ["c1"], ["r1"], name="relu"),
        mk("Split", ["r1", "sp"], ["s0", "s1"], name="split", axis=1),
        mk("Slice", ["r1", "st", "en", "ax"], ["s2"], name="slice"),
        mk("Conv", ["s0", "w2"], ["c2"], name="cv2"),
        mk("Conv", ["s1", "w3"], ["c3"], name="cv3"),
        mk("Conv", ["s2", "w4"], ["c4"], name="cv4"),
        mk("Add", ["c2", "c3"], ["a"], name="add"),
        mk("Add", ["a", "c4"], ["y"], name="add2"),
    ]
    inits = {"w1": _w(96, 3, 3, 3), "sp": np.array([32, 64]), "st": np.array([64]),
             "en": np.array([96]), "ax": np.array([1]), "w2": _w(8, 32, 1, 1),
             "w3": _w(8, 64, 1, 1), "w4": _w(8, 32, 1, 1)}  # fmt: skip
    path = conv_model(tmp_path / "views.onnx", nodes, inits, (1, 3, 8, 8), "y", (1, 8, 8, 8))
    x = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
    _, graph, comp = compile_case(path, x, "nv_full")
    assert sum(isinstance(layer, QView) for layer in graph.layers) == 3
    assert not [op for op in _ops(comp, "conv") if "copy" in op.info]  # no copy: all aligned
    assert comp.stats["dla_segments"] == 1
    check_bitexact(graph, comp, x)


def test_nearest_resize_and_conv_transpose_through_the_rubik_contract(tmp_path):
    nodes = [
        mk("Conv", ["x", "w1", "b1"], ["c1"], name="cv1", pads=[1, 1, 1, 1]),
        mk("Relu", ["c1"], ["r1"], name="relu"),
        mk("Resize", ["r1", "", "scales"], ["up"], name="up", mode="nearest"),
        mk("ConvTranspose", ["r1", "wt", "bt"], ["dc"], name="deconv", kernel_shape=[2, 2],
           strides=[2, 2]),
        mk("Conv", ["x", "w2"], ["c2"], name="cv2", pads=[1, 1, 1, 1], strides=[1, 1]),
        mk("Resize", ["c2", "", "scales4"], ["up4"], name="up4", mode="nearest"),
        mk("Concat", ["up", "dc"], ["cat"], name="cat", axis=1),
        mk("Conv", ["cat", "w3"], ["c3"], name="cv3"),
        mk("Conv", ["up4", "w4"], ["c4"], name="cv4", strides=[2, 2]),
        mk("Add", ["c3", "c4"], ["y"], name="add"),
    ]  # fmt: skip
    inits = {
        "w1": _w(32, 3, 3, 3),
        "b1": _w(32),
        "scales": np.array([1.0, 1, 2, 2]),
        "wt": _w(32, 20, 2, 2),
        "bt": _w(20),
        "w2": _w(8, 3, 3, 3),
        "scales4": np.array([1.0, 1, 4, 4]),
        "w3": _w(8, 52, 1, 1),
        "w4": _w(8, 8, 1, 1),
    }
    path = conv_model(tmp_path / "up.onnx", nodes, inits, (1, 3, 6, 6), "y", (1, 8, 12, 12))
    x = RNG.normal(size=(2, 3, 6, 6)).astype(np.float32)
    _, graph, comp = compile_case(path, x, "nv_full")
    assert sum(isinstance(layer, QContract) for layer in graph.layers) == 3
    assert len(_ops(comp, "rubik")) == 3 and comp.stats["dla_segments"] == 1
    assert _on_the_definition(comp) == ["up:contract", "deconv:contract", "up4:contract"]
    check_bitexact(graph, comp, x)


def test_lut_activations_from_memory_and_on_the_fly_and_two_tensor_mul_max(tmp_path):
    nodes = [
        mk("Conv", ["x", "w1", "b1"], ["c1"], name="cv1", pads=[1, 1, 1, 1]),
        mk("Tanh", ["c1"], ["t1"], name="tanh_fly"),
        mk("MaxPool", ["t1"], ["p"], name="pool", kernel_shape=[1, 1]),
        mk("Sigmoid", ["p"], ["sg"], name="sig_mem"),
        mk("HardSwish", ["p"], ["hs"], name="hswish_mem"),
        mk("HardSigmoid", ["c1"], ["hg"], name="hsig_mem", alpha=0.25, beta=0.4),
        mk("Mul", ["sg", "hs"], ["m"], name="mul"),
        mk("Max", ["m", "hg"], ["y"], name="max"),
    ]
    inits = {"w1": _w(16, 3, 3, 3), "b1": _w(16)}
    path = conv_model(tmp_path / "lut.onnx", nodes, inits, (1, 3, 8, 8), "y", (1, 16, 8, 8))
    x = 2 * RNG.normal(size=(3, 3, 8, 8)).astype(np.float32)
    _, graph, comp = compile_case(path, x, "nv_full")
    sdps = {layer.name: layer for layer in graph.layers if isinstance(layer, QSdp)}
    assert {"sig_mem", "hswish_mem", "hsig_mem", "mul", "max"} <= set(sdps)
    assert sdps["mul"].sdp.y.stage == "mul" and sdps["max"].sdp.y.alu == "max"
    luts = [op for op in comp.segments[1].ops if any(w[1] == "S_LUT_CFG" for w in op.writes)]
    assert len(luts) == 4  # tanh on the fly, three from memory
    assert comp.stats["dla_segments"] == 1
    assert _on_the_definition(comp) == ["tanh_fly", "sig_mem", "hswish_mem", "hsig_mem", "mul"]
    check_bitexact(graph, comp, x)


def test_host_values_a_dla_run_reads_are_converted_before_it(tmp_path):
    """Two host results read at different points of one DLA run (PP-OCR's SE blocks feed its
    FPN adds so): both INT8 conversions come before the run, which stays one DLA segment, as
    `check` predicts, instead of splitting at the second conversion."""
    from dlakit.graph import load_model
    from dlakit.partition import check_model
    from dlakit.targets import load_target

    nodes = [
        mk("Conv", ["x", "w1", "b1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        mk("Exp", ["c1"], ["h1"], name="host_exp"),
        mk("Abs", ["c1"], ["h2"], name="host_abs"),
        mk("Add", ["c1", "h1"], ["a1"], name="add1"),
        mk("Conv", ["a1", "w2", "b2"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
        mk("Add", ["c2", "h2"], ["a2"], name="add2"),
        mk("Conv", ["a2", "w3", "b3"], ["y"], name="c3"),
    ]
    inits = {"w1": _w(32, 3, 3, 3), "b1": _w(32), "w2": _w(32, 32, 3, 3), "b2": _w(32),
             "w3": _w(16, 32, 1, 1), "b3": _w(16)}  # fmt: skip
    path = conv_model(tmp_path / "late.onnx", nodes, inits, (1, 3, 8, 8), "y", (1, 16, 8, 8))
    predicted = check_model(load_model(path), load_target("nv_full")).segments
    assert [s.engine for s in predicted if s.engine == "dla"] == ["dla", "dla"]
    x = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)
    _, graph, comp = compile_case(path, x, "nv_full")
    assert comp.stats["dla_segments"] == 2
    dla = [s.layers for s in comp.segments if s.kind == "dla"]
    assert dla[1] == ["add1", "c2"]  # c2 with add2 in its SDP; c3 writes the FP16 output
    check_bitexact(graph, comp, x)
