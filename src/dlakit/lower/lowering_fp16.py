"""Lower an ONNX model to FP16 hardware layers for nv_full (``dlakit compile --precision fp16``).

No calibration: every DLA tensor is FP16 and every weight and SDP operand is the FP16 rounding
(nearest even) of the model's value, BatchNormalization folded into the convolution first, as
in the INT8 lowering (:mod:`dlakit.lower.lowering`, whose fusions this reuses). The nodes the
target's rules put on the DLA become FP16 layers where ``support/rules/lowering_fp16.toml``
lists their op; the others run on the host in FP32 with that table's reason, recorded in their
verdict. A DLA segment's inputs are rounded to FP16 on the host (:class:`QToFp16`); its FP16
outputs are read as they are (FP16 values are exact in FP32).

The definition of the result is the simulator running the compiled layers: its FP16 units are
bit-exact to the NVDLA C model (``sim/fp16*.py``, tested against the official regression
goldens and the C model's primitives).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.graph.nodes import attrs as node_attrs
from dlakit.lower import fp16params
from dlakit.lower.lint import lint
from dlakit.lower.lowering import (
    _clip_bounds,
    _Lowering,
    _pool_geometry,
    _State,
    batchnorm_factors,
    decide,
    fused_clip,
)
from dlakit.lower.qgraph import (
    QConcat,
    QConv,
    QGraph,
    QLayer,
    QPool,
    QReshape,
    QSdp,
    QToFp16,
)
from dlakit.partition import check_model
from dlakit.support.rules import load_rule_set
from dlakit.support.verdict import NodeVerdict, Reason
from dlakit.targets import Target, load_target

PLACED = "dla-fp16"
_RULES = "lowering_fp16"
# Layout ops that stay exact data movement when they fall back (the INT8 lowering's
# ``fallback_int8``): a Reshape keeping the batch dimension, whatever the model's own shape says.
_LAYOUT = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout"}


def _refusal(op: str) -> Reason:
    data = load_rule_set(_RULES).data
    entry = data["refused"].get(op, data["refused"]["default"])
    return Reason(entry["rule"], entry["message"], data["source"], kind="lowering")


def fp16_decisions(verdicts: dict[str, NodeVerdict]) -> dict[str, str]:
    """Per node: ``dla-fp16`` (an FP16 hardware layer), ``int8-fallback`` (a layout op on the
    host, as data movement) or ``fp32`` (host); a DLA node the FP16 compiler cannot place moves
    to the fallback with the table's reason."""
    ops = set(load_rule_set(_RULES).data["ops"])
    decisions: dict[str, str] = {}
    for name, decision in decide(verdicts).items():
        v = verdicts[name]
        if decision == "int8" and v.op in ops:
            decisions[name] = PLACED
            v.precision = "fp16"
            continue
        if decision == "int8-fallback" and v.op in _LAYOUT:
            decisions[name] = decision
            continue
        if v.engine == "dla":
            v.move_to_fallback(_refusal(v.op))
        decisions[name] = "fp32"
    return decisions


class Fp16State(_State):
    def fp16(self, onnx_name: str) -> str:
        """The FP16 tensor of ``onnx_name``, rounding its float value on the host if needed."""
        current = self.float_of[onnx_name]
        if self.tensors[current].precision == "fp16":
            return current
        name = f"{onnx_name}::fp16"
        if name not in self.tensors:
            self.add_tensor(name, self.shape(onnx_name), "fp16")
            self.layers.append(
                QToFp16(f"to_fp16:{onnx_name}", [current], [name], engine="fallback")
            )
        return name


class _Fp16Lowering(_Lowering):
    placed = PLACED
    st: Fp16State

    def on_dla(self, tensor: str) -> bool:
        name = self.st.float_of.get(tensor)
        return name is not None and self.st.tensors[name].precision == "fp16"

    def lower(self, node: onnx.NodeProto) -> None:
        if node.name in self.done:
            return
        if self.decisions[node.name] == "int8-fallback":
            self.layout(node, engine="fallback")  # data movement on the host, batch kept
            return
        if self.decisions[node.name] != PLACED:
            self.float_node(node, "fp32")
            return
        getattr(self, f"_fp16_{node.op_type}")(node)

    def emit(self, layer: QLayer, onnx_out: str) -> None:
        self.st.add_tensor(onnx_out, self.st.shape(onnx_out), "fp16")
        self.st.float_of[onnx_out] = onnx_out
        self.st.layers.append(layer)

    # ---- convolution-like (the INT8 handlers find weights and geometry, then call conv_like)
    def _fp16_Conv(self, node: onnx.NodeProto) -> None:
        self._int8_Conv(node)

    def _fp16_Gemm(self, node: onnx.NodeProto) -> None:
        self._int8_Gemm(node)

    def _fp16_MatMul(self, node: onnx.NodeProto) -> None:
        self._int8_MatMul(node)

    def conv_like(
        self,
        node: onnx.NodeProto,
        src: str,
        w: np.ndarray,
        b: np.ndarray | None,
        stride=(1, 1),
        pads=(0, 0, 0, 0),
        dilation=(1, 1),
        groups: int = 1,
        phases: tuple[int, int, int, int] | None = None,
    ) -> None:
        """A convolution with what its SDP applies on the fly in FP16: BatchNormalization
        folded into weights and bias, then Relu/Clip with a lower bound of 0 or none (the INT8
        lowering's first fusions; FP16 has no SDP Y unit or LUT here)."""
        if phases is not None:
            raise DlakitError(f"node {node.name}: FP16 deconvolution has no lowering")
        fused, out = [node.name], node.output[0]
        nxt = self.sole_consumer(out)
        if nxt is not None and nxt.op_type == "BatchNormalization":
            a, shift = batchnorm_factors(nxt, self.inits)
            w = w * a.reshape(-1, 1, 1, 1)
            b = (np.zeros(w.shape[0]) if b is None else b) * a + shift
            fused.append(nxt.name)
            out = nxt.output[0]
            nxt = self.sole_consumer(out)
        clip: tuple[float | None, float | None] = (None, None)
        if (bounds := fused_clip(nxt, self.inits)) is not None:
            clip = bounds
            fused.append(nxt.name)
            out = nxt.output[0]
        x = self.st.fp16(src)
        self.done.update(fused)
        layer = QConv(
            node.name, [x], [out], onnx_nodes=fused,
            weight=np.asarray(w, dtype=np.float64).astype(np.float16),
            stride=(int(stride[0]), int(stride[1])), pads=tuple(int(p) for p in pads),
            dilation=(int(dilation[0]), int(dilation[1])), groups=groups,
            sdp=fp16params.sdp_chain(bias=b, clip=clip, where=node.name), precision="fp16",
        )  # fmt: skip
        self.emit(layer, out)

    # ---- standalone SDP passes
    def _fp16_BatchNormalization(self, node: onnx.NodeProto) -> None:
        a, shift = batchnorm_factors(node, self.inits)
        chain = fp16params.sdp_chain(bias=shift, mul=a, where=node.name)
        self.sdp_pass(node, chain)

    def _fp16_Relu(self, node: onnx.NodeProto) -> None:
        self.sdp_pass(node, fp16params.sdp_chain(clip=(0.0, None), where=node.name))

    def _fp16_Clip(self, node: onnx.NodeProto) -> None:
        clip = _clip_bounds(node, self.inits)
        self.sdp_pass(node, fp16params.sdp_chain(clip=clip, where=node.name))

    def sdp_pass(self, node: onnx.NodeProto, chain) -> None:
        x = self.st.fp16(node.input[0])
        layer = QSdp(node.name, [x], [node.output[0]], onnx_nodes=[node.name], sdp=chain,
                     precision="fp16")  # fmt: skip
        self.emit(layer, node.output[0])

    # ---- PDP
    def _fp16_MaxPool(self, node: onnx.NodeProto) -> None:
        self.pool_fp16(node, "max")

    def _fp16_GlobalMaxPool(self, node: onnx.NodeProto) -> None:
        self.pool_fp16(node, "max")

    def _fp16_AveragePool(self, node: onnx.NodeProto) -> None:
        self.pool_fp16(node, "avg")

    def _fp16_GlobalAveragePool(self, node: onnx.NodeProto) -> None:
        self.pool_fp16(node, "avg")

    def pool_fp16(self, node: onnx.NodeProto, method: str) -> None:
        x = self.st.fp16(node.input[0])
        kernel, stride, pads = _pool_geometry(node, self.st.shape(node.input[0]))
        layer = QPool(
            node.name, [x], [node.output[0]], onnx_nodes=[node.name], method=method,  # type: ignore[arg-type]
            kernel=kernel, stride=stride, pads=pads, pad_value=0,
            recip_w=fp16params.pdp_reciprocal_fp16(kernel[1]),
            recip_h=fp16params.pdp_reciprocal_fp16(kernel[0]), precision="fp16",
        )  # fmt: skip
        self.emit(layer, node.output[0])

    # ---- layout
    def _fp16_Concat(self, node: onnx.NodeProto) -> None:
        inputs = [self.st.fp16(name) for name in node.input]
        axis = int(node_attrs(node).get("axis", 1)) % len(self.st.shape(node.output[0]))
        self.emit(QConcat(node.name, inputs, [node.output[0]], onnx_nodes=[node.name],
                          axis=axis), node.output[0])  # fmt: skip

    def _fp16_layout(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        if self.skip_for_fc(out):
            self.done.add(node.name)
            return
        x = self.st.fp16(node.input[0])
        self.emit(QReshape(node.name, [x], [out], onnx_nodes=[node.name],
                           shape=self.st.shape(out)), out)  # fmt: skip

    _fp16_Flatten = _fp16_layout
    _fp16_Reshape = _fp16_layout
    _fp16_Squeeze = _fp16_layout
    _fp16_Unsqueeze = _fp16_layout
    _fp16_Identity = _fp16_layout
    _fp16_Dropout = _fp16_layout


def require_fp16(target: str) -> Target:
    """``target``, refused in one line when its DLA has no FP16 data path."""
    tgt = load_target(target)
    if "fp16" not in tgt.dla.precisions:
        raise DlakitError(
            f"--precision fp16: target {target}'s DLA has no FP16 (its data path is INT8 only); "
            "use --precision int8 with --scales"
        )
    return tgt


def lower_fp16(
    loaded: LoadedModel,
    target: str = "nv_full",
    fp16_layers: Iterable[str] = (),
    fallback_layers: Iterable[str] = (),
) -> QGraph:
    """Lower ``loaded`` for ``target``'s DLA in FP16 (see the module docstring); a target
    without FP16 is refused in one line."""
    tgt = require_fp16(target)
    result = check_model(loaded, tgt, None, fallback_layers=fallback_layers,
                         fp16_layers=fp16_layers)  # fmt: skip
    verdicts = {v.name: v for v in result.nodes}
    st = Fp16State(loaded, {}, output_precision="fp16")
    for name in loaded.input_names:
        st.add_tensor(name, tuple(loaded.input_shapes[name]), "fp32")
        st.float_of[name] = name
    lowering = _Fp16Lowering(st, fp16_decisions(verdicts))
    for node in loaded.nodes:
        lowering.lower(node)
    for name in loaded.output_names:
        if not st.available(name):
            raise DlakitError(f"model output '{name}' was not produced by the lowering")
    graph = QGraph(
        model_name=loaded.path.stem,
        target=target,
        layers=st.layers,
        tensors=st.tensors,
        inputs=list(loaded.input_names),
        outputs=list(loaded.output_names),
        verdicts=verdicts,
    )
    lint(graph)
    return graph
