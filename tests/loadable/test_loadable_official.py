"""A compiled single-layer model's loadable against the official KMD regression loadable of the
same layer, field by field (nv_small INT8: CONV_D_L0_0_small, SDP_X1_L0_0_small, PDP_L0_0_small;
nv_full FP16 against CONV_D_L0_0, the same convolution in INT16: no official loadable is FP16).

Both loadables are read by the reader and their descriptors decoded by the firmware interface
each blob states (official: 0.10.0, dlakit: the interface it writes); every field the two
layouts share is compared, except those listed in ``DIFFERENT`` with the reason they describe
something else than the layer (where its bytes are, or dlakit's INT8 calibration of it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlakit.graph import load_model
from dlakit.loadable.descriptors import Record
from dlakit.loadable.network import dla_networks
from dlakit.loadable.package import compile_loadables
from dlakit.loadable.reader import DataType, MemoryFlags, read_loadable
from dlakit.nvdla.api import compile_model

KMD = Path("nvdla-loadables") / "regression" / "flatbufs" / "kmd"
NN = KMD / "NN" / "NN_L0_0_fbuf"  # the official compiler's output: it carries the identifier

_WHERE = "where the bytes are: an address-list index and offset, of each writer's own lists"
_REQUANT = (
    "dlakit's INT8 requantization of the calibrated scales (per-channel multiplier, bias, shift "
    "and ReLU in X1/X2); the official test adds 0 and clamps at scale 1"
)
_ON_THE_FLY = (
    "the on-the-fly CACC->SDP cube: dlakit states the strides and size its register program "
    "gives CACC (conv.c programs CACC's strides from it); the official test leaves them 0"
)
# field path (".address" matches every cube's) -> why the two differ
DIFFERENT: dict[str, str] = {
    ".address": _WHERE,
    ".offset": _WHERE,
    "CONV.op.release": "CSC slice release: dlakit releases the whole input after the layer",
    "CONV.surface.dst_data.size": _ON_THE_FLY,
    "CONV.surface.dst_data.line_stride": _ON_THE_FLY,
    "CONV.surface.dst_data.surf_stride": _ON_THE_FLY,
    "SDP.surface.src_data.size": _ON_THE_FLY,
    "SDP.surface.src_data.line_stride": _ON_THE_FLY,
    "SDP.surface.src_data.surf_stride": _ON_THE_FLY,
    "SDP.op.x1_op": _REQUANT,
    "SDP.op.x2_op": _REQUANT,
    "SDP.surface.x1_data": _REQUANT,
    "SDP.surface.x2_data": _REQUANT,
}


def _model(kind: str, path: Path) -> Path:
    rng = np.random.default_rng(0)
    channels = 128 if kind == "conv" else 32
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 8, 8])
    inits = []
    if kind == "conv":  # 8x8x128, 3x3x128x32 kernels, pad 1, output through SDP (ReLU)
        w = rng.normal(size=(32, 128, 3, 3)).astype(np.float32) * 0.05
        inits = [numpy_helper.from_array(w, "w")]
        nodes = [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["c"], ["y"]),
        ]
    elif kind == "sdp":  # SDP alone, 8x8x32, ReLU
        nodes = [helper.make_node("Relu", ["x"], ["y"])]
    else:  # PDP max pooling 1x1, 8x8x32
        nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, kind, [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _compiled(kind: str, tmp_path: Path):
    loaded = load_model(_model(kind, tmp_path / f"{kind}.onnx"))
    x = np.random.default_rng(1).normal(size=(1, *loaded.input_shapes["x"][1:]))
    # positive inputs and outputs share one scale: max calibration of |x|
    scales = {name: float(np.abs(x).max()) / 127 for name in loaded.shapes}
    scales["c"] = scales["y"] = scales["x"] * 8
    comp = compile_model(loaded, scales, "nv_small", output_precision="int8", via_firmware=True)
    (sl,) = compile_loadables(comp)
    path = tmp_path / f"{kind}.nvdla"
    path.write_bytes(sl.data)
    return read_loadable(path), sl.data


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Record):
        out: dict[str, Any] = {}
        for key, v in value.items():
            out |= _flat(v, f"{prefix}.{key}")
        return out
    if isinstance(value, list) and value and isinstance(value[0], Record):
        out = {}
        for i, v in enumerate(value):
            out |= _flat(v, f"{prefix}[{i}]")
        return out
    return {prefix: value}


def _excluded(path: str) -> bool:
    return any(path.endswith(k) if k.startswith(".") else path.startswith(k) for k in DIFFERENT)


@pytest.mark.parametrize(
    ("kind", "official"),
    [
        ("conv", "CONV/CONV_D_L0_0_small_fbuf"),
        ("sdp", "SDP/SDP_X1_L0_0_small_fbuf"),
        ("pdp", "PDP/PDP_L0_0_small_fbuf"),
    ],
)
def test_descriptors_match_the_official_loadable(kind, official, shared, tmp_path):
    ours, data = _compiled(kind, tmp_path)
    theirs = read_loadable(shared / KMD / official)
    assert ours.version == theirs.version == read_loadable(shared / NN).version
    assert data[4:8] == (shared / NN).read_bytes()[4:8] == b"NVDA"
    (mine,), (ref,) = dla_networks(ours), dla_networks(theirs)
    assert [o.op_type for o in mine.operations] == [o.op_type for o in ref.operations]
    assert mine.network.op_head == ref.network.op_head
    assert mine.network.num_operations == ref.network.num_operations
    assert mine.network.num_luts == ref.network.num_luts
    compared, differ = 0, []
    for a, b in zip(mine.operations, ref.operations, strict=True):
        for part in ("op", "surface"):
            flat_a = _flat(getattr(a, part), f"{a.op_type}.{part}")
            flat_b = _flat(getattr(b, part), f"{b.op_type}.{part}")
            for path in sorted(flat_a.keys() & flat_b.keys()):
                if _excluded(path):
                    continue
                compared += 1
                if flat_a[path] != flat_b[path]:
                    differ.append(f"{path}: dlakit {flat_a[path]!r}, official {flat_b[path]!r}")
        # the dependency graph: the same consumers and fused parent, event for event
        assert dict(a.dependency) == dict(b.dependency)
    assert not differ, "\n".join(differ)
    assert compared > (60 if kind == "conv" else 20)
    # the bound output as the official one: INT8, the same cube and strides
    (out_mem,) = ours.bound(MemoryFlags.OUTPUT)
    t, r = ours.tensor_of(out_mem), theirs.tensors[0]
    assert (t.data_type, t.data_category, t.n, t.c, t.h, t.w, t.strides, t.size) == (
        r.data_type,
        r.data_category,
        r.n,
        r.c,
        r.h,
        r.w,
        r.strides,
        r.size,
    )


_OFFICIAL_INT16 = "the official 16-bit convolution loadable (CONV_D_L0_0) is INT16: none is FP16"
_BANKS = (
    "CBUF use: the official test gives data and weights 4 banks each, fetch grain 8 and keeps both "
    "in CBUF (skip release); dlakit takes the banks the layer needs and releases them"
)
DIFFERENT_FP16: dict[str, str] = {
    **DIFFERENT,
    "CONV.op.in_precision": _OFFICIAL_INT16,
    "CONV.op.out_precision": _OFFICIAL_INT16,
    "SDP.op.src_precision": _OFFICIAL_INT16,
    "SDP.op.dst_precision": _OFFICIAL_INT16,
    "SDP.op.y_op.precision": _OFFICIAL_INT16,
    "CONV.op.data_bank": _BANKS,
    "CONV.op.weight_bank": _BANKS,
    "CONV.op.fetch_grain": _BANKS,
    "CONV.op.skip_data_rls": _BANKS,
    "CONV.op.skip_weight_rls": _BANKS,
}


def test_fp16_conv_descriptors_match_the_official_16_bit_loadable(shared, tmp_path):
    """A compiled FP16 8x8x128 3x3x32 convolution (nv_full) against CONV_D_L0_0, the official
    16-bit (INT16) loadable of the same layer: every shared field but the precisions and CBUF
    use, the dependency graph, and the output tensor's cube and strides (FP16: HALF)."""
    loaded = load_model(_model("conv", tmp_path / "conv.onnx"))
    comp = compile_model(loaded, {}, "nv_full", via_firmware=True, precision="fp16")
    (sl,) = compile_loadables(comp)
    path = tmp_path / "conv.nvdla"
    path.write_bytes(sl.data)
    ours, theirs = read_loadable(path), read_loadable(shared / KMD / "CONV" / "CONV_D_L0_0_fbuf")
    assert ours.version == theirs.version
    (mine,), (ref,) = dla_networks(ours), dla_networks(theirs)
    assert [o.op_type for o in mine.operations] == [o.op_type for o in ref.operations]
    compared, differ = 0, []
    for a, b in zip(mine.operations, ref.operations, strict=True):
        for part in ("op", "surface"):
            flat_a = _flat(getattr(a, part), f"{a.op_type}.{part}")
            flat_b = _flat(getattr(b, part), f"{b.op_type}.{part}")
            for key in sorted(flat_a.keys() & flat_b.keys()):
                if any(
                    key.endswith(k) if k.startswith(".") else key.startswith(k)
                    for k in DIFFERENT_FP16
                ):
                    continue
                compared += 1
                if flat_a[key] != flat_b[key]:
                    differ.append(f"{key}: dlakit {flat_a[key]!r}, official {flat_b[key]!r}")
        assert dict(a.dependency) == dict(b.dependency)
    assert not differ, "\n".join(differ)
    assert compared > 60
    # FP16 precision where the official states INT16 (dla_precision: INT8, INT16, FP16)
    assert [int(o.op.in_precision) for o in mine.operations[:1]] == [2]
    assert [int(o.op.in_precision) for o in ref.operations[:1]] == [1]
    (out_mem,) = ours.bound(MemoryFlags.OUTPUT)
    t, r = ours.tensor_of(out_mem), theirs.tensors[0]
    assert (t.n, t.c, t.h, t.w, t.strides, t.size) == (r.n, r.c, r.h, r.w, r.strides, r.size)
    assert t.data_type == DataType.HALF and r.data_type == DataType.INT16
