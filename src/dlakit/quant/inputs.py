"""Calibration inputs for a one-input model, as an :class:`~dlakit.quant.observe.InputSource`.

Interim loader until ``dlakit.data`` lands: a ``.npz`` of already-preprocessed arrays (one array
of N samples, each the model's input shape without, or with, its batch dimension), or a folder of
images resized to the input and scaled by ``mean=R/G/B,std=R/G/B`` (values in 0..1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlakit.errors import DlakitError
from dlakit.graph.load import LoadedModel
from dlakit.quant.observe import Sample

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


@dataclass
class ArrayInputs:
    """Samples from one (N, ...) array, fed ``batch`` at a time to input ``input_name``."""

    description: str
    input_name: str
    input_shape: tuple[int, ...]
    array: np.ndarray
    labels: list[str]

    def __len__(self) -> int:
        return len(self.array) // self.input_shape[0]

    def __iter__(self) -> Iterator[Sample]:
        batch = self.input_shape[0]
        for start in range(0, len(self) * batch, batch):
            value = np.ascontiguousarray(self.array[start : start + batch], dtype=np.float32)
            yield self.labels[start], {self.input_name: value.reshape(self.input_shape)}


@dataclass
class ImageFolderInputs:
    """Images of a folder, decoded and preprocessed lazily on every pass."""

    description: str
    input_name: str
    input_shape: tuple[int, ...]
    files: list[Path]
    mean: np.ndarray
    std: np.ndarray

    def __len__(self) -> int:
        return len(self.files) // self.input_shape[0]

    def __iter__(self) -> Iterator[Sample]:
        batch = self.input_shape[0]
        for start in range(0, len(self) * batch, batch):
            chunk = self.files[start : start + batch]
            value = np.stack([self._load(f) for f in chunk]).reshape(self.input_shape)
            yield str(chunk[0]), {self.input_name: value}

    def _load(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        channels, height, width = self.input_shape[1:]
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB").resize((width, height))
                pixels = np.asarray(image, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise DlakitError(f"cannot read calibration image {path}: {exc}") from None
        pixels = pixels.reshape(height, width, channels)
        return ((pixels - self.mean) / self.std).transpose(2, 0, 1)


def parse_normalisation(spec: str | None, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``mean=0.485/0.456/0.406,std=0.229/0.224/0.225`` (either part optional) -> (mean, std)."""
    values = {"mean": [0.0] * channels, "std": [1.0] * channels}
    for part in filter(None, (spec or "").split(",")):
        key, _, text = part.partition("=")
        if key.strip() not in values:
            raise DlakitError(f"--preprocess {spec!r}: unknown key {key!r} (use mean=..., std=...)")
        try:
            numbers = [float(v) for v in text.split("/")]
        except ValueError:
            raise DlakitError(
                f"--preprocess {spec!r}: {key} needs numbers like 0.5/0.5/0.5"
            ) from None
        if len(numbers) not in (1, channels):
            raise DlakitError(
                f"--preprocess {spec!r}: {key} has {len(numbers)} values, the model input has "
                f"{channels} channels"
            )
        values[key.strip()] = numbers * (channels // len(numbers))
    std = np.asarray(values["std"], dtype=np.float32)
    if np.any(std == 0):
        raise DlakitError(f"--preprocess {spec!r}: std must not be 0")
    return np.asarray(values["mean"], dtype=np.float32), std


def load_inputs(
    source: str | Path, preprocess: str | None, input_shape: tuple[int, ...], input_name: str
) -> ArrayInputs | ImageFolderInputs:
    """Calibration inputs from an ``.npz`` file or an image folder (see the module docstring)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DlakitError(
                f"calibration folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        if len(input_shape) != 4:
            raise DlakitError(
                f"image folders need a model input of rank 4 (NCHW); '{input_name}' is "
                f"{'x'.join(map(str, input_shape))}"
            )
        mean, std = parse_normalisation(preprocess, input_shape[1])
        return ImageFolderInputs(
            f"{len(files)} images in {path}", input_name, input_shape, files, mean, std
        )
    if path.suffix == ".npz" and path.is_file():
        return _npz_inputs(path, input_shape, input_name)
    if not path.exists():
        raise DlakitError(f"calibration data not found: {path}")
    raise DlakitError(f"calibration data {path} is neither a folder of images nor a .npz file")


def _npz_inputs(path: Path, input_shape: tuple[int, ...], input_name: str) -> ArrayInputs:
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise DlakitError(f"cannot read {path} as .npz: {exc}") from None
    if input_name in arrays:
        array = arrays[input_name]
    elif len(arrays) == 1:
        array = next(iter(arrays.values()))
    else:
        raise DlakitError(
            f"{path} holds arrays {', '.join(arrays)}; name one '{input_name}' (the model input)"
        )
    sample_shape = tuple(input_shape[1:])
    if tuple(array.shape[1:]) == tuple(input_shape):
        array = array.reshape(-1, *sample_shape)
    if tuple(array.shape[1:]) != sample_shape:
        raise DlakitError(
            f"{path}: arrays of shape {'x'.join(map(str, array.shape))} do not fit model input "
            f"'{input_name}' ({'x'.join(map(str, input_shape))}); expected N x "
            f"{'x'.join(map(str, sample_shape))}"
        )
    if len(array) < input_shape[0]:
        raise DlakitError(f"{path} holds {len(array)} samples, fewer than one batch")
    labels = [f"{path}[{i}]" for i in range(len(array))]
    return ArrayInputs(
        f"{len(array)} samples in {path}", input_name, tuple(input_shape), array, labels
    )


def calibration_inputs(
    source: str | Path, preprocess: str | None, loaded: LoadedModel, limit: int | None = None
) -> ArrayInputs | ImageFolderInputs:
    """The calibration inputs of a one-input model, at most ``limit`` of them."""
    if len(loaded.input_names) != 1:
        raise DlakitError(
            f"{loaded.path} has {len(loaded.input_names)} inputs "
            f"({', '.join(loaded.input_names)}); calibration takes one-input models"
        )
    name = loaded.input_names[0]
    inputs = load_inputs(source, preprocess, loaded.input_shapes[name], name)
    if limit is not None:
        if isinstance(inputs, ArrayInputs):
            inputs.array = inputs.array[: limit * inputs.input_shape[0]]
        else:
            inputs.files = inputs.files[: limit * inputs.input_shape[0]]
    return inputs
