"""``dlakit zoo list`` and ``zoo data list``: the models and data sets, as tables and JSON.

Where the one-row-per-entry table does not fit the terminal (the sources and licences alone take
~80 columns), each list becomes two tables: what an entry is, then where it comes from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text

from dlakit.report.console import Output
from dlakit.report.tables import COMPACT, Column, fit_table, print_fitted

if TYPE_CHECKING:
    from dlakit.data.datasets import DatasetSpec
    from dlakit.zoo.registry import ZooEntry

ZOO_SCHEMA = "dlakit.zoo"
DATA_SCHEMA = "dlakit.zoo.data"
SCHEMA_VERSION = 1


def _shape(shape: Iterable[int]) -> str:
    return "x".join(map(str, shape))


def _cached(cached: bool) -> str:
    return "yes" if cached else "no"


def _origin(source: str, licence: str) -> Text:
    text = Text(source)
    text.append("\n" + licence, style="dim")
    return text


def render_models(entries: Iterable[ZooEntry], output: Output) -> None:
    items = list(entries)
    title = "dlakit model zoo"
    full = fit_table(
        [
            Column("name"),
            Column("task", fold=True, min_width=16),
            Column("source"),
            Column("input"),
            Column("preprocess"),
            Column("licence", fold=True, min_width=16),
            Column("cached"),
        ],
        [
            (
                e.name,
                e.task,
                e.source,
                _shape(e.input_shape),
                e.preprocess or "-",
                e.licence,
                _cached(e.is_cached),
            )
            for e in items
        ],
        output.console,
        title=title,
    )
    if full.fits:
        print_fitted(output, full, wide=False)
    else:
        _print_narrow(
            output,
            title,
            [Column("name"), Column("input"), Column("preprocess"), Column("cached")],
            [
                (e.name, _shape(e.input_shape), e.preprocess or "-", _cached(e.is_cached))
                for e in items
            ],
            [Column("task", fold=True, min_width=14)],
            [(e.task,) for e in items],
            [(e.name, _origin(e.source, e.licence)) for e in items],
        )
    if output.verbose:
        for e in items:
            verified = f" (verified: {e.verified})" if e.verified else ""
            output.line(f"{e.name}: {e.description}{verified}")


def render_data(specs: Iterable[DatasetSpec], sources: dict[str, str], output: Output) -> None:
    items = list(specs)
    title = "dlakit data sets"
    full = fit_table(
        [
            Column("name"),
            Column("description", fold=True, min_width=20),
            Column("splits"),
            Column("labels"),
            Column("source"),
            Column("licence", fold=True, min_width=16),
            Column("cached"),
        ],
        [
            (
                s.name,
                s.description,
                "/".join(s.splits),
                s.labels_text,
                sources[s.name],
                s.licence,
                _cached(s.is_cached),
            )
            for s in items
        ],
        output.console,
        title=title,
    )
    if full.fits:
        print_fitted(output, full, wide=False)
        return
    _print_narrow(
        output,
        title,
        [Column("name"), Column("splits"), Column("cached")],
        [(s.name, "/".join(s.splits), _cached(s.is_cached)) for s in items],
        [Column("labels", fold=True, min_width=10), Column("description", fold=True, min_width=20)],
        [(s.labels_text, s.description) for s in items],
        [(s.name, _origin(sources[s.name], s.licence)) for s in items],
    )


def _print_narrow(
    output: Output,
    title: str,
    fixed: list[Column],
    fixed_rows: list[tuple[str, ...]],
    folded: list[Column],
    folded_rows: list[tuple[str, ...]],
    origins: list[tuple[str, Text]],
) -> None:
    """What each entry is (short columns, then the folding ones), then its source and licence."""
    rows = [a + b for a, b in zip(fixed_rows, folded_rows, strict=True)]
    what = fit_table([*fixed, *folded], rows, output.console, title=title, **COMPACT)
    print_fitted(output, what, wide=False)
    where = fit_table(
        [Column("name"), Column("source / licence", fold=True, min_width=20)],
        origins,
        output.console,
        title="sources and licences",
        **COMPACT,
    )
    print_fitted(output, where, wide=False)


def models_json(entries: Iterable[ZooEntry]) -> dict[str, Any]:
    return {
        "schema": ZOO_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "models": [
            {
                "name": e.name,
                "kind": e.kind,
                "task": e.task,
                "source": e.source,
                "input_shape": list(e.input_shape),
                "preprocess": e.preprocess,
                "licence": e.licence,
                "description": e.description,
                "cached": e.is_cached,
            }
            for e in entries
        ],
    }


def data_json(specs: Iterable[DatasetSpec], sources: dict[str, str]) -> dict[str, Any]:
    return {
        "schema": DATA_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "datasets": [
            {
                "name": s.name,
                "description": s.description,
                "splits": list(s.splits),
                "labels": s.labels_text,
                "source": sources[s.name],
                "licence": s.licence,
                "cached": s.is_cached,
            }
            for s in specs
        ],
    }
