"""The model validator: every verb that reads an ONNX model runs it before any work.

Two passes, both raising :class:`~dlakit.errors.ModelError` naming the file and the node, tensor
or field at fault:

* :func:`validate_raw` on the file as read: every name is text (UTF-8), the opset is one onnx
  knows, every op has a schema, each tensor has one producer, every graph output is computed by
  a node, every initializer holds as many values as its shape says, and no dimension or tensor
  exceeds the caps below.
* :func:`validate_canonical` on the canonical form (static shapes known): ONNX's own full
  checker, every tensor under the caps, and the attributes of convolutions and pools in range
  (``group`` positive and dividing the channels, kernels matching the weights, pads, strides and
  dilations in range). The checker runs here because it wants a type on every graph output,
  which many exporters leave out and canonicalization fills in.

The caps bound what a later stage may allocate: dlakit refuses, with the size, a model it could
not hold rather than run out of memory on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx

from dlakit.errors import ModelError
from dlakit.graph import nodes

# One dimension: TensorRT and the DLA index tensors with 32-bit integers.
MAX_DIM = 2**31 - 1
# One tensor (weights or activations): protobuf's own limit on one message is 2 GiB.
MAX_TENSOR_BYTES = 2**31
# Nodes in one graph: far above the largest detector (a few thousand).
MAX_NODES = 1_000_000
# Pads, strides, dilations and kernel sizes: far above any real network's, small enough that the
# output size stays a 32-bit number.
MAX_WINDOW = 1 << 16
# The lowest default-domain opset dlakit reads (onnx's version converter starts at 7).
MIN_OPSET = 7

# Initializers up to this size stay in the checker's copy (see _check_onnx).
_CHECKED_CONSTANT_BYTES = 4096
_WINDOW_OPS = {
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "ConvInteger",
    "QLinearConv",
}


def _where(node: onnx.NodeProto) -> str:
    return f"node '{node.name or (node.output[0] if node.output else node.op_type)}'"


def _check_text(model: onnx.ModelProto, path: Path | str) -> None:
    """Every string field (names, op types, domains, doc strings) is UTF-8 text.

    protobuf hands a string that is not valid UTF-8 to Python as bytes; such a model is refused
    naming the field, e.g. ``graph.node[3].output[0]``.
    """
    from google.protobuf.descriptor import FieldDescriptor

    string, message = FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE
    stack: list[tuple[object, str]] = [(model, "")]
    while stack:
        msg, where = stack.pop()
        for fld, value in msg.ListFields():  # type: ignore[attr-defined]
            name = f"{where}.{fld.name}" if where else fld.name
            repeated = (  # is_repeated since protobuf 5.28, label before (now deprecated)
                fld.is_repeated
                if hasattr(fld, "is_repeated")
                else fld.label == FieldDescriptor.LABEL_REPEATED
            )
            items = list(enumerate(value)) if repeated else [(None, value)]
            for i, item in items:
                at = name if i is None else f"{name}[{i}]"
                if fld.type == string and isinstance(item, bytes):
                    shown = item.decode("utf-8", "replace")[:60]
                    raise ModelError(f"{path}: {at} {shown!r} is not valid UTF-8 text")
                if fld.type == message:
                    stack.append((item, at))


def _check_opset(model: onnx.ModelProto, path: Path | str) -> None:
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not MIN_OPSET <= imp.version <= newest:
            raise ModelError(
                f"{path}: opset {imp.version} of the default ONNX domain is not supported "
                f"(dlakit reads opsets {MIN_OPSET} to {newest})"
            )


def _check_onnx(model: onnx.ModelProto, path: Path | str) -> None:
    """ONNX's full checker: schemas, attribute types, topological order, strict inference.

    It runs on a copy without the weights' data (weights become typed graph inputs; their data
    was checked by :func:`validate_raw`), which saves the serialization of large models. The
    checker wants a shape on every graph output; an output whose shape inference could not find
    (a node it fails on) is left out, so the checker names that node instead.
    """
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    graph = light.graph
    graph.name = model.graph.name or "graph"
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.value_info.extend(model.graph.value_info)
    graph.output.extend(o for o in model.graph.output if o.type.tensor_type.HasField("shape"))
    inputs = {i.name for i in model.graph.input}
    for tensor in model.graph.initializer:
        if (
            tensor.ByteSize() <= _CHECKED_CONSTANT_BYTES
        ):  # shape vectors, axes: inference reads them
            graph.initializer.append(tensor)
        elif tensor.name not in inputs:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    try:
        onnx.checker.check_model(light, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, and C++ errors of other types
        raise ModelError(f"{path}: ONNX's checker refuses the model: {_first_line(exc)}") from None


def _check_graph(model: onnx.ModelProto, path: Path | str) -> None:
    graph = model.graph
    if len(graph.node) > MAX_NODES:
        raise ModelError(f"{path}: {len(graph.node)} nodes, more than dlakit's cap of {MAX_NODES}")
    sources = {i.name: "a graph input" for i in graph.input}
    sources.update({t.name: "an initializer" for t in graph.initializer})
    written: dict[str, str] = {}
    for node in graph.node:
        for name in node.output:
            if not name:
                continue
            if name in written:
                raise ModelError(
                    f"{path}: tensor '{name}' is written by two nodes ({written[name]} and "
                    f"'{node.name or node.op_type}'); each tensor needs exactly one producer"
                )
            if name in sources:
                raise ModelError(
                    f"{path}: {_where(node)} writes '{name}', which is already {sources[name]}"
                )
            written[name] = f"'{node.name or node.op_type}'"
    if not graph.output:
        raise ModelError(f"{path}: the graph has no outputs")
    for out in graph.output:
        if out.name not in written:
            what = sources.get(out.name, "defined nowhere")
            raise ModelError(
                f"{path}: graph output '{out.name}' is not computed by any node ({what})"
            )


def _check_dims(dims: list[int], what: str, path: Path | str, itemsize: int = 4) -> None:
    for d in dims:
        if d < 0 or d > MAX_DIM:
            raise ModelError(f"{path}: {what} has dimension {d}, outside [0, {MAX_DIM}]")
    count = math.prod(dims)
    if count * itemsize > MAX_TENSOR_BYTES:
        raise ModelError(
            f"{path}: {what} of shape {'x'.join(map(str, dims))} would need "
            f"{_size(count * itemsize)}, more than dlakit's cap of {_size(MAX_TENSOR_BYTES)} "
            "for one tensor"
        )


_SUB_BYTE = {
    getattr(onnx.TensorProto, name)
    for name in ("INT4", "UINT4", "FLOAT4E2M1")
    if hasattr(onnx.TensorProto, name)
}
_TYPED_FIELDS = (
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def _check_initializers(model: onnx.ModelProto, path: Path | str) -> None:
    """Each initializer holds exactly the values its dims say (raw bytes or typed fields)."""
    for tensor in model.graph.initializer:
        what = f"initializer '{tensor.name}'"
        dims = list(tensor.dims)
        try:
            np_type = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        except Exception:
            raise ModelError(f"{path}: {what} has unknown data type {tensor.data_type}") from None
        itemsize = np.dtype(np_type).itemsize
        _check_dims(dims, what, path, itemsize)
        count = math.prod(dims)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue  # read_onnx already loaded it; a leftover reference fails in onnx itself
        if tensor.HasField("raw_data"):
            bits = _bits(tensor.data_type)
            want = (count * bits + 7) // 8
            if len(tensor.raw_data) != want:
                raise ModelError(
                    f"{path}: {what} of shape {dims} needs {want} bytes of data, "
                    f"it holds {len(tensor.raw_data)}"
                )
            continue
        if _bits(tensor.data_type) < 8:
            continue  # sub-byte types pack their typed fields; onnx's reader checks those
        held = sum(len(getattr(tensor, f)) for f in _TYPED_FIELDS)
        want = count
        if tensor.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128):
            want = 2 * count
        if held != want:
            raise ModelError(
                f"{path}: {what} of shape {dims} needs {count} values, it holds {held}"
            )


def _bits(data_type: int) -> int:
    if data_type in _SUB_BYTE:
        return 4
    return 8 * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize


def check_ops(model: onnx.ModelProto, path: Path | str) -> None:
    """Reject nodes whose operator no ONNX schema defines (custom or misspelled ops)."""
    opsets = {imp.domain or "ai.onnx": imp.version for imp in model.opset_import}
    for node in model.graph.node:
        domain = node.domain or "ai.onnx"
        if domain == "ai.onnx" and "ai.onnx" not in opsets and "" in opsets:
            domain = ""
        known = onnx.defs.has(node.op_type, "" if domain == "ai.onnx" else domain)
        if not known:
            where = f"domain '{node.domain}'" if node.domain else "the default ONNX domain"
            raise ModelError(
                f"{path}: node '{node.name or node.output[0]}' uses op '{node.op_type}' from "
                f"{where}, which is not an ONNX operator dlakit can read"
            )


def validate_raw(model: onnx.ModelProto, path: Path | str) -> None:
    """Checks on the model as read, before dlakit transforms it (see the module docstring)."""
    _check_text(model, path)
    _check_opset(model, path)
    check_ops(model, path)
    _check_graph(model, path)
    _check_initializers(model, path)
    for vi in model.graph.input:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        _check_dims([d for d in dims if d > 0], f"input '{vi.name}'", path)


def validate_canonical(
    model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], path: Path | str
) -> None:
    """ONNX's checker (on the canonical form: the one every graph output has a type in), the
    tensor size caps, window attributes."""
    _check_onnx(model, path)
    initializers = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for node in model.graph.node:  # before the sizes: a bad attribute explains a bad size
        if node.op_type in _WINDOW_OPS and node.domain in ("", "ai.onnx"):
            _check_window(node, shapes, initializers, path)
    check_sizes(shapes, path)


def check_sizes(shapes: dict[str, tuple[int, ...]], path: Path | str) -> None:
    """Every tensor under the caps (float32 counted: the widest type activations take)."""
    for name, shape in shapes.items():
        _check_dims(list(shape), f"tensor '{name}'", path)


def _ints(values: object) -> list[int]:
    return [int(v) for v in values] if isinstance(values, list | tuple) else []


def _check_window(
    node: onnx.NodeProto,
    shapes: dict[str, tuple[int, ...]],
    initializers: dict[str, tuple[int, ...]],
    path: Path | str,
) -> None:
    where = f"{path}: {_where(node)} ({node.op_type})"
    attrs = nodes.attrs(node)
    x = shapes.get(node.input[0]) if node.input else None
    spatial = len(x) - 2 if x is not None and len(x) >= 3 else None
    for name, low in (("strides", 1), ("dilations", 1), ("kernel_shape", 1), ("pads", 0)):
        values = _ints(attrs.get(name))
        for v in values:
            if not low <= v <= MAX_WINDOW:
                raise ModelError(f"{where}: {name} value {v} outside [{low}, {MAX_WINDOW}]")
        if values and spatial is not None:
            want = 2 * spatial if name == "pads" else spatial
            if len(values) != want:
                raise ModelError(
                    f"{where}: {name} has {len(values)} values; a {spatial}-D input needs {want}"
                )
    if node.op_type not in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
        kernel = _ints(attrs.get("kernel_shape"))
        if x is not None and len(x) == len(kernel) + 2:
            _check_window_fits(where, attrs, kernel, list(x[2:]))
        return
    weight_index = 3 if node.op_type == "QLinearConv" else 1
    w = (
        initializers.get(node.input[weight_index]) or shapes.get(node.input[weight_index])
        if len(node.input) > weight_index
        else None
    )
    group = attrs.get("group", 1)
    if not isinstance(group, int) or group < 1:
        raise ModelError(f"{where}: group {group} must be a positive integer")
    if x is None or w is None or len(x) < 3 or len(w) != len(x):
        return
    channels = x[1]
    if channels % group:
        raise ModelError(f"{where}: group {group} does not divide the {channels} input channels")
    if node.op_type == "ConvTranspose":
        if w[0] != channels:
            raise ModelError(
                f"{where}: weights {list(w)} expect {w[0]} input channels, the input has {channels}"
            )
    elif w[1] * group != channels:
        raise ModelError(
            f"{where}: weights {list(w)} with group {group} expect {w[1] * group} input "
            f"channels, the input has {channels}"
        )
    elif w[0] % group:
        raise ModelError(f"{where}: group {group} does not divide the {w[0]} output channels")
    kernel = _ints(attrs.get("kernel_shape"))
    if kernel and list(kernel) != list(w[2:]):
        raise ModelError(f"{where}: kernel_shape {kernel} does not match the weights {list(w)}")
    if node.op_type != "ConvTranspose":
        _check_window_fits(where, attrs, list(w[2:]), list(x[2:]))


def _check_window_fits(where: str, attrs: dict, kernel: list[int], size: list[int]) -> None:
    """With explicit pads, the dilated kernel must fit in the padded input (an output >= 1)."""
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        return
    pads = _ints(attrs.get("pads")) or [0] * (2 * len(kernel))
    dilations = _ints(attrs.get("dilations")) or [1] * len(kernel)
    if len(pads) != 2 * len(kernel) or len(dilations) != len(kernel):
        return
    for i, (k, n) in enumerate(zip(kernel, size, strict=True)):
        reach = dilations[i] * (k - 1) + 1
        padded = n + pads[i] + pads[i + len(kernel)]
        if reach > padded:
            raise ModelError(
                f"{where}: the kernel spans {reach} along axis {i + 2} (dilation "
                f"{dilations[i]}), more than the padded input's {padded}"
            )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[:2])[:240] if text else type(exc).__name__
