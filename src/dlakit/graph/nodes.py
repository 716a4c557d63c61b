"""One place for what every stage asks of an ONNX node list: attributes, producers, consumers.

Attributes come back as plain Python values with strings decoded (``auto_pad`` is ``"NOTSET"``,
never ``b"NOTSET"``), so no caller compares bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import onnx


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as plain Python values (strings decoded)."""
    out: dict[str, Any] = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        out[attr.name] = value
    return out


def producers(nodes: Iterable[onnx.NodeProto]) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that writes it."""
    return {out: node for node in nodes for out in node.output if out}


def consumers(nodes: Iterable[onnx.NodeProto]) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it, in graph order (a node reading it twice, twice)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            if name:
                users.setdefault(name, []).append(node)
    return users
