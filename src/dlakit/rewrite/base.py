"""What every rewrite pass shares: the graph view a pass reads, and the records it returns.

A pass looks at one node at a time (:meth:`RewritePass.match`) and answers with

* a :class:`Change` (nodes to remove, nodes and initializers to add, and what it did), or
* a :class:`Refusal` (the pattern is there but a condition fails; the reason says which), or
* ``None`` (not this pass's pattern at all).

Replacement nodes keep the output tensor names of the nodes they replace, so the rest of the graph
and the graph outputs need no renaming. The driver applies changes, sorts the graph, drops orphans
and re-infers shapes between passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import numpy_helper

from dlakit.graph.load import collect_shapes
from dlakit.graph.nodes import consumers, producers


@dataclass
class Change:
    """A matched pattern and its replacement."""

    remove: list[onnx.NodeProto]
    add: list[onnx.NodeProto]
    description: str
    initializers: list[onnx.TensorProto] = field(default_factory=list)


@dataclass(frozen=True)
class Refusal:
    """A node the pass recognised but will not rewrite, and why."""

    pass_name: str
    node: str
    op_type: str
    reason: str


@dataclass(frozen=True)
class Rewrite:
    """One applied rewrite, as reported to the user: nodes before and after, and what changed."""

    pass_name: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    description: str


class Graph:
    """A read-only view of a model for matching: producers, consumers, constants, shapes."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
        self.shapes, self.dtypes = collect_shapes(model)
        self._inits = {t.name: t for t in model.graph.initializer}
        self._consts: dict[str, np.ndarray] = {}
        self.producer = producers(model.graph.node)
        self.consumers = consumers(model.graph.node)
        self.outputs = {o.name for o in model.graph.output}
        self._names = {n.name for n in model.graph.node} | set(self._inits) | set(self.shapes)

    def const(self, name: str) -> np.ndarray | None:
        """The value of an initializer, or None when ``name`` is computed at run time."""
        if not name or name not in self._inits:
            return None
        if name not in self._consts:
            self._consts[name] = numpy_helper.to_array(self._inits[name])
        return self._consts[name]

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The single node reading ``name``, if exactly one does and it is not a graph output."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in self.outputs:
            return None
        return users[0]

    def fresh(self, base: str) -> str:
        """A tensor or node name not yet used in the graph."""
        name, index = base, 0
        while name in self._names:
            index += 1
            name = f"{base}_{index}"
        self._names.add(name)
        return name

    def initializer(self, base: str, value: np.ndarray) -> onnx.TensorProto:
        # copy(order="C"), not ascontiguousarray, which would turn a scalar into shape [1]
        return numpy_helper.from_array(np.asarray(value).copy(order="C"), self.fresh(base))


def label(node: onnx.NodeProto) -> str:
    return f"{node.name} ({node.op_type})"


class RewritePass:
    """Base class: a named rule ``Pattern -> Replacement`` (stated in the subclass docstring)."""

    name: ClassVar[str]
    op_types: ClassVar[tuple[str, ...]]

    def __init__(self, limits: dict[str, Any]):
        self.limits = limits

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        raise NotImplementedError

    def refuse(self, node: onnx.NodeProto, reason: str) -> Refusal:
        return Refusal(self.name, node.name, node.op_type, reason)

    @classmethod
    def rule(cls) -> str:
        """The first docstring line: the rule in ``Pattern -> Replacement`` form."""
        return (cls.__doc__ or cls.name).strip().splitlines()[0]
