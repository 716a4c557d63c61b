"""Cross-layer equalization: per-channel weight ranges of consecutive convolutions made equal.

Facts from Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction" (ICCV 2019), §4.1: for a layer pair ``y = W2 f(W1 x + b1) + b2`` whose activation
``f`` is positively homogeneous (``f(s x) = s f(x)`` for ``s > 0``: identity, ReLU, PReLU,
LeakyReLU), scaling output channel ``i`` of the first layer by ``1 / s_i`` and input channel
``i`` of the second by ``s_i`` keeps the function. With ``r1_i`` the range (largest ``|w|``) of
``W1``'s output channel ``i`` and ``r2_i`` that of ``W2``'s input channel ``i``,
``s_i = sqrt(r1_i / r2_i)`` makes both ranges ``sqrt(r1_i r2_i)``, the choice that maximises the
per-channel precision of the pair; chains of layers are equalized pair by pair, repeatedly,
until the scales settle.

Links kept here, all exact: nothing, ReLU, LeakyReLU, PReLU, max and average pooling, and
BatchNormalization (its mean and shift scale with the channel). A Clip (ReLU6) is not
positively homogeneous: scaling a channel would move its clip point; Nagel et al. replace
ReLU6 by ReLU there, which changes the function, so such pairs are left as they are
(reported). Both convolutions need constant weights used by nothing else; the first's output
feeds only the chain.

The rewrite is checked like every dlakit rewrite: onnxruntime runs both models on the given
inputs and every output must stay within ``verify.TOLERANCE`` (relative to its range).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import numpy_helper

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.graph.nodes import attrs as node_attrs
from dlakit.graph.nodes import consumers
from dlakit.rewrite.verify import (
    Verification,
    VerifyInputs,
    compare,
    random_inputs,
    run_model,
)

# Per-channel links with f(s x) = s f(x) for s > 0 (pooling too: max and mean commute with s).
HOMOGENEOUS = ("Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool")
ITERATIONS = 20
SETTLED = 1e-3  # stop when every scale of a sweep is within this of 1


@dataclass
class Pair:
    first: str
    second: str
    links: list[str]  # the op types between them
    spread_before: float  # largest / smallest per-channel range ratio, first layer
    spread_after: float = 0.0


@dataclass
class EqualizeResult:
    model: onnx.ModelProto
    pairs: list[Pair] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (first conv, reason)
    verification: Verification | None = None


def _uses(model: onnx.ModelProto) -> dict[str, int]:
    count: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            count[name] = count.get(name, 0) + 1
    return count


def find_pairs(model: onnx.ModelProto) -> tuple[list[tuple[onnx.NodeProto, list, onnx.NodeProto]],
                                                list[tuple[str, str]]]:  # fmt: skip
    """(first Conv, link nodes, second Conv) chains, and why other Conv outputs are not."""
    inits = {t.name for t in model.graph.initializer}
    users = consumers(model.graph.node)
    outputs = {o.name for o in model.graph.output}
    uses = _uses(model)
    pairs, skipped = [], []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits or uses[node.input[1]] != 1:
            continue
        links: list[onnx.NodeProto] = []
        tensor = node.output[0]
        while True:
            following = users.get(tensor, [])
            if tensor in outputs or len(following) != 1:
                nxt = None
                break
            nxt = following[0]
            if nxt.op_type in (*HOMOGENEOUS, "BatchNormalization") and nxt.input[0] == tensor:
                links.append(nxt)
                tensor = nxt.output[0]
                continue
            break
        if nxt is None:
            continue
        if nxt.op_type == "Clip":
            skipped.append((node.name, f"{nxt.name} (Clip) is not positively homogeneous"))
            continue
        if (
            nxt.op_type != "Conv"
            or nxt.input[0] != tensor
            or nxt.input[1] not in inits
            or uses[nxt.input[1]] != 1
        ):
            continue
        if any(link.op_type == "PRelu" and link.input[1] not in inits for link in links):
            continue
        pairs.append((node, links, nxt))
    return pairs, skipped


def _input_ranges(w2: np.ndarray, groups: int, channels: int) -> np.ndarray:
    """Largest |w| of the second layer over everything that reads input channel i."""
    k, cg = w2.shape[:2]
    kg = k // groups
    per = np.abs(w2).reshape(groups, kg, cg, -1).max(axis=(1, 3))  # (groups, cg)
    return per.reshape(channels)


def _scale_inputs(w2: np.ndarray, groups: int, s: np.ndarray) -> np.ndarray:
    k, cg = w2.shape[:2]
    kg = k // groups
    view = w2.reshape(groups, kg, cg, *w2.shape[2:])
    factor = s.reshape(groups, 1, cg, *([1] * (w2.ndim - 2)))
    return (view * factor).reshape(w2.shape)


def equalize(
    model: onnx.ModelProto,
    shapes: dict[str, tuple[int, ...]],
    inputs: VerifyInputs | None = None,
    iterations: int = ITERATIONS,
) -> EqualizeResult:
    """The equalized copy of ``model`` (module docstring), verified with onnxruntime."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    values = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in out.graph.initializer}
    chains, skipped = find_pairs(out)
    result = EqualizeResult(out, skipped=skipped)
    for first, links, second in chains:
        w1 = values[first.input[1]]
        r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
        live = r1[r1 > 0]
        spread = float(live.max() / live.min()) if live.size else 1.0
        result.pairs.append(Pair(first.name, second.name, [n.op_type for n in links], spread))
    for _ in range(iterations):
        largest = 0.0
        for first, links, second in chains:
            w1, w2 = values[first.input[1]], values[second.input[1]]
            groups = int(node_attrs(second).get("group", 1))
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = _input_ranges(w2, groups, w1.shape[0])
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1)), 1.0)
            values[first.input[1]] = w1 / s.reshape(-1, *([1] * (w1.ndim - 1)))
            if len(first.input) > 2 and first.input[2]:
                values[first.input[2]] = values[first.input[2]] / s
            for link in links:
                if link.op_type == "BatchNormalization":
                    for name in (link.input[2], link.input[3]):  # shift and mean scale
                        values[name] = values[name] / s
            values[second.input[1]] = _scale_inputs(w2, groups, s)
            largest = max(largest, float(np.max(np.abs(np.log(s)))))
        if largest < SETTLED:
            break
    for pair, (first, _, _) in zip(result.pairs, chains, strict=True):
        r1 = np.abs(values[first.input[1]]).reshape(values[first.input[1]].shape[0], -1).max(1)
        live = r1[r1 > 0]
        pair.spread_after = float(live.max() / live.min()) if live.size else 1.0
    touched: set[str] = set()
    for first, links, second in chains:
        touched.update(first.input[1:3])
        touched.add(second.input[1])
        for link in links:
            if link.op_type == "BatchNormalization":
                touched.update(link.input[2:4])
    for t in out.graph.initializer:
        if t.name in touched:
            dtype = numpy_helper.to_array(t).dtype
            t.CopyFrom(numpy_helper.from_array(values[t.name].astype(dtype), t.name))
    feeds = inputs or random_inputs(model, shapes)
    result.verification = compare(run_model(model, feeds), run_model(out, feeds), feeds.source)
    if not result.verification.ok:
        raise DlakitError(
            f"equalization changed output {result.verification.worst_output} by "
            f"{result.verification.max_rel_error:.2e} (relative), above the rewrite tolerance"
        )
    return result


def equalize_model(
    loaded: LoadedModel, x: np.ndarray | None = None, iterations: int = ITERATIONS
) -> tuple[LoadedModel, EqualizeResult]:
    """:func:`equalize` on a loaded model, verified on inputs ``x`` (batches of the model's
    input; default seeded random normal ones); the same graph with the new weights."""
    inputs = None
    if x is not None:
        name, batch = loaded.input_names[0], loaded.input_shapes[loaded.input_names[0]][0]
        feeds = [{name: x[i : i + batch]} for i in range(0, len(x) - batch + 1, batch)]
        inputs = VerifyInputs(feeds, f"{len(feeds) * batch} calibration inputs")
    result = equalize(loaded.proto, loaded.shapes, inputs, iterations)
    return replace(loaded, proto=result.model), result
