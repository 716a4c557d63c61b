"""Load an ONNX file into dlakit's canonical form.

The canonical form is an ``onnx.ModelProto`` whose inputs have static shapes, whose
shape-computing subgraphs (Shape/Gather/Concat chains) are folded into constants, and where every
tensor has a known shape and element type. Every later stage assumes that form.

Bad input raises :class:`~dlakit.errors.ModelError` with a message that names the file, input or
node at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from dlakit.errors import ModelError
from dlakit.files import atomic_write
from dlakit.graph import nodes
from dlakit.graph.validate import MAX_DIM, check_sizes, validate_canonical, validate_raw

# onnxruntime 1.31 reads at most IR 13, while onnx 1.23 writes IR 14 by default.
MAX_IR_VERSION = 10
_SHAPE_RE = re.compile(r"^(?:(?P<name>.+):)?(?P<dims>\d+(?:x\d+)*)$")


@dataclass
class LoadedModel:
    """A model in canonical form, with per-tensor shapes and element types."""

    path: Path
    proto: onnx.ModelProto
    input_shapes: dict[str, tuple[int, ...]]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, int] = field(default_factory=dict)

    @cached_property
    def initializers(self) -> dict[str, np.ndarray]:
        return {t.name: onnx.numpy_helper.to_array(t) for t in self.proto.graph.initializer}

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return list(self.proto.graph.node)

    @property
    def input_names(self) -> list[str]:
        inits = {t.name for t in self.proto.graph.initializer}
        return [i.name for i in self.proto.graph.input if i.name not in inits]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.proto.graph.output]

    @property
    def opset(self) -> int:
        for imp in self.proto.opset_import:
            if imp.domain in ("", "ai.onnx"):
                return imp.version
        return 0

    def producers(self) -> dict[str, onnx.NodeProto]:
        return nodes.producers(self.proto.graph.node)

    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        return nodes.consumers(self.proto.graph.node)


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``name:1x3x224x224`` (or a bare ``1x3x224x224`` for a one-input model)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        match = _SHAPE_RE.match(spec.strip())
        if not match:
            raise ModelError(
                f"--input-shape '{spec}' is not of the form name:1x3x224x224 (or 1x3x224x224)"
            )
        dims = tuple(int(d) for d in match["dims"].split("x"))
        if any(not 0 < d <= MAX_DIM for d in dims):
            raise ModelError(f"--input-shape '{spec}': every dimension must be in [1, {MAX_DIM}]")
        name = match["name"] or ""
        if shapes.get(name, dims) != dims:
            raise ModelError(
                f"--input-shape {name or '(the input)'} given twice with two shapes: "
                f"{'x'.join(map(str, shapes[name]))} and {'x'.join(map(str, dims))}"
            )
        shapes[name] = dims
    return shapes


def read_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file with its external data, or raise a ModelError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"model path is a directory, not an ONNX file: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(
            f"{path} is not a readable ONNX model (truncated or not ONNX): {_first_line(exc)}"
        ) from None
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"{path} is not an ONNX model: it holds no graph")
    _load_external_data(model, path)
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    base = path.parent
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = base / info.get("location", "")
        try:
            found = location.is_file()
        except (OSError, ValueError):  # a NUL byte or an over-long name in the location
            found = False
        if not found:
            raise ModelError(
                f"{path}: tensor '{tensor.name}' keeps its data in '{info.get('location')}', "
                f"which is missing (looked in {base})"
            )
    try:
        onnx.load_external_data_for_model(model, str(base))
    except Exception as exc:
        raise ModelError(f"{path}: cannot read external data: {_first_line(exc)}") from None


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str | None]:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            out.append(dim.dim_value)
        elif dim.HasField("dim_value"):  # some exporters write -1 for a dynamic dim
            out.append(None)
        elif dim.HasField("dim_param"):
            out.append(dim.dim_param)
        else:
            out.append(None)
    return out


def pin_input_shapes(
    model: onnx.ModelProto, requested: dict[str, tuple[int, ...]], path: Path | str
) -> dict[str, tuple[int, ...]]:
    """Fix every graph input to a static shape, from the model or from ``requested``."""
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    if "" in requested:
        if len(graph_inputs) != 1:
            names = ", ".join(i.name for i in graph_inputs)
            raise ModelError(
                f"--input-shape without a name needs a one-input model; {path} has {names}"
            )
        requested = {graph_inputs[0].name: requested[""]}
    unknown = set(requested) - {i.name for i in graph_inputs}
    if unknown:
        names = ", ".join(i.name for i in graph_inputs)
        raise ModelError(
            f"--input-shape names {', '.join(sorted(unknown))}, not an input of {path} "
            f"(inputs: {names})"
        )
    pinned: dict[str, tuple[int, ...]] = {}
    for vi in graph_inputs:
        dims = _dims(vi)
        if vi.name in requested:
            shape = requested[vi.name]
            if dims and len(dims) != len(shape):
                raise ModelError(
                    f"--input-shape {vi.name}: gives {len(shape)} dims but the input has "
                    f"rank {len(dims)} ({_fmt_dims(dims)})"
                )
            for want, have in zip(shape, dims, strict=False):
                if isinstance(have, int) and have != want:
                    raise ModelError(
                        f"--input-shape {vi.name}: {'x'.join(map(str, shape))} conflicts with "
                        f"the model's static shape {_fmt_dims(dims)}"
                    )
        else:
            if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
                raise ModelError(
                    f"{path}: input '{vi.name}' has a dynamic shape {_fmt_dims(dims)}; "
                    f"the DLA needs static shapes: pass --input-shape {vi.name}:1x3x224x224 "
                    "(with the real sizes)"
                )
            shape = tuple(int(d) for d in dims)
        shape_proto = vi.type.tensor_type.shape
        del shape_proto.dim[:]
        for d in shape:
            shape_proto.dim.add().dim_value = d
        pinned[vi.name] = shape
    return pinned


def _fmt_dims(dims: list[int | str | None]) -> str:
    if not dims:
        return "[unknown]"
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def canonicalize(
    model: onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]],
    path: Path | str = "<model>",
    copy: bool = True,
) -> onnx.ModelProto:
    """Pin shapes, fold constants and shape subgraphs, and infer shapes.

    Returns a new model; ``copy=False`` lets a caller that owns ``model`` skip the deep copy.
    """
    if copy:
        model = onnx.ModelProto.FromString(model.SerializeToString())
    pin_input_shapes(model, input_shapes, path)
    for out in model.graph.output:  # stale dynamic output shapes would block inference
        out.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    _constants_to_initializers(model)
    _alias_constant_identities(model)
    try:
        _infer_shapes(model)
        if _has_foldable_nodes(model):  # importing onnxscript alone costs ~0.7 s
            import onnx_ir
            import onnxscript.optimizer

            # Folding only: other optimizer rewrites would rename or replace the user's nodes.
            ir_model = onnx_ir.serde.deserialize_model(model)
            # ConstantOfShape is kept by default; folding it resolves exporters' padding chains.
            onnxscript.optimizer.fold_constants(
                ir_model,
                output_size_limit=1 << 26,
                should_fold=lambda n: True if n.op_type == "ConstantOfShape" else None,
            )
            onnxscript.optimizer.remove_unused_nodes(ir_model)
            model = onnx_ir.serde.serialize_model(ir_model)
            _infer_shapes(model)
    except Exception as exc:
        raise ModelError(f"{path}: shape inference failed: {_first_line(exc)}") from None
    name_nodes(model)
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    return model


# Constants up to this size stay visible to shape inference: data propagation reads small ones
# (shape vectors, pads, axes). Larger ones are weights, whose dims are all inference needs.
_SHAPE_CONSTANT_BYTES = 4096


def _infer_shapes(model: onnx.ModelProto) -> None:
    """Fill ``value_info`` and output types in place, without serializing the weights.

    ONNX shape inference copies the whole model through C++; for a 150 MB detector that is most
    of the load time. Weights enter the copy as typed graph inputs instead of initializers.
    """
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    graph = light.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    for tensor in model.graph.initializer:
        if tensor.ByteSize() <= _SHAPE_CONSTANT_BYTES:  # ByteSize does not copy the payload
            graph.initializer.append(tensor)
        else:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    for out, typed in zip(model.graph.output, inferred.graph.output, strict=True):
        out.type.CopyFrom(typed.type)


def _alias_constant_identities(model: onnx.ModelProto) -> None:
    """Identity of a weight (torch's export of shared parameters) becomes the weight itself.

    Cheap here, and it often leaves nothing for the constant folder, whose import and model
    round trip cost more than a second on large models.
    """
    constants = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    alias = {}
    keep = []
    for node in model.graph.node:
        if (
            node.op_type == "Identity"
            and not node.domain
            and node.input[0] in constants
            and node.output[0] not in outputs
        ):
            alias[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not alias:
        return
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del model.graph.node[:]
    model.graph.node.extend(keep)


_SHAPE_OPS = {"Shape", "Size", "ConstantOfShape"}


def _has_foldable_nodes(model: onnx.ModelProto) -> bool:
    """Any node computing from constants alone, or from shapes (which are static by now)?"""
    constants = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in _SHAPE_OPS or all(not n or n in constants for n in node.input):
            return True
    return False


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Constant nodes become initializers, so weights look the same in every exporter's output."""
    keep = []
    for node in model.graph.node:
        if node.op_type == "Constant" and not node.domain and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value":
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attr.t)
                tensor.name = node.output[0]
                model.graph.initializer.append(tensor)
                continue
        keep.append(node)
    if len(keep) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(keep)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give unnamed nodes stable names, since every report refers to nodes by name."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        while name in seen:
            name = f"{name}_{index}"
        node.name = name
        seen.add(name)


def collect_shapes(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Shapes and element types of every tensor the graph names."""
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, int] = {}
    graph = model.graph
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = _dims(vi)
        if dims and all(isinstance(d, int) for d in dims):
            shapes[vi.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
        elif vi.type.tensor_type.HasField("shape") and not dims:
            shapes[vi.name] = ()
        if vi.type.tensor_type.elem_type:
            dtypes[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
        dtypes[init.name] = init.data_type
    return shapes, dtypes


def _fill_missing_shapes_with_ort(
    model: onnx.ModelProto,
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, int],
    input_shapes: dict[str, tuple[int, ...]],
    path: Path | str,
) -> None:
    """Run the model once with onnxruntime to learn shapes static inference could not."""
    import onnxruntime as ort

    missing = [out for node in model.graph.node for out in node.output if out and out not in shapes]
    if not missing:
        return
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    known_outputs = {o.name for o in probe.graph.output}
    for name in missing:
        if name not in known_outputs:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 4  # its failure is reported below, in one line
    try:
        session = ort.InferenceSession(
            probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelError(
            f"{path}: some tensor shapes are unknown ({missing[0]}, ...) and onnxruntime "
            f"cannot load the model to find them: {_first_line(exc)}"
        ) from None
    feeds = {}
    for inp in session.get_inputs():
        np_type = onnx.helper.tensor_dtype_to_np_dtype(dtypes.get(inp.name, TensorProto.FLOAT))
        feeds[inp.name] = np.zeros(input_shapes[inp.name], dtype=np_type)
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, feeds)
    except Exception as exc:
        raise ModelError(
            f"{path}: some tensor shapes are unknown ({missing[0]}, ...) and onnxruntime "
            f"cannot run the model to find them: {_first_line(exc)}"
        ) from None
    for name, value in zip(names, values, strict=True):
        if name not in shapes:
            shapes[name] = tuple(np.shape(value))
            dtypes.setdefault(name, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype))


def load_model(
    path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> LoadedModel:
    """Read, validate and canonicalize an ONNX model; every tensor gets a static shape."""
    path = Path(path)
    raw = read_onnx(path)
    validate_raw(raw, path)
    proto = canonicalize(raw, dict(input_shapes or {}), path, copy=False)
    pinned = {
        i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
        for i in proto.graph.input
        if i.name not in {t.name for t in proto.graph.initializer}
    }
    shapes, dtypes = collect_shapes(proto)
    validate_canonical(proto, shapes, path)
    _fill_missing_shapes_with_ort(proto, shapes, dtypes, pinned, path)
    check_sizes(shapes, path)
    return LoadedModel(path=path, proto=proto, input_shapes=pinned, shapes=shapes, dtypes=dtypes)


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Save as one file that onnxruntime can read (IR version clamped)."""
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    return atomic_write(path, model.SerializeToString())
