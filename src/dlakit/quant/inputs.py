"""Calibration inputs of a one-input model, as an :class:`~dlakit.quant.observe.InputSource`.

The data come from :func:`dlakit.data.load_labelled` (a data set name, a folder of images or an
``.npz``, with a preprocess preset or spec); this module only groups them into model-sized
batches and keeps each input's name for error messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.quant.observe import Sample


@dataclass
class ArrayInputs:
    """Samples from one (N, ...) float32 array, fed ``input_shape[0]`` at a time to the input."""

    description: str
    input_name: str
    input_shape: tuple[int, ...]
    array: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.array) // self.input_shape[0]

    def __iter__(self) -> Iterator[Sample]:
        batch = self.input_shape[0]
        for start in range(0, len(self) * batch, batch):
            value = np.ascontiguousarray(self.array[start : start + batch], dtype=np.float32)
            yield self.names[start], {self.input_name: value.reshape(self.input_shape)}


def calibration_inputs(
    source: str | Path, preprocess: str | None, loaded: LoadedModel, limit: int | None = None
) -> ArrayInputs:
    """At most ``limit`` model runs of inputs from ``source`` for one-input model ``loaded``."""
    from dlakit.data import datasets, load_labelled

    if len(loaded.input_names) != 1:
        raise DlakitError(
            f"{loaded.path} has {len(loaded.input_names)} inputs "
            f"({', '.join(loaded.input_names)}); calibration takes one-input models"
        )
    name = loaded.input_names[0]
    shape = tuple(loaded.input_shapes[name])
    wanted = None if limit is None else limit * shape[0]
    # A named data set is loaded whole and sampled evenly (some, like opencv-digits, are sorted
    # by class); a folder or .npz is the user's own pick, so only its first inputs are read.
    named = str(source).partition(":")[0] in datasets()
    data = load_labelled(source, preprocess, shape, None if named else wanted)
    images, names = np.asarray(data.images), list(data.names)
    if wanted is not None and wanted < len(images):
        pick = np.linspace(0, len(images) - 1, wanted).round().astype(int)
        images, names = images[pick], [names[i] for i in pick]
    if len(images) < shape[0]:
        raise DlakitError(
            f"{source} holds {len(images)} inputs, fewer than one batch of {shape[0]}"
        )
    used = len(images) - len(images) % shape[0]
    description = f"{used} inputs from {source}" + (f" ({preprocess})" if preprocess else "")
    return ArrayInputs(description, name, shape, images, names)
