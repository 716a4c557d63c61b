"""Pin a pretrained ONNX model's input to a requested shape, or say by name why it cannot be.

A model from a wheel may have dynamic input dims (``?``, ``-1``) or static ones fixed at export
time. Either way the input is set to the asked shape and every tensor shape inferred again from
it; the Shape/Gather chains that compute sizes then fold to the new sizes. What a graph cannot
follow is refused with the node at fault:

* a node whose inputs no longer agree (a Concat joining an upsampled map with a finer one whose
  size the stride does not divide): ONNX shape inference, in strict mode, names it;
* a Reshape whose target shape is a constant written for the old size: inference accepts it, so
  its element count is compared with its input's here (after constant folding);
* anything else the static checks cannot see: onnxruntime runs the pinned model once on zeros,
  and its error names the node.
"""

from __future__ import annotations

import math
import re

import numpy as np
import onnx
from onnx import numpy_helper

from dlakit.errors import DlakitError
from dlakit.graph.load import MAX_IR_VERSION

_INFERENCE_ERROR = re.compile(
    r"\(op_type:(?P<op>[^,]+), node name: (?P<node>[^)]*)\): (?:\[\w+\] )?"
    r"(?P<detail>.*?)(?= \(op_type:|$)"  # the first node's error; later ones follow from it
)


def pin_input(proto: onnx.ModelProto, shape: tuple[int, ...], label: str) -> onnx.ModelProto:
    """``proto`` with its one graph input at ``shape``; ``label`` names the model in errors.

    Returns ``proto`` itself when the input already has that static shape.
    """
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise DlakitError(f"{label}: has {len(inputs)} inputs; the zoo pins one-input models")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise DlakitError(f"{label}: input has rank {len(dims)}, asked shape is {_text(shape)}")
    if all(d.HasField("dim_value") and d.dim_value == s for d, s in zip(dims, shape, strict=True)):
        return proto
    for dim, size in zip(dims, shape, strict=True):
        dim.Clear()
        dim.dim_value = size
    for output in proto.graph.output:
        output.type.tensor_type.ClearField("shape")
    del proto.graph.value_info[:]
    where = f"{label}: cannot take input {_text(shape)}"
    proto = _infer(proto, where)
    import onnxscript.optimizer

    # After folding, a Reshape target computed from Shape holds the new size; one that stayed
    # the old size was written as a constant (or computed from constants) for the old input.
    proto = _infer(onnxscript.optimizer.optimize(proto), where)
    _check_constant_reshapes(proto, where)
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)  # what onnxruntime reads
    _check_runs(proto, inputs[0].name, shape, inputs[0].type.tensor_type.elem_type, where)
    return proto


def _text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _infer(proto: onnx.ModelProto, where: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        text = " ".join(str(exc).split())
        match = _INFERENCE_ERROR.search(text)
        if match is None:
            raise DlakitError(f"{where}: shape inference fails: {text[:300]}") from None
        raise DlakitError(
            f"{where}: {match['op']} '{match['node']}' does not fit the new size "
            f"({match['detail'][:200]})"
        ) from None


def _check_constant_reshapes(proto: onnx.ModelProto, where: str) -> None:
    """Refuse a Reshape whose constant target shape holds another element count than its input."""
    graph = proto.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    shapes = {}
    for info in (*graph.input, *graph.value_info):
        dims = info.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in constants:
            continue
        source = shapes.get(node.input[0])
        if source is None:
            continue
        target = [int(v) for v in constants[node.input[1]].reshape(-1)]
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        resolved = [
            source[i] if v == 0 and not allowzero and i < len(source) else v
            for i, v in enumerate(target)
        ]
        known = math.prod(v for v in resolved if v != -1)
        count = math.prod(source)
        fits = count % known == 0 if -1 in resolved else count == known
        if not fits:
            raise DlakitError(
                f"{where}: Reshape '{node.name or node.output[0]}' has the constant shape "
                f"{target} baked in, which does not fit its {_text(source)} input at this size"
            )


def _check_runs(
    proto: onnx.ModelProto, name: str, shape: tuple[int, ...], elem_type: int, where: str
) -> None:
    import onnxruntime as ort

    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type or onnx.TensorProto.FLOAT)
    try:
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        session.run(None, {name: np.zeros(shape, dtype)})
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DlakitError(f"{where}: onnxruntime cannot run it: {first[:300]}") from None
