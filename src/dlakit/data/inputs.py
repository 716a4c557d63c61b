"""Model inputs from a data set name, a folder of images or an .npz file.

``load_inputs(source, preprocess, input_shape, limit=None) -> np.ndarray`` returns float32 inputs
stacked on the batch axis (N × C × H × W for ``layout=nchw``), ready for calibration or a run;
``load_labelled`` returns the same with labels and names, for accuracy.

``source`` may be:

* a data set name of ``dlakit.data.datasets()``, optionally with a split: ``fashion-mnist:train``;
* a folder: every image file in it (sorted by name; a name ending ``_<int>`` gives a label);
* an ``.npz`` file with ``images`` (or ``x``, or its only array) and optionally ``labels`` (or
  ``y``). uint8 images are preprocessed; float arrays already shaped like the model input are
  taken as they are (already preprocessed).

``preprocess`` is a :class:`Preprocess`, its text form or a preset name; it is checked against
``input_shape`` (the model input, batch first) before any image is read.
"""

from pathlib import Path

import numpy as np

from dlakit.data.datasets import Dataset, datasets, load_dataset, read_image, stack_if_uniform
from dlakit.data.preprocess import Preprocess, parse_preprocess
from dlakit.errors import DlakitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def load_inputs(
    source: str | Path,
    preprocess: Preprocess | str | None,
    input_shape: tuple[int, ...],
    limit: int | None = None,
) -> np.ndarray:
    """Float32 model inputs (batch first) from ``source``; see the module docstring."""
    return load_labelled(source, preprocess, input_shape, limit).images


def load_labelled(
    source: str | Path,
    preprocess: Preprocess | str | None,
    input_shape: tuple[int, ...],
    limit: int | None = None,
) -> Dataset:
    """Like :func:`load_inputs`, with the labels (None when unlabelled) and per-input names."""
    prep = parse_preprocess(preprocess) if isinstance(preprocess, str) else preprocess
    if prep is not None:
        prep.check(tuple(input_shape))
    raw = _raw(source, limit)
    if len(raw.names) == 0:
        raise DlakitError(f"{source}: no inputs to load")
    if isinstance(raw.images, np.ndarray) and raw.images.dtype != np.uint8:
        return Dataset(_as_given(raw.images, source, input_shape), raw.labels, raw.names)
    if prep is None:
        raise DlakitError(f"{source}: holds images; a preprocess (preset or key=value) is needed")
    batch = np.stack(
        [
            _fit(prep.apply(image), prep, input_shape, name)
            for image, name in zip(raw.images, raw.names, strict=True)
        ]
    )
    return Dataset(batch, raw.labels, raw.names)


def _fit(x: np.ndarray, prep: Preprocess, input_shape: tuple[int, ...], name: str) -> np.ndarray:
    if x.shape != tuple(input_shape[1:]):
        raise DlakitError(
            f"{name}: preprocess '{prep}' gives {'x'.join(map(str, x.shape))} but the model "
            f"input needs {'x'.join(map(str, input_shape[1:]))} (add crop= or resize=HxW)"
        )
    return x


def _raw(source: str | Path, limit: int | None) -> Dataset:
    text = str(source)
    name, _, split = text.partition(":")
    if name in datasets():
        return load_dataset(name, split or None, limit)
    path = Path(source)
    if path.is_dir():
        return _folder(path, limit)
    if path.is_file() and path.suffix == ".npz":
        return _npz(path, limit)
    if path.is_file():
        raise DlakitError(f"{path}: input data must be a folder of images or an .npz file")
    raise DlakitError(
        f"{source!r} is neither a data set (known: {', '.join(datasets())}) nor a folder or .npz"
    )


def _folder(folder: Path, limit: int | None) -> Dataset:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DlakitError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    paths = paths[:limit]
    images = [read_image(p) for p in paths]
    labels = [_trailing_int(p.stem) for p in paths]
    has_labels = all(label is not None for label in labels)
    return Dataset(
        stack_if_uniform(images),
        np.array(labels, np.int64) if has_labels else None,
        [p.name for p in paths],
    )


def _trailing_int(stem: str) -> int | None:
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if "_" in stem and tail.isdigit() else None


def _npz(path: Path, limit: int | None) -> Dataset:
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DlakitError(f"{path}: not a readable .npz file ({exc})") from None
    key = next((k for k in ("images", "x", "inputs", "input") if k in arrays), None)
    if key is None:
        candidates = [k for k in arrays if k not in ("labels", "y")]
        if len(candidates) != 1:
            raise DlakitError(
                f"{path}: name the input array 'images' (arrays: {', '.join(arrays)})"
            )
        key = candidates[0]
    images = arrays[key][:limit]
    if len(images) == 0:
        raise DlakitError(f"{path}: array {key!r} is empty")
    labels = next((arrays[k][:limit] for k in ("labels", "y") if k in arrays), None)
    if labels is not None and len(labels) != len(images):
        raise DlakitError(f"{path}: {len(labels)} labels for {len(images)} inputs")
    names = [f"{path.name}[{i}]" for i in range(len(images))]
    return Dataset(images, None if labels is None else labels.astype(np.int64), names)


def _as_given(images: np.ndarray, source: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    if images.shape[1:] != tuple(input_shape[1:]):
        raise DlakitError(
            f"{source}: float inputs of shape {'x'.join(map(str, images.shape[1:]))} do not match "
            f"the model input {'x'.join(map(str, input_shape[1:]))} (store uint8 images to "
            "have them preprocessed)"
        )
    return images.astype(np.float32)
