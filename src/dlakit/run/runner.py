"""Execute a compiled model: DLA segments on the register-level simulator, fallback segments in
PyTorch (or onnxruntime), in dependency order.

The simulator is programmed only through the register writes stored per hardware operation, the
same path a trace takes (:class:`dlakit.sim.Nvdla`). Host code moves tensors in and out of the
simulated memory at segment boundaries, as a driver copies input and output tensors. The
simulator runs one image at a time (``BATCH_NUMBER`` is not modelled), so a batch loops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dlakit.errors import DlakitError
from dlakit.nvdla.compiler import Compiled, Segment
from dlakit.sim.layout import read_feature, write_feature
from dlakit.sim.nvdla import Nvdla, resolve_device
from dlakit.sim.precision import read_elements, write_elements

FALLBACK_ENGINES = ("torch", "ort")


@dataclass
class RunStats:
    images: int = 0
    seconds: float = 0.0
    dla_seconds: float = 0.0
    fallback_seconds: float = 0.0
    operations: int = 0
    kept: dict[str, np.ndarray] = field(default_factory=dict)


class _OrtSegment:
    """A fallback segment node by node, one onnxruntime session per node with default options and
    one thread: how the integer reference runs fallback layers, so the floats match its bits."""

    def __init__(self, seg: Segment) -> None:
        import onnx
        import onnxruntime as ort

        assert seg.model is not None
        model = onnx.shape_inference.infer_shapes(seg.model)
        g = model.graph
        types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
        inits = {t.name: t for t in g.initializer}
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.steps = []
        for node in g.node:
            used = [n for n in node.input if n and n not in inits]
            graph = onnx.helper.make_graph(
                [node],
                node.name or node.op_type,
                [onnx.helper.make_tensor_value_info(n, types[n], None) for n in used],
                [onnx.helper.make_tensor_value_info(n, types[n], None) for n in node.output],
                [inits[n] for n in node.input if n in inits],
            )
            one = onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=10)
            session = ort.InferenceSession(
                one.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
            self.steps.append((session, used, list(node.output)))
        self.outputs = list(seg.outputs)

    def run(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = {k: v.cpu().numpy() for k, v in feeds.items()}
        for session, used, outs in self.steps:
            for name, value in zip(outs, session.run(outs, {n: values[n] for n in used}),
                                   strict=True):  # fmt: skip
                values[name] = value
        return {k: torch.as_tensor(values[k]) for k in self.outputs}


class Runner:
    """A compiled model loaded into a simulated NVDLA and its fallback segments, ready to run."""

    def __init__(
        self, comp: Compiled, device: str | None = "cpu", fallback_engine: str = "torch"
    ) -> None:
        from dlakit.run.torch_exec import TorchGraph

        if fallback_engine not in FALLBACK_ENGINES:
            raise DlakitError(
                f"--fallback-engine {fallback_engine!r}: choose {' or '.join(FALLBACK_ENGINES)}"
            )
        self.comp = comp
        self.device = resolve_device(device)
        self.nv = Nvdla(comp.target.name, self.device)
        self.atom = comp.target.nvdla.memory_atomic
        mem = self.nv.memory
        mem.alloc(comp.act_base, max(comp.act_bytes, 1))
        if comp.constants:
            mem.alloc(comp.const_base, len(comp.constants))
            mem.write(comp.const_base, comp.constants)
        regmap = self.nv.regmap
        self.programs: list[list[list[tuple[int, int]]]] = []
        self.fallbacks: list[object | None] = []
        for seg in comp.segments:
            self.programs.append(
                [[(regmap.register(u, r).address, v) for u, r, v in op.writes] for op in seg.ops]
            )
            if seg.kind == "fallback":
                assert seg.model is not None
                self.fallbacks.append(
                    TorchGraph(seg.model, self.device)
                    if fallback_engine == "torch"
                    else _OrtSegment(seg)
                )
            else:
                self.fallbacks.append(None)

    # ---- moving tensors between host and simulated memory
    def _read(self, name: str) -> torch.Tensor:
        info = self.comp.tensors[name]
        s = info.surface
        assert s is not None
        if info.precision == "fp16":  # FP16 surfaces: their numbers, exact in FP32
            bits = read_elements(self.nv.memory, s.address, s.channels, s.height, s.width,
                                 s.line_stride, s.surf_stride, self.atom, "FP16")  # fmt: skip
            value = bits.to(torch.int32).to(torch.int16).view(torch.float16).to(torch.float32)
            return value.reshape((1, *info.shape[1:]))
        cube = read_feature(self.nv.memory, s.address, (s.channels, s.height, s.width),
                            s.line_stride, s.surf_stride, self.atom)  # fmt: skip
        return cube.to(torch.int8).reshape((1, *info.shape[1:]))

    def _write(self, name: str, value: torch.Tensor) -> None:
        info = self.comp.tensors[name]
        s = info.surface
        assert s is not None
        if info.precision == "fp16":  # FP16 of the value (nearest even), as its bit pattern
            half = value.reshape(s.channels, s.height, s.width).to(torch.float16)
            bits = half.view(torch.int16).to(torch.int64) & 0xFFFF
            write_elements(self.nv.memory, s.address, bits, s.line_stride, s.surf_stride,
                           self.atom, "FP16")  # fmt: skip
            return
        cube = value.reshape(s.channels, s.height, s.width).to(torch.int64)
        write_feature(self.nv.memory, s.address, cube, s.line_stride, s.surf_stride, self.atom)

    def _value(self, name: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
        if name not in values:
            values[name] = self._read(name)
        return values[name]

    # ---- execution
    def _given(self, name: str, value: np.ndarray) -> torch.Tensor:
        """A host value supplied from outside: INT8 tensors arrive dequantized (value * scale)."""
        info = self.comp.tensors[name]
        t = torch.as_tensor(np.ascontiguousarray(value), device=self.device)
        if info.precision == "int8":
            return torch.round(t.to(torch.float64) / (info.scale or 1.0)).to(torch.int8)
        return t

    def run_one(
        self,
        feeds: dict[str, np.ndarray],
        stats: RunStats,
        keep: set[str],
        given: dict[str, np.ndarray] | None = None,
    ) -> dict:
        values: dict[str, torch.Tensor] = {
            k: torch.as_tensor(np.ascontiguousarray(v, dtype=np.float32), device=self.device)
            for k, v in feeds.items()
        }
        for index, seg in enumerate(self.comp.segments):
            t0 = time.perf_counter()
            if seg.kind == "dla":
                for name in seg.inputs:
                    if name in values and self.comp.tensors[name].surface is not None:
                        self._write(name, values[name])
                last_of = {op.layer: i for i, op in enumerate(seg.ops)}
                captured: set[str] = set()
                for i, (op, prog) in enumerate(zip(seg.ops, self.programs[index], strict=True)):
                    before = self.nv.operations
                    for address, value in prog:
                        self.nv.write(address, value)
                    if self.nv.operations != before + 1:
                        raise DlakitError(f"hardware operation {op.name} did not launch")
                    if last_of[op.layer] == i:
                        # Read kept tensors now: a later operation may reuse their bytes.
                        for name in keep.intersection(op.outputs) - captured:
                            stats.kept.setdefault(name, []).append(self._read(name).cpu())
                            captured.add(name)
                stats.operations += len(seg.ops)
                for name in seg.outputs:
                    values[name] = self._read(name)  # now in DLA memory: the host copy is stale
                    if name in keep and name not in captured:
                        stats.kept.setdefault(name, []).append(values[name].cpu())
                stats.dla_seconds += time.perf_counter() - t0
            else:
                if given is not None:
                    outs = {n: self._given(n, given[n]) for n in seg.outputs}
                else:
                    feeds_t = {n: self._value(n, values) for n in seg.inputs}
                    outs = self.fallbacks[index].run(feeds_t)  # type: ignore[union-attr]
                for name, value in outs.items():
                    values[name] = value
                    if self.comp.tensors[name].surface is not None:
                        self._write(name, value)
                    if name in keep:
                        stats.kept.setdefault(name, []).append(value.cpu())
                stats.fallback_seconds += time.perf_counter() - t0
        result = {}
        for name in self.comp.outputs:
            value = self._value(name, values)
            info = self.comp.tensors[name]
            if info.precision == "int8" or info.scale is not None:  # INT8, or FP16 of an INT17
                value = value.to(torch.float32) * np.float32(info.scale or 1.0)
            result[name] = value.cpu().numpy()
        return result

    def fallback_outputs(self) -> set[str]:
        return {n for seg in self.comp.segments if seg.kind == "fallback" for n in seg.outputs}

    def run(
        self,
        feeds: dict[str, np.ndarray],
        keep: set[str] | None = None,
        fallback_values: dict[str, np.ndarray] | None = None,
    ) -> tuple[dict[str, np.ndarray], RunStats]:
        """Outputs for a batch (float32, INT8 outputs dequantized) and the run's statistics.

        ``fallback_values`` (batch-first, INT8 tensors dequantized, e.g. the integer reference's
        kept tensors) replaces every fallback segment's outputs: the DLA segments then see exactly
        those inputs, which isolates them from host floating-point differences.
        """
        missing = [n for n in self.comp.inputs if n not in feeds]
        if missing:
            raise DlakitError(f"no data for model input(s): {', '.join(missing)}")
        batch = len(next(iter(feeds.values())))
        stats = RunStats()
        outs: dict[str, list[np.ndarray]] = {}
        t0 = time.perf_counter()
        for i in range(batch):
            given = (
                None
                if fallback_values is None
                else {k: v[i : i + 1] for k, v in fallback_values.items()}
            )
            one = self.run_one({k: v[i : i + 1] for k, v in feeds.items()}, stats, keep or set(),
                               given)  # fmt: skip
            for k, v in one.items():
                outs.setdefault(k, []).append(v)
        stats.seconds = time.perf_counter() - t0
        stats.images = batch
        stats.kept = {k: torch.cat(v).numpy() for k, v in stats.kept.items()}  # type: ignore[arg-type]
        return {k: np.concatenate(v) for k, v in outs.items()}, stats
