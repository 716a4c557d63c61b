"""Tables that fit the terminal: short cells stay on one line, names fold, nothing is cut.

A :class:`Column` says how it gives way when the console is narrow: a ``fold`` column (names,
reasons) narrows down to ``min_width`` and breaks its text over lines; a column with a ``drop``
rank leaves the table, highest rank first, when even that does not fit; every other column keeps
its content's width. ``wide=True`` (the ``--wide`` flag) keeps every column and every line whole,
however wide that makes the table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from dlakit.report.console import Output

Cell = str | Text

# Where a long name may break: after a path, scope, word or fused-op separator, or between the
# words of a CamelCase name (GlobalAveragePool).
_BREAK_AFTER = re.compile(r"(?<=[/._:+\-])|(?<=[a-z])(?=[A-Z])")
# Borders for narrow terminals: a rule under the header and one space between columns, where the
# default box spends three columns of rules and padding on every cell boundary.
COMPACT = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "collapse_padding": True}


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    fold: bool = False  # narrows to min_width and folds its text
    min_width: int = 12
    drop: int = 0  # > 0: leaves the table when the console is too narrow (highest rank first)
    style: str | None = None


def fold_name(name: str, width: int) -> str:
    """``name`` over lines of at most ``width`` cells, broken at separators (``/ . _ : + -``) or
    CamelCase words where it can, anywhere where it must."""
    if width <= 0 or cell_len(name) <= width:
        return name
    lines: list[str] = []
    line = ""
    for piece in _BREAK_AFTER.split(name):
        while cell_len(piece) > width:  # a piece longer than a line: hard fold
            room = width - cell_len(line)
            if room <= 0:
                lines.append(line)
                line, room = "", width
            line += piece[:room]
            piece = piece[room:]
            lines.append(line)
            line = ""
        if cell_len(line) + cell_len(piece) > width and line:
            lines.append(line)
            line = ""
        line += piece
    if line:
        lines.append(line)
    return "\n".join(lines)


def _cell_width(cell: Cell) -> int:
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return max((cell_len(line) for line in text.split("\n")), default=0)


def _content_width(index: int, column: Column, rows: Sequence[Sequence[Cell]]) -> int:
    return max([cell_len(column.header)] + [_cell_width(row[index]) for row in rows])


def _overhead(console: Console, count: int, **table_args: Any) -> int:
    """Borders and padding of a table with ``count`` columns."""
    probe = Table(**table_args)
    for _ in range(count):
        probe.add_column(width=1)
    probe.add_row(*[""] * count)
    return Measurement.get(console, console.options, probe).maximum - count


@dataclass
class Fitted:
    table: Table
    width: int  # the width the table needs
    dropped: list[str]  # headers left out to fit the console
    fits: bool  # whether it fits the console without squeezing a column below its minimum


def fit_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    console: Console,
    wide: bool = False,
    end_sections: Sequence[bool] = (),
    **table_args: Any,
) -> Fitted:
    """A table of ``rows`` laid out for ``console`` (see the module docstring).

    ``end_sections[i]`` draws a rule under row ``i`` (to keep multi-line rows apart).
    """
    natural = [_content_width(i, c, rows) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    widths = dict(enumerate(natural))
    fits = True
    if not wide:
        while True:
            fixed = sum(natural[i] for i in shown if not columns[i].fold)
            room = console.width - fixed - _overhead(console, len(shown), **table_args)
            folds = [i for i in shown if columns[i].fold]
            need = sum(min(columns[i].min_width, natural[i]) for i in folds)
            ranks = [columns[i].drop for i in shown if columns[i].drop]
            fits = room >= need
            if fits or not ranks:
                break
            worst = max(ranks)
            shown = [i for i in shown if columns[i].drop != worst]
        widths.update(
            _share(room, {i: (min(columns[i].min_width, natural[i]), natural[i]) for i in folds})
        )
    table = Table(**table_args)
    for i in shown:
        c = columns[i]
        table.add_column(
            c.header,
            justify=c.justify,  # type: ignore[arg-type]
            style=c.style,
            width=widths[i] if c.fold else None,
            no_wrap=not c.fold,
            overflow="fold",
        )
    for index, row in enumerate(rows):
        table.add_row(
            *[_folded(row[i], columns[i], widths[i]) for i in shown],
            end_section=index < len(end_sections) and end_sections[index],
        )
    width = sum(widths[i] for i in shown) + _overhead(console, len(shown), **table_args)
    dropped = [columns[i].header for i in range(len(columns)) if i not in shown]
    return Fitted(table, width, dropped, wide or (fits and width <= console.width))


def fit_compact_if_narrow(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    console: Console,
    wide: bool = False,
    **table_args: Any,
) -> Fitted:
    """The table with its usual borders where every column fits; else compact borders (and,
    if even those leave too little room, without the columns that may drop)."""
    if not wide:
        keep_all = [replace(c, drop=0) for c in columns]
        fitted = fit_table(keep_all, rows, console, **table_args)
        if fitted.fits:
            return fitted
        return fit_table(columns, rows, console, **{**table_args, **COMPACT})
    return fit_table(columns, rows, console, wide=True, **table_args)


def _share(room: int, bounds: dict[int, tuple[int, int]]) -> dict[int, int]:
    """Split ``room`` among fold columns: each its minimum, then the rest up to its content."""
    widths = {i: low for i, (low, _) in bounds.items()}
    spare = room - sum(widths.values())
    while spare > 0:
        growing = [i for i, (_, high) in bounds.items() if widths[i] < high]
        if not growing:
            break
        step = max(1, spare // len(growing))
        for i in growing:
            grow = min(step, bounds[i][1] - widths[i], spare)
            widths[i] += grow
            spare -= grow
            if spare <= 0:
                break
    return widths


def _folded(cell: Cell, column: Column, width: int) -> Cell:
    """Names (one word) fold at their separators; text with spaces wraps by itself."""
    if column.fold and isinstance(cell, str) and " " not in cell:
        return "\n".join(fold_name(line, width) for line in cell.split("\n"))
    return cell


def print_fitted(output: Output, fitted: Fitted, wide: bool) -> None:
    """Print a fitted table; with --wide at its full width even past the terminal's edge."""
    if wide:
        with output.wide_console(fitted.width) as console:
            console.print(fitted.table)
        return
    output.print(fitted.table)


def print_table(
    output: Output,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    wide: bool = False,
    end_sections: Sequence[bool] = (),
    **table_args: Any,
) -> Fitted:
    """Fit, print, and say which columns were left out (``--wide`` shows them)."""
    fitted = fit_table(columns, rows, output.console, wide, end_sections, **table_args)
    print_fitted(output, fitted, wide)
    note_dropped(output, fitted)
    return fitted


def note_dropped(output: Output, fitted: Fitted) -> None:
    """Say which columns a narrow terminal left out, and how to see them."""
    if fitted.dropped:
        left_out = ", ".join(fitted.dropped)
        output.line(
            f"({left_out} left out to fit {output.console.width} columns; --wide shows all)"
        )


def renderable_width(console: Console, renderable: RenderableType) -> int:
    return Measurement.get(console, console.options, renderable).maximum
