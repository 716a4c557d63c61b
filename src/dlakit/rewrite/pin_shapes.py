"""Pinned input shapes, reported as rewrites.

The DLA needs static shapes. ``dlakit.graph.load_model`` already fixed every input (from the model
or
``--input-shape``) and folded the shape arithmetic that depended on it; this module only says so
in the rewrite list: ``input x: [?,3,224,224] -> 1x3x224x224``.
"""

from __future__ import annotations

import onnx

from dlakit.graph import LoadedModel
from dlakit.rewrite.base import Rewrite


def declared_dims(path) -> dict[str, list[str]]:
    """Each graph input's dims as the file declares them ('?' or the symbolic name when dynamic)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # the loaded model came from elsewhere; nothing to compare with
        return {}
    dims: dict[str, list[str]] = {}
    for vi in model.graph.input:
        shape = vi.type.tensor_type.shape
        dims[vi.name] = [
            str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else d.dim_param or "?"
            for d in shape.dim
        ]
    return dims


def pinned_inputs(loaded: LoadedModel) -> list[Rewrite]:
    rewrites = []
    declared = declared_dims(loaded.path)
    for name, shape in loaded.input_shapes.items():
        dims = declared.get(name)
        if dims is None or dims == [str(d) for d in shape]:
            continue
        rewrites.append(
            Rewrite(
                "pin-input-shapes",
                (f"input {name} [{','.join(dims)}]",),
                (f"input {name} {'x'.join(map(str, shape))}",),
                "dynamic input pinned; shape arithmetic on it folded to constants",
            )
        )
    return rewrites
