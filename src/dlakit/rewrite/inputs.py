"""Verification inputs from real data: a data set, folder or .npz through ``dlakit.data``.

Real images exercise the ranges a model sees in use (a text detector shown text, a classifier shown
photos), where random normal inputs may leave whole branches saturated. Without a source, a zoo
model's preprocess preset is used on a small labelled photo set that the zoo already pins:
``foolbox-imagenet`` for colour models, ``foolbox-mnist`` for grey ones.
"""

from __future__ import annotations

from pathlib import Path

from dlakit.errors import DlakitError
from dlakit.graph import LoadedModel
from dlakit.rewrite.verify import VerifyInputs

DEFAULT_IMAGES = 2


def default_source(preprocess: str) -> str:
    """The built-in photo set matching a preset's colour order."""
    from dlakit.data import parse_preprocess

    return "foolbox-mnist" if parse_preprocess(preprocess).order == "gray" else "foolbox-imagenet"


def real_inputs(
    loaded: LoadedModel,
    source: str | Path | None,
    preprocess: str | None,
    limit: int | None = DEFAULT_IMAGES,
) -> VerifyInputs:
    """``limit`` real inputs (None: all of ``source``) for a one-input model, in batches."""
    from dlakit.data import load_inputs

    if len(loaded.input_shapes) != 1:
        raise DlakitError("real verification data needs a one-input model; use random inputs")
    name, shape = next(iter(loaded.input_shapes.items()))
    if source is None:
        if preprocess is None:
            raise DlakitError("no data source and no preprocess preset to pick one")
        source = default_source(preprocess)
    batch = shape[0]
    images = load_inputs(source, preprocess, shape, limit=None if limit is None else limit * batch)
    if len(images) < batch:
        raise DlakitError(f"{source}: {len(images)} inputs, fewer than the batch size {batch}")
    feeds = [
        {name: images[i : i + batch].astype("float32")}
        for i in range(0, len(images) - batch + 1, batch)
    ]
    how = f", preprocess {preprocess}" if preprocess else ""
    return VerifyInputs(feeds, f"{source} ({len(feeds) * batch} inputs{how})")
