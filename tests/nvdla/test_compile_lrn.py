"""LRN compiled to one CDP operation: the simulator's bytes equal the integer reference's."""

import dataclasses

import numpy as np
import pytest
from onnx import helper

from dlakit.errors import DlakitError
from dlakit.nvdla import compile_graph, nvdla_target
from dlakit.nvdla.artifact import read_artifact, write_artifact
from nvdla_cases import check_bitexact, compile_case, conv_model

RNG = np.random.default_rng(3)


def _lrn_model(path, size, alpha=1e-4, beta=0.75, bias=1.0, channels=20):
    """Conv -> Relu -> LRN -> Conv; 20 channels so the LRN window crosses a surface boundary."""
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        mk("Relu", ["c1"], ["r1"], name="relu1"),
        mk("LRN", ["r1"], ["n1"], name="lrn", size=size, alpha=alpha, beta=beta, bias=bias),
        mk("Conv", ["n1", "w2", "b2"], ["y"], name="conv2"),
    ]
    inits = {
        "w1": RNG.normal(scale=0.4, size=(channels, 3, 3, 3)),
        "b1": RNG.normal(scale=0.1, size=channels),
        "w2": RNG.normal(scale=0.3, size=(8, channels, 1, 1)),
        "b2": RNG.normal(scale=0.1, size=8),
    }
    return conv_model(path, nodes, inits, (1, 3, 9, 7), "y", (1, 8, 9, 7))


@pytest.mark.parametrize(
    "target,size,alpha,bias",
    [
        ("nv_small", 3, 1e-4, 1.0),
        ("nv_small", 5, 1e-4, 1.0),
        ("nv_small", 7, 1e-2, 1.0),
        ("nv_small", 9, 5e-2, 2.0),
        ("nv_full", 3, 1e-4, 1.0),
        ("nv_full", 5, 1e-4, 1.0),
        ("nv_full", 9, 5e-2, 2.0),
    ],
)
def test_lrn_is_byte_exact(tmp_path, target, size, alpha, bias):
    x = RNG.normal(size=(2, 3, 9, 7)).astype(np.float32)
    _, graph, comp = compile_case(_lrn_model(tmp_path / "m.onnx", size, alpha, 0.75, bias), x,
                                  target)  # fmt: skip
    assert comp.stats["ops_by_kind"]["cdp"] == 1
    assert comp.stats["dla_segments"] == 1  # conv, LRN, conv: one DLA segment
    op = next(op for s in comp.segments for op in s.ops if op.kind == "cdp")
    data = [v for unit, reg, v in op.writes if reg == "S_LUT_ACCESS_DATA"]
    assert len(data) == 65 + 257
    # Through the artifact on disk: what a user runs.
    comp = read_artifact(write_artifact(comp, tmp_path / "m.dla"))
    assert check_bitexact(graph, comp, x) >= 1


def test_lrn_needs_cdp(tmp_path):
    x = RNG.normal(size=(1, 3, 9, 7)).astype(np.float32)
    _, graph, _ = compile_case(_lrn_model(tmp_path / "m.onnx", 5), x)
    small = nvdla_target("nv_small")
    no_cdp = dataclasses.replace(small.nvdla, engines={**small.nvdla.engines, "cdp": False})
    with pytest.raises(DlakitError, match="needs cdp"):
        compile_graph(graph, dataclasses.replace(small, nvdla=no_cdp))
