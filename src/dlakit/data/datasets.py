"""Real labelled image data sets from pinned PyPI wheels and Debian packages.

``load_dataset(name, split=None, limit=None) -> Dataset`` is the whole API: ``Dataset`` unpacks as
``images, labels, names``. ``images`` is one uint8 array (N×H×W grey or N×H×W×3 RGB) when all
images share a size, else a list of such arrays; ``labels`` is an int64 array or None for
unlabelled sets (photos for calibration). The sets are described in ``datasets.toml``; the first
load downloads and extracts the package into the cache (hash-verified, see dlakit.zoo.sources).
"""

import fnmatch
import gzip
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from dlakit.errors import DlakitError
from dlakit.zoo import sources


class Dataset(NamedTuple):
    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | None
    names: list[str]


@dataclass(frozen=True)
class DatasetSpec:
    """One entry of ``datasets.toml``."""

    name: str
    source: str
    prefix: str
    format: str
    description: str
    licence: str
    classes: tuple[str, ...] = ()
    unlabelled: bool = False
    options: dict = field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.options.get("splits", {"all": None}))

    @property
    def labels_text(self) -> str:
        """What the labels are, for listings."""
        if self.unlabelled:
            return "none"
        return f"{len(self.classes)} classes" if self.classes else self.options["labels"]

    @property
    def is_cached(self) -> bool:
        return sources.is_extracted(self.source, self.prefix)


@cache
def datasets() -> dict[str, DatasetSpec]:
    """All known data sets by name."""
    text = resources.files("dlakit.data").joinpath("datasets.toml").read_text()
    out = {}
    for name, fields in tomllib.loads(text)["datasets"].items():
        fields = dict(fields)
        common = {
            k: fields.pop(k) for k in ("source", "prefix", "format", "description", "licence")
        }
        classes = tuple(fields.pop("classes", ()))
        unlabelled = fields.pop("unlabelled", False)
        out[name] = DatasetSpec(
            name, **common, classes=classes, unlabelled=unlabelled, options=fields
        )
    return out


def get_dataset(name: str) -> DatasetSpec:
    known = datasets()
    if name not in known:
        raise DlakitError(f"no data set named {name!r} (known: {', '.join(known)})")
    return known[name]


def fetch_dataset(name: str) -> Path:
    """Download and extract data set ``name`` if needed; return the folder holding its files."""
    spec = get_dataset(name)
    root = sources.extract(spec.source, spec.prefix)
    return root / spec.prefix if spec.prefix.endswith("/") else root


def load_dataset(name: str, split: str | None = None, limit: int | None = None) -> Dataset:
    """Images, labels (or None) and per-image names of data set ``name``.

    ``split`` is "train" or "test" for fashion-mnist (default "test") and ignored elsewhere;
    ``limit`` keeps the first ``limit`` images.
    """
    spec = get_dataset(name)
    splits = spec.splits
    split = split or ("test" if "test" in splits else splits[0])
    if split not in splits:
        raise DlakitError(f"data set {name!r} has no split {split!r} (it has: {', '.join(splits)})")
    folder = fetch_dataset(name)
    loader = _LOADERS[spec.format]
    data = loader(spec, folder, split)
    if limit is not None:
        data = Dataset(
            data.images[:limit],
            None if data.labels is None else data.labels[:limit],
            data.names[:limit],
        )
    return data


def _load_idx(spec: DatasetSpec, folder: Path, split: str) -> Dataset:
    images_file, labels_file = spec.options["splits"][split]
    images = _read_idx(folder / images_file)
    labels = _read_idx(folder / labels_file).astype(np.int64)
    names = [f"{spec.name}-{split}-{i:05d}" for i in range(len(images))]
    return Dataset(images, labels, names)


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (big-endian header: magic with the rank in its last byte, then the dims)."""
    data = gzip.decompress(path.read_bytes())
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(dims)


def _load_grid(spec: DatasetSpec, folder: Path, split: str) -> Dataset:
    opts = spec.options
    sheet = np.asarray(Image.open(folder / opts["file"]).convert("L"))
    cell = opts["cell"]
    rows, cols = sheet.shape[0] // cell, sheet.shape[1] // cell
    tiles = sheet[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell).swapaxes(1, 2)
    tiles = tiles.reshape(rows * cols, cell, cell)
    pad = opts.get("pad", 0)
    images = np.pad(tiles, ((0, 0), (pad, pad), (pad, pad))) if pad else tiles
    labels = np.repeat(np.arange(rows) // opts["rows_per_class"], cols).astype(np.int64)
    names = [f"{opts['file']}[{r},{c}]" for r in range(rows) for c in range(cols)]
    return Dataset(images, labels, names)


def _load_files(spec: DatasetSpec, folder: Path, split: str) -> Dataset:
    opts = spec.options
    exclude = set(opts.get("exclude", ()))
    found: set[Path] = set()
    for pattern in opts["glob"]:  # a pattern with "/" names files in subfolders
        if "/" in pattern:
            found.update(p for p in folder.glob(pattern) if p.is_file())
        else:
            found.update(p for p in folder.iterdir() if fnmatch.fnmatch(p.name, pattern))
    paths = sorted(p for p in found if p.name not in exclude)
    images = [read_image(p) for p in paths]
    labels = None if spec.unlabelled else np.array([_label_of(p) for p in paths], np.int64)
    names = [str(p.relative_to(folder)) for p in paths]
    return Dataset(stack_if_uniform(images), labels, names)


def _load_union(spec: DatasetSpec, folder: Path, split: str) -> Dataset:
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    names: list[str] = []
    for part in spec.options["parts"]:
        data = load_dataset(part)
        images += list(data.images)
        names += [f"{part}/{n}" for n in data.names]
        if data.labels is not None:
            labels.append(data.labels)
    whole = np.concatenate(labels) if labels and sum(map(len, labels)) == len(names) else None
    return Dataset(stack_if_uniform(images), whole, names)


def _label_of(path: Path) -> int:
    try:
        return int(path.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise DlakitError(
            f"{path.name}: no label in the file name (expected name_<label>)"
        ) from None


def _load_csv(spec: DatasetSpec, folder: Path, split: str) -> Dataset:
    width = spec.options["width"]
    rows = np.loadtxt(folder / spec.prefix, delimiter=",", dtype=np.int64)
    images = rows[:, : width * width].astype(np.uint8).reshape(-1, width, width)
    names = [f"{spec.name}-{i:05d}" for i in range(len(rows))]
    return Dataset(images, rows[:, width * width], names)


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8: H×W for grey files, H×W×3 RGB otherwise (alpha dropped)."""
    try:
        with Image.open(path) as img:
            img.load()
            grey = img.mode in ("L", "1", "I;16", "I") or (
                img.mode == "P" and _palette_is_grey(img)
            )
            return np.asarray(img.convert("L" if grey else "RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DlakitError(f"{path}: not a readable image ({exc})") from None


def _palette_is_grey(img: Image.Image) -> bool:
    rgb = np.asarray(img.convert("RGB"))
    return bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))


def stack_if_uniform(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """One array when all images share a shape, else the list as is."""
    if images and all(im.shape == images[0].shape for im in images):
        return np.stack(images)
    return images


_LOADERS = {
    "idx": _load_idx,
    "grid": _load_grid,
    "files": _load_files,
    "csv": _load_csv,
    "union": _load_union,
}
