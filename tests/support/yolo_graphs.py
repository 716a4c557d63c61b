"""YOLO blocks as ONNX graphs with the node names and shapes of Ultralytics' exports.

For the TensorRT log facts (trt_log_facts.toml): the logged layers with their shapes and their
neighbours, built from the published architectures (YOLOv8/YOLO11 Detect head with its DFL,
YOLO11's C2PSA attention), at the logged 640x640 input. Weights are seeded random: verdicts
depend on shapes, attributes and constants, not on weight values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from dlakit.graph import LoadedModel, load_model, save_model

RNG = np.random.default_rng(0)


class _Graph:
    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.inputs: list = []

    def input(self, name: str, shape: list[int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, name: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs

    def conv(self, name: str, x: str, c_in: int, c_out: int, k: int = 1, group: int = 1) -> str:
        w = self.const(f"{name}.weight", RNG.normal(size=(c_out, c_in // group, k, k)).astype("f"))
        b = self.const(f"{name}.bias", np.zeros(c_out, np.float32))
        pads = [k // 2] * 4
        return self.node("Conv", name, [x, w, b], kernel_shape=[k, k], pads=pads, group=group)[0]

    def reshape(self, name: str, x: str, shape: list[int]) -> str:
        return self.node("Reshape", name, [x, self.const(f"{name}.shape", np.array(shape))])[0]

    def save(self, tmp_path: Path, outputs: list[str], name: str) -> LoadedModel:
        graph = helper.make_graph(
            self.nodes,
            name,
            self.inputs,
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return load_model(save_model(model, tmp_path / f"{name}.onnx"))


def detect_head(tmp_path: Path, head: str, size: int = 640, classes: int = 80) -> LoadedModel:
    """The Detect head after its convolutions: per level Concat(box, cls) -> 3-D view, the
    level Concat, the box/class Split, the DFL (view, transpose, softmax, 1x1 conv, view) and
    dist2bbox's Slice/Sub/Add/Div, as the Ultralytics export names them (``/model.22/...``)."""
    g = _Graph()
    p = f"/{head}"
    reg = 16
    no = 4 * reg + classes
    flat = []
    for level, stride in enumerate((8, 16, 32)):
        side = size // stride
        box = g.input(f"box{level}", [1, 4 * reg, side, side])
        cls = g.input(f"cls{level}", [1, classes, side, side])
        cat = g.node("Concat", f"{p}/Concat" + (f"_{level}" if level else ""), [box, cls], axis=1)
        flat.append(g.reshape(f"{p}/Reshape" + (f"_{level}" if level else ""), cat[0], [1, no, -1]))
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    x = g.node("Concat", f"{p}/Concat_3", flat, axis=2)[0]
    split = g.const(f"{p}/split", np.array([4 * reg, classes]))
    box, cls = g.node("Split", f"{p}/Split", [x, split], n_out=2, axis=1)
    d = g.reshape(f"{p}/dfl/Reshape", box, [1, 4, reg, anchors])
    d = g.node("Transpose", f"{p}/dfl/Transpose", [d], perm=[0, 2, 1, 3])[0]
    d = g.node("Softmax", f"{p}/dfl/Softmax", [d], axis=1)[0]
    d = g.conv(f"{p}/dfl/conv/Conv", d, reg, 1)
    d = g.reshape(f"{p}/dfl/Reshape_1", d, [1, 4, anchors])

    def part(name: str, start: int) -> str:
        ends = [g.const(f"{name}.{k}", np.array([v])) for k, v in (("s", start), ("e", start + 2))]
        return g.node("Slice", name, [d, *ends, g.const(f"{name}.axes", np.array([1]))])[0]

    lt, rb = part(f"{p}/Slice", 0), part(f"{p}/Slice_1", 2)
    grid = g.const(f"{p}/anchors", RNG.uniform(0, size, size=(1, 2, anchors)).astype("f"))
    x1y1 = g.node("Sub", f"{p}/Sub", [grid, lt])[0]
    x2y2 = g.node("Add", f"{p}/Add", [grid, rb])[0]
    centre = g.node("Add", f"{p}/Add_1", [x1y1, x2y2])[0]
    xy = g.node("Div", f"{p}/Div", [centre, g.const(f"{p}/two", np.array(2.0, np.float32))])[0]
    wh = g.node("Sub", f"{p}/Sub_1", [x2y2, x1y1])[0]
    boxes = g.node("Concat", f"{p}/Concat_4", [xy, wh], axis=1)[0]
    scores = g.node("Sigmoid", f"{p}/Sigmoid", [cls])[0]
    out = g.node("Concat", f"{p}/Concat_5", [boxes, scores], axis=1)[0]
    return g.save(tmp_path, [out], f"detect-{head}-{size}")


def c2psa_attention(tmp_path: Path, size: int = 640) -> LoadedModel:
    """YOLO11n's model.10 attention block (C2PSA, 128 channels, 2 heads, key 32, head 64) on the
    stride-32 map: qkv conv -> 4-D view -> Split into q, k, v on axis 2 -> q^T k -> softmax ->
    v attn^T -> view back; v's view -> depthwise positional conv; projection."""
    g = _Graph()
    p = "/model.10/m/m.0/attn"
    side = size // 32
    n = side * side
    heads, key, head_dim = 2, 32, 64
    c = heads * head_dim
    x = g.input("x", [1, c, side, side])
    qkv = g.conv(f"{p}/qkv/conv/Conv", x, c, c + 2 * heads * key)
    view = g.reshape(f"{p}/Reshape", qkv, [1, heads, 2 * key + head_dim, n])
    sizes = g.const(f"{p}/split", np.array([key, key, head_dim]))
    q, k, v = g.node("Split", f"{p}/Split", [view, sizes], n_out=3, axis=2)
    qt = g.node("Transpose", f"{p}/Transpose", [q], perm=[0, 1, 3, 2])[0]
    attn = g.node("MatMul", f"{p}/MatMul", [qt, k])[0]
    scale = g.const(f"{p}/scale", np.array(key**-0.5, np.float32))
    attn = g.node("Mul", f"{p}/Mul", [attn, scale])[0]
    attn = g.node("Softmax", f"{p}/Softmax", [attn], axis=-1)[0]
    attn_t = g.node("Transpose", f"{p}/Transpose_1", [attn], perm=[0, 1, 3, 2])[0]
    out = g.node("MatMul", f"{p}/MatMul_1", [v, attn_t])[0]
    out = g.reshape(f"{p}/Reshape_1", out, [1, c, side, side])
    pe = g.conv(f"{p}/pe/conv/Conv", g.reshape(f"{p}/Reshape_2", v, [1, c, side, side]), c, c, 3, c)
    y = g.node("Add", f"{p}/Add", [out, pe])[0]
    y = g.conv(f"{p}/proj/conv/Conv", y, c, c)
    return g.save(tmp_path, [y], f"c2psa-{size}")
