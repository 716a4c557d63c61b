"""Written loadables against the ``.dla`` path, byte for byte, per DLA segment.

The ``.dla`` path: the artifact written and read back, run by :class:`dlakit.run.runner.Runner`
on the simulator, keeping every tensor a DLA segment binds. The loadable path: each segment's
loadable serialized, read back by the reader and run by dlakit's loadable runner (runtime +
KMD firmware model on the same simulator) with the ``.dla`` path's values of that segment's
inputs in its bound buffers. Every output tensor's INT8 bytes (FP16: its 16-bit patterns) must
be equal. bench/loadable_zoo.py
runs it on the large zoo models and writes bench/results/loadable.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlakit.loadable.execute import run_bound
from dlakit.loadable.package import compile_loadables, feed_bytes, tensor_values
from dlakit.loadable.reader import read_loadable
from dlakit.nvdla.artifact import read_artifact, write_artifact
from dlakit.nvdla.compiler import Compiled
from dlakit.run.runner import Runner


@dataclass
class SegmentAgreement:
    segment: str
    operations: int  # firmware operations in the loadable
    tensors: int  # output tensors compared
    bytes_compared: int
    bytes_differing: int
    loadable_bytes: int
    seconds: float  # the loadable run


def compare_with_dla(
    comp: Compiled, x: np.ndarray, folder: Path, device: str = "cpu"
) -> list[SegmentAgreement]:
    """Run ``comp``'s ``.dla`` and its loadables on input ``x`` (one image) and count, per DLA
    segment, the output bytes that differ."""
    dla = read_artifact(write_artifact(comp, folder / f"{comp.model}.dla"))
    loadables = compile_loadables(comp)
    keep = {b.tensor for sl in loadables for b in [*sl.inputs, *sl.outputs]}
    _, stats = Runner(dla, device).run({comp.inputs[0]: x[:1]}, keep=keep)
    kept = {k: np.asarray(v)[0] for k, v in stats.kept.items()}
    for name, value in kept.items():
        fp16 = comp.tensors[name].precision == "fp16"
        assert fp16 or np.issubdtype(value.dtype, np.integer), f"{name} is not an INT8 tensor"
        if fp16:  # exact: the runner reads FP16 surfaces into FP32
            assert (value.astype(np.float16).astype(np.float32) == value).all(), name
    results = []
    for sl in loadables:
        path = folder / f"{sl.segment}.nvdla"
        path.write_bytes(sl.data)
        ld = read_loadable(path)
        t0 = time.perf_counter()
        run = run_bound(ld, comp.target.name, feed_bytes(sl, kept), device)
        seconds = time.perf_counter() - t0
        got = tensor_values(sl, run.outputs)
        compared = differing = 0
        for b in sl.outputs:
            if comp.tensors[b.tensor].precision == "fp16":
                want = kept[b.tensor].astype(np.float16).view(np.uint16)
                have = got[b.tensor].view(np.uint16)
            else:
                want, have = kept[b.tensor].astype(np.int8), got[b.tensor]
            want = want.reshape(have.shape)
            compared += want.size * want.itemsize
            differing += int((want != have).sum()) * want.itemsize
        results.append(
            SegmentAgreement(
                sl.segment,
                len(sl.operations),
                len(sl.outputs),
                compared,
                differing,
                len(sl.data),
                seconds,
            )
        )
    return results


DATA = {
    "mnist-cnn": "foolbox-mnist",
    "fmnist-cnn": "foolbox-fashion-mnist",
    "mobilenetv2": "foolbox-imagenet",
    "efficientnet-lite0": "foolbox-imagenet",
}


def zoo_compiled(name: str, target: str) -> tuple[Compiled, np.ndarray]:
    """A zoo model compiled as ``compile --format loadable`` does, with max scales from one
    input (a real image where the zoo names a data set, else normal noise); skips when the
    model or its data cannot be fetched."""
    import pytest

    from dlakit.data import load_inputs
    from dlakit.errors import DlakitError
    from dlakit.graph import load_model
    from dlakit.nvdla import compile_model
    from dlakit.zoo import get_entry, resolve_model

    try:
        loaded = load_model(resolve_model(name))
        shape = loaded.input_shapes[loaded.input_names[0]]
        if name in DATA:
            x = load_inputs(DATA[name], get_entry(name).preprocess, shape, 1)
        else:
            x = np.random.default_rng(0).normal(size=(1, *shape[1:])).astype(np.float32)
    except DlakitError as exc:
        pytest.skip(f"{name} or its data unavailable: {exc}")
    comp = compile_model(loaded, max_scales(loaded, x), target, via_firmware=True)
    return comp, x


def max_scales(loaded, x: np.ndarray) -> dict[str, float]:
    """Per-tensor max calibration with onnxruntime (every float tensor of the model)."""
    from dlakit.accuracy.compare import float_run

    names = [n for n in loaded.shapes if n not in loaded.initializers]
    values = float_run(loaded, x, extra=names)
    return {n: max(float(np.abs(v).max()), 1e-6) / 127.0 for n, v in values.items()}
