"""FlattenToReshapePass: ``Flatten(X, axis) -> Reshape(X, [prod(d[:axis]), prod(d[axis:])])``.

TensorRT's DLA takes Reshape (a Shuffle layer) but not Flatten. With a static input shape the two
are the same operation. Condition: the input shape is known.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


class FlattenToReshapePass(RewritePass):
    """Flatten(X, axis) -> Reshape(X, [prod(dims before axis), prod(dims from axis)])"""

    name = "flatten-to-reshape"
    op_types = ("Flatten",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        shape = graph.shape(node.input[0])
        if shape is None:
            return self.refuse(node, "input shape unknown")
        axis = attrs(node).get("axis", 1)
        axis = axis + len(shape) if axis < 0 else axis
        target = [math.prod(shape[:axis]), math.prod(shape[axis:])]
        init = graph.initializer(f"{node.name}.shape", np.array(target, np.int64))
        new = helper.make_node(
            "Reshape", [node.input[0], init.name], list(node.output), name=node.name
        )
        return Change(
            remove=[node],
            add=[new],
            initializers=[init],
            description=f"Reshape to {target}",
        )
