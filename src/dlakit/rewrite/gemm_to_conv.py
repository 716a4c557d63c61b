"""GemmToConvPass: ``Gemm(X, W, C)`` / ``MatMul(X, W)`` with constant W -> ``Conv``.

``Y[N, M] = alpha * X[N, K] @ op(W) + beta * C`` becomes
``Reshape(Conv(X4, W'[M, C, H, W], B'[M]), [N, M])`` with ``W' = alpha * op(W)^T`` reshaped and
``B' = beta * C``. ``X4`` is the ``[N, C, H, W]`` tensor (``C*H*W = K``) that a Reshape/Flatten
turned into X when there is one: the pooled features of a classifier head (1x1 Conv), or a
flattened feature map (a Conv whose kernel is the whole H x W map, since NCHW flattening is
C-major). Otherwise X is reshaped to ``[N, K, 1, 1]`` for a 1x1 Conv.
A MatMul whose only reader is ``Add(_, bias)`` with a constant ``[M]`` bias takes the bias along.
Conditions: X is 2-D, W is a 2-D constant, ``transA = 0``, C (if any) a constant that broadcasts
to ``[M]``; a MatMul with a 2-D X only (batched MatMul is not a 1x1 convolution).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from dlakit.graph.nodes import attrs
from dlakit.rewrite.base import Change, Graph, Refusal, RewritePass


class GemmToConvPass(RewritePass):
    """Gemm(X, W, C) | Add(MatMul(X, W), C) -> Reshape(Conv(X4[N,C,H,W], W^T, C), [N, M])"""

    name = "gemm-to-conv"
    op_types = ("Gemm", "MatMul")

    def match(self, graph: Graph, node: onnx.NodeProto) -> Change | Refusal | None:
        x_shape = graph.shape(node.input[0])
        weight = graph.const(node.input[1])
        if weight is None:
            return self.refuse(
                node, "the weight input is not a constant (DLA needs it at build time)"
            )
        if x_shape is None or len(x_shape) != 2 or weight.ndim != 2:
            return self.refuse(node, f"input rank {len(x_shape or ())} is not a 2-D [N, K] matrix")
        remove, out_name, bias = [node], node.output[0], None
        if node.op_type == "Gemm":
            a = attrs(node)
            if a.get("transA", 0):
                return self.refuse(node, "transA = 1 (X would need a transpose)")
            if a.get("transB", 0):
                weight = weight.T
            weight = weight * np.asarray(a.get("alpha", 1.0), weight.dtype)
            if len(node.input) > 2 and node.input[2]:
                c = graph.const(node.input[2])
                if c is None:
                    return self.refuse(node, "the C input is not a constant")
                bias = c * np.asarray(a.get("beta", 1.0), c.dtype)
        else:
            add = graph.only_consumer(node.output[0])
            if add is not None and add.op_type == "Add":
                other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
                c = graph.const(other)
                if c is not None and c.shape in ((weight.shape[1],), (1, weight.shape[1])):
                    bias, out_name = c, add.output[0]
                    remove.append(add)
        m = weight.shape[1]
        if bias is not None:
            if bias.shape not in ((), (1,), (m,), (1, 1), (1, m)):
                return self.refuse(node, f"bias of shape {bias.shape} does not broadcast to [{m}]")
            bias = np.broadcast_to(bias.reshape(-1), (m,)).astype(weight.dtype)
        n = x_shape[0]
        x4, feeder, kernel = self._four_d_source(graph, node.input[0], x_shape)
        new_nodes: list[onnx.NodeProto] = []
        inits = []
        base = node.name
        if x4 is None:
            shape4 = graph.initializer(f"{base}.shape4", np.array([n, x_shape[1], 1, 1], np.int64))
            inits.append(shape4)
            x4 = graph.fresh(f"{base}.x4")
            new_nodes.append(
                helper.make_node(
                    "Reshape", [node.input[0], shape4.name], [x4], name=graph.fresh(f"{base}/to4d")
                )
            )
        # NCHW flattening is C-major, so row k of W is weight (c, h, w) of a full-map kernel
        w_init = graph.initializer(f"{base}.weight_conv", weight.T.reshape(m, -1, *kernel))
        inits.append(w_init)
        conv_inputs = [x4, w_init.name]
        if bias is not None:
            b_init = graph.initializer(f"{base}.bias_conv", bias)
            inits.append(b_init)
            conv_inputs.append(b_init.name)
        y4 = graph.fresh(f"{base}.y4")
        new_nodes.append(
            helper.make_node(
                "Conv", conv_inputs, [y4], name=graph.fresh(f"{base}/conv"), kernel_shape=kernel
            )
        )
        shape2 = graph.initializer(f"{base}.shape2", np.array([n, m], np.int64))
        inits.append(shape2)
        new_nodes.append(
            helper.make_node(
                "Reshape", [y4, shape2.name], [out_name], name=graph.fresh(f"{base}/to2d")
            )
        )
        bias_from = " (bias from the Add)" if len(remove) > 1 else ""
        how = f"reads {feeder}'s 4-D input" if feeder else "after a Reshape to [N, K, 1, 1]"
        size = "x".join(map(str, kernel))
        return Change(
            remove=remove,
            add=new_nodes,
            initializers=inits,
            description=f"{size} Conv with {m} outputs{bias_from}, {how}",
        )

    def _four_d_source(
        self, graph: Graph, name: str, x_shape: tuple[int, ...]
    ) -> tuple[str | None, str | None, list[int]]:
        """The [N, C, H, W] tensor that a Reshape/Flatten turned into X, and the conv kernel [H, W].

        A classifier head flattens [N, C, 1, 1] (a 1x1 Conv follows) or [N, C, H, W] (a Conv whose
        kernel covers the whole map follows, within the conv kernel limit).
        """
        feeder = graph.producer.get(name)
        if feeder is None or feeder.op_type not in ("Reshape", "Flatten"):
            return None, None, [1, 1]
        src = graph.shape(feeder.input[0])
        if src is None or len(src) != 4 or src[0] != x_shape[0]:
            return None, None, [1, 1]
        if src[1] * src[2] * src[3] != x_shape[1]:
            return None, None, [1, 1]
        if max(src[2:]) > int(self.limits["conv_kernel_max"]):
            return None, None, [1, 1]
        return feeder.input[0], feeder.name, [src[2], src[3]]
