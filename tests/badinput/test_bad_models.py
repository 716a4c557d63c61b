"""Every model the validator (dlakit.graph.validate) refuses, refused by every verb that reads
models, in one line naming the node or tensor, before any work."""

import time

import pytest
from badinput_cases import conv_model, refused
from onnx import helper

TWO_WRITERS_FIX_REWRITES = [
    helper.make_node("GlobalAveragePool", ["y"], ["gp"], name="gap"),
    helper.make_node("HardSigmoid", ["gp"], ["hs"], name="hs1"),
    helper.make_node("HardSigmoid", ["gp"], ["hs"], name="hs2"),
]
CRAFTED = {
    "group 0": (conv_model(group=0), "group 0"),
    "group -1": (conv_model(group=-1), "group -1"),
    "group not dividing the channels": (conv_model(group=3, w_shape=(3, 1, 3, 3)), "divide"),
    "weights of another group": (conv_model(group=2, w_shape=(4, 4, 3, 3)), "expect 8 input"),
    "kernel_shape not the weights'": (conv_model(attrs={"kernel_shape": [5, 5]}), "kernel_shape"),
    "pads 2^31": (conv_model(attrs={"pads": [2**31 - 1] * 4}), "pads value 2147483647"),
    "pads -1": (conv_model(attrs={"pads": [-1] * 4}), "pads"),
    "strides 0": (conv_model(attrs={"strides": [0, 0]}), "strides"),
    "strides 2^40": (conv_model(attrs={"strides": [2**40, 1]}), "strides"),
    "dilations 0": (conv_model(attrs={"dilations": [0, 0]}), "dilations"),
    "kernel dilated past the input": (conv_model(attrs={"dilations": [100, 100]}), "kernel"),
    "opset 99": (conv_model(opset=99), "opset 99"),
    "output no node produces": (conv_model(outs=["y", "nowhere"]), "'nowhere'"),
    "output is the input": (conv_model(outs=["x"]), "graph output 'x'"),
    "two nodes write one tensor": (
        conv_model(extra_nodes=[helper.make_node("Relu", ["x"], ["t"], name="w2")]),
        "written by two nodes",
    ),
    "two nodes write one tensor that fix rewrites": (
        conv_model(extra_nodes=TWO_WRITERS_FIX_REWRITES, outs=["hs"]),
        "written by two nodes",
    ),
    "a 2^40 dimension": (conv_model(x_shape=[1, 4, 2**40, 8]), "dimension 1099511627776"),
    "a 100000x100000 input": (conv_model(x_shape=[1, 4, 100000, 100000]), "would need 149.0 GiB"),
    "weights shorter than their shape": (conv_model(w_bytes=b"\0" * 40), "holds 40"),
    "weights longer than their shape": (conv_model(w_bytes=b"\0" * 4000), "holds 4000"),
    "weight dims of 64 TiB": (conv_model(w_shape=(4, 4, 2**20, 2**20), w_bytes=b""), "64.0 TiB"),
    "a required attribute missing": (conv_model(op="Concat"), "checker"),
}


def _bytes(name: str) -> bytes:
    return CRAFTED[name][0].SerializeToString()


VERBS = {
    "check": ["check", "bad.onnx", "-q"],
    "profile": ["profile", "bad.onnx", "-q"],
    "fix": ["fix", "bad.onnx", "-o", "out.onnx", "--random", "-q"],
    "calibrate": ["calibrate", "bad.onnx", "-d", "data.npz", "-m", "max", "-o", "o.json", "-q"],
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_check_refuses_a_crafted_model_naming_the_problem(work, capsys, name):
    (work / "bad.onnx").write_bytes(_bytes(name))
    refused(VERBS["check"], capsys, CRAFTED[name][1])


@pytest.mark.parametrize("verb", ["profile", "fix", "calibrate"])
@pytest.mark.parametrize(
    "name",
    ["group 0", "two nodes write one tensor that fix rewrites", "a 100000x100000 input",
     "output is the input", "opset 99"],
)  # fmt: skip
def test_every_verb_refuses_what_check_refuses(work, capsys, verb, name):
    (work / "bad.onnx").write_bytes(_bytes(name))
    start = time.monotonic()
    refused(VERBS[verb], capsys, CRAFTED[name][1])
    assert time.monotonic() - start < 20  # refused before any work, never a hang


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [(b"\x12\x01t", b"\x12\x01\xff", "graph.node[0].output[0]"),  # a tensor name
     (b"\x12\x01g", b"\x12\x01\x80", "graph.name")],  # found by hypothesis
)  # fmt: skip
def test_strings_that_are_not_utf8_are_refused_naming_the_field(work, capsys, old, new, field):
    data = conv_model().SerializeToString()
    assert old in data
    (work / "bad.onnx").write_bytes(data.replace(old, new, 1))
    refused(VERBS["check"], capsys, f"{field} ")


@pytest.mark.parametrize("data", [b"", b"not a model", bytes(range(256)) * 8])
def test_files_that_are_not_models_are_refused(work, capsys, data):
    (work / "bad.onnx").write_bytes(data)
    refused(VERBS["check"], capsys, "bad.onnx")
