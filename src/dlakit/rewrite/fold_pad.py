"""FoldPadPass: ``Conv|AveragePool|MaxPool(Pad(X, p))`` -> the same op with its pads grown by p.

The DLA has no Pad layer, but convolutions and pools pad their own input. Conditions: the Pad is
constant-mode with constant, non-negative pads on H and W only (4-D), and its output feeds only
this node. Per consumer:

* Conv: pad value 0; the pads add to the Conv's pads (``auto_pad`` NOTSET or VALID).
* AveragePool: pad value 0, which the pool must then count: ``count_include_pad = 1``. Refused
  when the pool already pads with ``count_include_pad = 0`` (two kinds of padding cannot mix) or
  uses ``ceil_mode``.
* MaxPool: pad value -inf (a MaxPool pads with -inf; a zero pad would be a real value there).

Pools also need every summed pad below the kernel (a window wholly in padding is undefined).
"""

from __future__ import annotations

import math

import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


class FoldPadPass(RewritePass):
    """Conv|AveragePool|MaxPool(Pad(X, p, constant)) -> Conv|AveragePool|MaxPool(X, pads + p)"""

    name = "fold-pad"
    op_types = ("Pad",)

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        user = graph.only_consumer(node.output[0])
        if user is None or user.op_type not in ("Conv", "AveragePool", "MaxPool"):
            return None
        if user.input[0] != node.output[0]:
            return None
        if len(graph.shape(node.input[0]) or ()) != 4:
            return self.refuse(node, "input is not 4-D NCHW")
        found = self._pads(graph, node)
        if isinstance(found, str):
            return self.refuse(node, found)
        pads, value = found
        if len(pads) != 8 or any(p < 0 for p in pads):
            return self.refuse(node, f"pads {pads} are not non-negative NCHW pads")
        if pads[0] or pads[1] or pads[4] or pads[5]:
            return self.refuse(node, f"pads {pads} touch the N or C axis")
        spatial = [pads[2], pads[3], pads[6], pads[7]]  # begin H, begin W, end H, end W
        a = attrs(user)
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            return self.refuse(node, f"{user.name} uses auto_pad {a['auto_pad']}")
        old = (
            list(a.get("pads", [0, 0, 0, 0]))
            if a.get("auto_pad", "NOTSET") == "NOTSET"
            else [0] * 4
        )
        summed = [p + q for p, q in zip(old, spatial, strict=True)]
        extra: dict[str, int] = {}
        if user.op_type == "Conv" and value != 0:
            return self.refuse(node, f"pad value {value} is not the Conv's zero padding")
        if user.op_type == "AveragePool":
            if value != 0:
                return self.refuse(node, f"pad value {value} is not zero")
            if a.get("ceil_mode", 0):
                return self.refuse(node, f"{user.name} uses ceil_mode")
            if any(old) and not a.get("count_include_pad", 0):
                return self.refuse(node, f"{user.name} already pads, excluding pads from the count")
            extra["count_include_pad"] = 1
        if user.op_type == "MaxPool" and not (math.isinf(value) and value < 0):
            return self.refuse(node, f"pad value {value} is not MaxPool's -inf padding")
        if user.op_type != "Conv":
            kernel = list(a["kernel_shape"]) * 2
            if any(p >= k for p, k in zip(summed, kernel, strict=True)):
                return self.refuse(
                    node, f"summed pads {summed} reach the kernel {a['kernel_shape']}"
                )
        new = onnx.NodeProto()
        new.CopyFrom(user)
        del new.attribute[:]
        keep = [at for at in user.attribute if at.name not in ("pads", "auto_pad", *extra)]
        new.attribute.extend(keep)
        new.attribute.append(helper.make_attribute("pads", summed))
        for key, val in extra.items():
            new.attribute.append(helper.make_attribute(key, val))
        new.input[0] = node.input[0]
        return Change(
            remove=[node, user],
            add=[new],
            description=f"pad {spatial} folded into {user.op_type} {user.name}: pads {summed}",
        )

    def _pads(self, graph: Graph, node: onnx.NodeProto) -> tuple[list[int], float] | str:
        a = attrs(node)
        if a.get("mode", "constant") != "constant":
            return f"mode {a['mode']} (only constant padding folds)"
        if graph.opset < 11:
            return list(a.get("pads", [])), float(a.get("value", 0.0))
        pads = graph.const(node.input[1]) if len(node.input) > 1 else None
        if pads is None:
            return "pads are computed at run time"
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            const = graph.const(node.input[2])
            if const is None:
                return "the pad value is computed at run time"
            value = float(const.reshape(-1)[0]) if const.size else 0.0
        pads_list = [int(p) for p in pads]
        if len(node.input) > 3 and node.input[3]:
            axes = graph.const(node.input[3])
            if axes is None:
                return "the pad axes are computed at run time"
            full = [0] * 8
            for index, axis in enumerate(int(x) % 4 for x in axes):
                full[axis] = pads_list[index]
                full[axis + 4] = pads_list[index + len(axes)]
            pads_list = full
        return pads_list, value
