"""One output setting for every verb: what ``-q`` silences, what ``-v`` adds, where JSON goes.

Tables, progress and notes go to stdout unless the verb runs quiet; warnings always show (on
stderr when quiet, so that ``--json -`` leaves stdout pure JSON). Errors are not printed here:
they raise :class:`dlakit.errors.DlakitError`, which the CLI turns into one line on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dlakit.files import atomic_write

# `--json -` writes the document to stdout instead of a file.
STDOUT = "-"


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


class RateColumn(ProgressColumn):
    """Items per second of a progress bar (``images/s``, ``inputs/s``)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s")


def progress_bars(output: Output, unit: str) -> Any:
    """Progress bars with the count, the rate in ``unit``/s and the time left (none when quiet)."""
    if output.quiet:
        return nullcontext()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeRemainingColumn(),
        console=output.console,
        transient=True,
    )


@dataclass
class Output:
    """Where a verb prints: its console, how much detail, and whether to print at all."""

    console: Console = field(default_factory=Console)
    verbose: bool = False
    quiet: bool = False
    err: Console = field(default_factory=_stderr)

    @classmethod
    def make(cls, verbose: bool = False, quiet: bool = False) -> Output:
        return cls(Console(quiet=quiet, highlight=False), verbose and not quiet, quiet, _stderr())

    def print(self, *renderables: RenderableType) -> None:
        """A table, a panel or a line of markup (silenced by -q)."""
        self.console.print(*renderables)

    def line(self, text: str) -> None:
        """A plain message: paths and names stay whole, no markup or highlighting."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def detail(self, *renderables: RenderableType) -> None:
        """Shown only with -v."""
        if self.verbose:
            self.console.print(*renderables)

    def warn(self, text: str) -> None:
        console = self.err if self.quiet else self.console
        console.print(Text("warning: ", style="yellow") + Text(text), soft_wrap=True)

    def status(self, text: str) -> Any:
        """A spinner while a stage runs (none when quiet or not on a terminal)."""
        if self.quiet or not self.console.is_terminal:
            return nullcontext()
        return self.console.status(text)

    @contextmanager
    def wide_console(self, width: int) -> Iterator[Console]:
        """The console, at least ``width`` columns wide for this block (``--wide`` tables)."""
        saved = self.console.width
        self.console.width = max(saved, width)
        try:
            yield self.console
        finally:
            self.console.width = saved


def write_json(doc: dict[str, Any], path: Path | str, output: Output | None = None) -> None:
    """Write a verb's result as JSON to ``path`` (``-``: stdout), and say where it went."""
    text = json.dumps(doc, indent=2) + "\n"
    if str(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = atomic_write(path, text)
    if output is not None:
        output.line(f"JSON written to {target}")
