"""Run a plan emitted by ``dlakit plan --emit``: its steps, in order, with onnxruntime.

    python run_plan.py plan.json input.npy [more.npy for more models] [-o outputs.npz]

What it assumes, for a Jetson user adapting it:

* every model input is one array of the plan's batch (``emit.models[i].inputs`` in order, one
  .npy per input of each model);
* steps run one after the other here, on the CPU; on the board each device runs its own
  steps in this order (a CUDA stream for ``gpu``, one per ``dla0``/``dla1``), waiting only for
  the rows a step reads: build the engines with ``trtexec.sh`` and replace ``_session`` with
  TensorRT execution contexts of ``<piece>.<device>.engine``;
* a step reads rows ``images`` of its inputs and writes the same rows of its outputs: that is
  the batch split and the gather.

This file needs only numpy and onnxruntime; dlakit's tests run it as emitted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(plan_path: Path, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Each model's outputs (full batch) from its inputs ``feeds[model]``."""
    plan_path = Path(plan_path)
    doc = json.loads(plan_path.read_text())
    emit = doc["emit"]
    pieces = {p["file"]: p for p in emit["pieces"]}
    stores = [dict(f) for f in feeds]
    sessions: dict[str, object] = {}
    for step in emit["steps"]:
        piece = pieces[step["piece"]]
        store = stores[step["model"]]
        first, last = step["images"]
        session = sessions.get(piece["file"])
        if session is None:
            session = sessions[piece["file"]] = _session(plan_path.parent / piece["file"])
        inputs = {t: store[t][first:last] for t in piece["inputs"]}
        results = session.run(piece["outputs"], inputs)
        for name, value in zip(piece["outputs"], results, strict=True):
            if name not in store:
                shape = (emit["models"][step["model"]]["batch"], *value.shape[1:])
                store[name] = np.zeros(shape, dtype=value.dtype)
            store[name][first:last] = value
    return [
        {name: store[name] for name in model["outputs"]}
        for store, model in zip(stores, emit["models"], strict=True)
    ]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = None
    if "-o" in argv:
        i = argv.index("-o")
        out, argv = argv[i + 1], argv[:i] + argv[i + 2 :]
    plan_path, arrays = Path(argv[0]), [np.load(a) for a in argv[1:]]
    models = json.loads(plan_path.read_text())["emit"]["models"]
    feeds, at = [], 0
    for model in models:
        feeds.append(
            dict(zip(model["inputs"], arrays[at : at + len(model["inputs"])], strict=True))
        )
        at += len(model["inputs"])
    outputs = run(plan_path, feeds)
    flat = {f"m{m}:{k}": v for m, outs in enumerate(outputs) for k, v in outs.items()}
    if out:
        np.savez(out, **flat)
    for name, value in flat.items():
        print(name, value.shape)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
