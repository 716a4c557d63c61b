"""Execute a compiled model: DLA segments on the register-level simulator, fallback segments in
PyTorch (or onnxruntime), in dependency order, a batch of images at a time.

The simulator is programmed only through the register writes stored per hardware operation.
They are decoded once, when the runner is built (:class:`dlakit.sim.replay.Program`); each batch
then replays the decoded operations on a batch of memory images (the simulator's batch axis:
activations per image, constants shared), byte for byte what running the images one at a time
gives. Host code moves tensors in and out of the simulated memory at segment boundaries, whole
batches as strided views of the surfaces, as a driver copies input and output tensors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dlakit.errors import DlakitError
from dlakit.nvdla.compiler import Compiled, Segment
from dlakit.run.liveness import Liveness, drop
from dlakit.sim.batch import BatchedMemory
from dlakit.sim.decode import ConvOp
from dlakit.sim.nvdla import resolve_device
from dlakit.sim.replay import Fallback, Program
from dlakit.sim.sdp_fused import numba_kernels
from dlakit.system import bound_host_heap, memory_budget

FALLBACK_ENGINES = ("torch", "ort")
# Default batch: enough images per pass to amortise each operation's fixed cost, within memory.
DEFAULT_BATCH = {"cpu": 32, "cuda": 256}


@dataclass
class RunStats:
    images: int = 0
    batch: int = 0
    seconds: float = 0.0
    dla_seconds: float = 0.0
    fallback_seconds: float = 0.0
    operations: int = 0  # hardware operations executed, all images counted
    kept: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


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
        # One session per node: each arena would keep its own peak for good (GBs per batch).
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
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
        self.liveness = Liveness(seg.model)

    def run(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = {k: v.cpu().numpy() for k, v in feeds.items()}
        for (session, used, outs), dead in zip(self.steps, self.liveness.drops, strict=True):
            for name, value in zip(outs, session.run(outs, {n: values[n] for n in used}),
                                   strict=True):  # fmt: skip
                values[name] = value
            drop(values, dead)
        return {k: torch.as_tensor(values[k]) for k in self.outputs}


class Runner:
    """A compiled model decoded for a simulated NVDLA and its fallback segments, ready to run.

    ``batch``: images per simulator pass (None: :meth:`default_batch`). ``decode=False`` runs
    every hardware operation on the unit models one image at a time (the definition, slow).
    """

    def __init__(
        self,
        comp: Compiled,
        device: str | None = "cpu",
        fallback_engine: str = "torch",
        batch: int | None = None,
        decode: bool = True,
    ) -> None:
        from dlakit.run.torch_exec import TorchGraph

        if fallback_engine not in FALLBACK_ENGINES:
            raise DlakitError(
                f"--fallback-engine {fallback_engine!r}: choose {' or '.join(FALLBACK_ENGINES)}"
            )
        if batch is not None and batch < 1:
            raise DlakitError(f"--batch {batch}: must be at least 1")
        self.comp = comp
        self.device = resolve_device(device)
        bound_host_heap()
        assert comp.target.nvdla is not None
        self.atom = comp.target.nvdla.memory_atomic
        self.memory = BatchedMemory(1, self.device)
        self.memory.alloc(comp.act_base, max(comp.act_bytes, 1))
        if comp.constants:
            self.memory.alloc(comp.const_base, len(comp.constants), shared=True)
            self.memory.load(comp.const_base, comp.constants)
        ops = [op for seg in comp.segments for op in seg.ops]
        regmap = self._regmap()
        self.program = Program(
            comp.target.name,
            self.memory,
            [[(regmap.register(u, r).address, v) for u, r, v in op.writes] for op in ops],
            [op.name for op in ops],
            decode=decode,
            layers=[op.layer for op in ops],
        )
        self.fallbacks: list[object | None] = []
        self.first_step: list[int] = []
        count = 0
        for seg in comp.segments:
            self.first_step.append(count)
            count += len(seg.ops)
            if seg.kind == "fallback":
                assert seg.model is not None
                self.fallbacks.append(
                    TorchGraph(seg.model, self.device)
                    if fallback_engine == "torch"
                    else _OrtSegment(seg)
                )
            else:
                self.fallbacks.append(None)
        # Host values die after the last segment that reads them (model outputs live on).
        self._dead_after: list[list[str]] = [[] for _ in comp.segments]
        last = {n: i for i, seg in enumerate(comp.segments) for n in seg.inputs}
        for name, index in last.items():
            if name not in comp.outputs:
                self._dead_after[index].append(name)
        self._plan_memory()
        self.batch = self.check_batch(batch) if batch is not None else self.default_batch()

    def _regmap(self):
        from dlakit.hw import load_register_map

        assert self.comp.target.nvdla is not None
        return load_register_map(self.comp.target.nvdla.hw_tree)

    # ---- memory
    @property
    def fast_operations(self) -> int:
        """Hardware operations on the decoded fast path (the others run the unit models)."""
        return self.program.decoded

    def memory_needed(self, batch: int) -> int:
        """Bytes a pass of ``batch`` images plans to use: per image, the simulated activation
        memory plus the most any one segment holds on the host (the values alive across it, its
        own intermediates, the surface copies in and out) or the largest operation's workspace;
        once, the decoded weights and constants."""
        return batch * self.memory_per_image() + self._weight_bytes + len(self.comp.constants)

    def memory_per_image(self) -> int:
        return self.comp.act_bytes + max(self._host_bytes, self._work_bytes)

    def _plan_memory(self) -> None:
        comp = self.comp

        def size(name: str) -> int:  # host values: at most 4 bytes an element (float32)
            return int(np.prod(comp.tensors[name].shape[1:], dtype=np.int64)) * 4

        live = set(comp.inputs)
        host = 0
        for seg, engine, dead in zip(comp.segments, self.fallbacks, self._dead_after, strict=True):
            held = sum(size(n) for n in live)
            moved = sum(size(n) for n in [*seg.inputs, *seg.outputs])  # _write/_read copies
            work = 0
            if engine is not None:
                work = engine.liveness.peak_bytes  # type: ignore[attr-defined]
                if isinstance(engine, _OrtSegment):
                    work *= 2  # onnxruntime's output buffer next to its numpy copy
            host = max(host, held + moved + work)
            live.update(seg.outputs)
            live.difference_update(dead)
        work = 0
        weights = 0
        for step in self.program.steps:
            if isinstance(step, ConvOp):
                kp = step.weights.shape[0]
                c, (oh, ow) = step.in_channels, step.out_hw
                h, w = step.src.height + sum(step.pads[2:]), step.src.width + sum(step.pads[:2])
                e = step.weights.element_size()
                work = max(work, e * (c * h * w + kp * oh * ow) + 2 * kp * oh * ow)
                weights += step.weights.numel() * e
            elif isinstance(step, Fallback):
                work = max(work, 64 * comp.act_bytes)  # the unit models' int64 temporaries
        self._host_bytes, self._work_bytes, self._weight_bytes = host, work, weights

    def _fit(self) -> int:
        free = memory_budget(self.device)
        fit = 0
        while fit < 4096 and self.memory_needed(fit + 1) <= free:
            fit = fit + 1 if fit < 8 else fit * 2
        while fit > 1 and self.memory_needed(fit) > free:
            fit -= 1
        return max(fit, 1)

    @property
    def preferred_batch(self) -> int:
        """The device's default batch where memory allows it."""
        return DEFAULT_BATCH.get(self.device.type, 32)

    def default_batch(self) -> int:
        """The device's default batch, as large as memory allows (at least 1)."""
        return max(1, min(self.preferred_batch, self._fit()))

    def check_batch(self, batch: int) -> int:
        free = memory_budget(self.device)
        need = self.memory_needed(batch)
        if need > free:
            raise DlakitError(
                f"--batch {batch}: needs about {need / 2**30:.2f} GiB on {self.device}, "
                f"{free / 2**30:.2f} GiB is available to this run; use --batch {self._fit()} "
                "or less"
            )
        return batch

    # ---- moving tensors between host and simulated memory
    def _surface_view(self, memory: BatchedMemory, name: str, writable: bool) -> torch.Tensor:
        """[N, surfaces, H, W, channels per atom]: INT8, or float16 for an FP16 surface."""
        s = self.comp.tensors[name].surface
        assert s is not None
        fp16 = self.comp.tensors[name].precision == "fp16"
        per_atom = self.atom // 2 if fp16 else self.atom
        blocks = -(-s.channels // per_atom)
        shape = (blocks, s.height, s.width, self.atom)
        strides = (s.surf_stride, s.line_stride, self.atom, 1)
        view = memory.view(s.address, shape, strides, writable=writable)
        if view is None:
            raise DlakitError(f"tensor {name}: its surface is outside the activation memory")
        return view.view(torch.float16 if fp16 else torch.int8)

    def _read(self, memory: BatchedMemory, name: str) -> torch.Tensor:
        info = self.comp.tensors[name]
        s = info.surface
        assert s is not None
        view = self._surface_view(memory, name, writable=False)
        n, blocks, h, w, a = view.shape
        cube = view.permute(0, 1, 4, 2, 3).reshape(n, blocks * a, h, w)[:, : s.channels]
        if info.precision == "fp16":  # FP16 numbers are exact in FP32
            cube = cube.to(torch.float32)
        return cube.reshape((n, *info.shape[1:]))

    def _write(self, memory: BatchedMemory, name: str, value: torch.Tensor) -> None:
        s = self.comp.tensors[name].surface
        assert s is not None
        view = self._surface_view(memory, name, writable=True)
        n, blocks, h, w, a = view.shape
        # An FP16 surface takes the FP16 of each value (nearest even), an INT8 one the integer;
        # the lanes past the last channel are zero. Block by block straight into the surface:
        # a zero-padded copy of the whole cube first costs several times more (an image's
        # 3-channel input fills 3 lanes of 32).
        planar = value.reshape(n, s.channels, h, w)
        kernels = numba_kernels()
        if kernels is not None and planar.dtype == torch.int8 and view.device.type == "cpu":
            kernels.to_surface(planar.numpy(), view.numpy())
            return
        for block in range(blocks):
            lanes = min(a, s.channels - block * a)
            part = planar[:, block * a : block * a + lanes].permute(0, 2, 3, 1)
            view[:, block, :, :, :lanes].copy_(part)
            if lanes < a:
                view[:, block, :, :, lanes:].zero_()

    # ---- execution
    def _given(self, name: str, value: np.ndarray) -> torch.Tensor:
        """A host value supplied from outside: INT8 tensors arrive dequantized (value * scale)."""
        info = self.comp.tensors[name]
        t = torch.as_tensor(np.ascontiguousarray(value), device=self.device)
        if info.precision == "int8":
            return torch.round(t.to(torch.float64) / (info.scale or 1.0)).to(torch.int8)
        return t

    def run_batch(
        self,
        memory: BatchedMemory,
        feeds: dict[str, np.ndarray],
        stats: RunStats,
        keep: set[str],
        given: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Outputs of one pass over ``memory.batch`` images."""
        values: dict[str, torch.Tensor] = {
            k: torch.as_tensor(np.ascontiguousarray(v, dtype=np.float32), device=self.device)
            for k, v in feeds.items()
        }
        kept: dict[str, list[torch.Tensor]] = {}
        for index, seg in enumerate(self.comp.segments):
            t0 = time.perf_counter()
            if seg.kind == "dla":
                self._dla_segment(index, seg, memory, values, keep, kept)
                stats.operations += len(seg.ops) * memory.batch
                stats.dla_seconds += time.perf_counter() - t0
            else:
                if given is not None:
                    outs = {n: self._given(n, given[n]) for n in seg.outputs}
                else:
                    feeds_t = {n: self._value(memory, n, values) for n in seg.inputs}
                    outs = self.fallbacks[index].run(feeds_t)  # type: ignore[union-attr]
                for name, value in outs.items():
                    values[name] = value
                    if self.comp.tensors[name].surface is not None:
                        self._write(memory, name, value)
                    if name in keep:
                        kept.setdefault(name, []).append(value.cpu())
                stats.fallback_seconds += time.perf_counter() - t0
            drop(values, self._dead_after[index])
        for name, parts in kept.items():
            stats.kept.setdefault(name, []).append(torch.cat(parts).numpy())  # type: ignore[arg-type]
        result = {}
        for name in self.comp.outputs:
            value = self._value(memory, name, values)
            info = self.comp.tensors[name]
            if info.precision == "int8" or info.scale is not None:  # INT8, or FP16 of an INT17
                value = value.to(torch.float32) * np.float32(info.scale or 1.0)
            result[name] = value.cpu().numpy()
        return result

    def _value(self, memory: BatchedMemory, name: str, values: dict[str, torch.Tensor]):
        if name not in values:
            values[name] = self._read(memory, name)
        return values[name]

    def _dla_segment(self, index: int, seg: Segment, memory: BatchedMemory,
                     values: dict[str, torch.Tensor], keep: set[str],
                     kept: dict[str, list[torch.Tensor]]) -> None:  # fmt: skip
        for name in seg.inputs:
            if name in values and self.comp.tensors[name].surface is not None:
                self._write(memory, name, values[name])
        captured: set[str] = set()
        first = self.first_step[index]
        start = 0
        for i, op in enumerate(seg.ops):
            if i + 1 < len(seg.ops) and seg.ops[i + 1].layer == op.layer:
                continue
            # The layer's operations (fused where they can be), then its kept tensors: a later
            # operation may reuse their bytes.
            self.program.run(memory, first + start, first + i + 1)
            start = i + 1
            for name in keep.intersection(op.outputs) - captured:
                kept.setdefault(name, []).append(self._read(memory, name).cpu().clone())
                captured.add(name)
        for name in seg.outputs:
            values[name] = self._read(memory, name).clone()  # in DLA memory: the host copy is stale
            if name in keep and name not in captured:
                kept.setdefault(name, []).append(values[name].cpu())

    def fallback_outputs(self) -> set[str]:
        return {n for seg in self.comp.segments if seg.kind == "fallback" for n in seg.outputs}

    def run(
        self,
        feeds: dict[str, np.ndarray],
        keep: set[str] | None = None,
        fallback_values: dict[str, np.ndarray] | None = None,
        progress=None,
    ) -> tuple[dict[str, np.ndarray], RunStats]:
        """Outputs (float32, INT8 outputs dequantized) and the run's statistics, in batches.

        ``fallback_values`` (batch-first, INT8 tensors dequantized, e.g. the integer reference's
        kept tensors) replaces every fallback segment's outputs: the DLA segments then see exactly
        those inputs, which isolates them from host floating-point differences. ``progress`` is
        called with the number of images done after each batch.
        """
        missing = [n for n in self.comp.inputs if n not in feeds]
        if missing:
            raise DlakitError(f"no data for model input(s): {', '.join(missing)}")
        total = len(next(iter(feeds.values())))
        stats = RunStats(batch=min(self.batch, max(total, 1)))
        outs: dict[str, list[np.ndarray]] = {}
        memories: dict[int, BatchedMemory] = {}
        t0 = time.perf_counter()
        for start in range(0, total, self.batch):
            part = slice(start, min(start + self.batch, total))
            n = part.stop - part.start
            if n not in memories:
                memories[n] = self.memory.with_batch(n)
            given = (
                None
                if fallback_values is None
                else {k: v[part] for k, v in fallback_values.items()}
            )
            one = self.run_batch(memories[n], {k: v[part] for k, v in feeds.items()}, stats,
                                 keep or set(), given)  # fmt: skip
            for k, v in one.items():
                outs.setdefault(k, []).append(v)
            if progress is not None:
                progress(part.stop)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        stats.seconds = time.perf_counter() - t0
        stats.images = total
        stats.kept = {k: np.concatenate(v) for k, v in stats.kept.items()}  # type: ignore[arg-type]
        return {k: np.concatenate(v) for k, v in outs.items()}, stats
