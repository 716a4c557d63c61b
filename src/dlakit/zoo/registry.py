"""The zoo's entries: pretrained models from ``models.toml`` plus random-weight architectures.

Architectures come from ``dlakit.zoo.arch.ARCHS`` (another stage's module). They are read lazily
and left out when that module is not importable, so the pretrained zoo never depends on it.
"""

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from dlakit.errors import DlakitError
from dlakit.paths import cache_dir
from dlakit.zoo import sources
from dlakit.zoo.arch import ARCHS
from dlakit.zoo.arch.export import cache_path

EXPORT_VERSION = 1  # bump when dlakit.zoo.export changes what it writes


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model.

    ``input_shape`` is the default NCHW input (what ``dlakit check NAME`` pins), ``preprocess``
    the name of a preset in ``dlakit/data/presets.toml`` (None for random-weight architectures).
    """

    name: str
    kind: str  # "torch" | "onnx" | "shipped" | "arch"
    task: str
    input_shape: tuple[int, ...]
    preprocess: str | None
    licence: str
    description: str
    verified: str = ""
    wheel: str | None = None
    member: str | None = None
    arch: str | None = None
    arch_wheel: str | None = None
    arch_factory: str | None = None

    @property
    def source(self) -> str:
        """Where the weights come from, e.g. ``ccexam==1.0.0``."""
        if self.wheel:
            return sources.pin(self.wheel).spec
        if self.kind == "shipped":
            return "dlakit (shipped weights)"
        return "dlakit.zoo.arch (random weights)"

    @property
    def onnx_path(self) -> Path:
        """Where the ONNX file at the default input shape lives in the cache."""
        return self.onnx_path_at(self.input_shape)

    def onnx_path_at(self, input_shape: tuple[int, ...]) -> Path:
        """Where the ONNX file at ``input_shape`` lives in the cache.

        The name carries the input shape and the export version, so a changed exporter or shape
        never serves a stale file. Architectures live in dlakit.zoo.arch's own cache.
        """
        if self.kind == "arch":
            return cache_path(self.name, tuple(input_shape))
        shape = "x".join(map(str, input_shape))
        return cache_dir() / "models" / f"{self.name}-{shape}-v{EXPORT_VERSION}.onnx"

    @property
    def is_cached(self) -> bool:
        return self.onnx_path.is_file()


@cache
def _pretrained() -> dict[str, ZooEntry]:
    table = tomllib.loads(resources.files("dlakit.zoo").joinpath("models.toml").read_text())
    out = {}
    for name, fields in table["models"].items():
        fields = dict(fields)
        shape = tuple(fields.pop("input"))
        out[name] = ZooEntry(name=name, input_shape=shape, **fields)
    return out


def _architectures() -> dict[str, ZooEntry]:
    return {
        name: ZooEntry(
            name=name,
            kind="arch",
            task="shape-only (random weights)",
            input_shape=tuple(spec.default_input),
            preprocess=None,
            licence="n/a (random weights)",
            description=spec.description,
        )
        for name, spec in ARCHS.items()
        if name not in _pretrained()
    }


def entries() -> dict[str, ZooEntry]:
    """All zoo entries by name: pretrained first, then random-weight architectures."""
    return {**_pretrained(), **_architectures()}


def get_entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; DlakitError listing the known names if there is none."""
    known = entries()
    if name not in known:
        raise DlakitError(f"no zoo model named {name!r} (known: {', '.join(known)})")
    return known[name]
