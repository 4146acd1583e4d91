"""Terminal output shared by every command: one console on stderr, progress bars, tables. TF-free."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# Progress and messages go to stderr so that stdout stays clean for JSON and tables.
# Off a terminal (pipes, CI logs) a wide fixed width keeps table cells from being cut.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out = Console(width=None if sys.stdout.isatty() else 160)


def progress_bar(*, transient: bool = False) -> Progress:
    """A progress bar with count, elapsed and remaining time (quiet when not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err,
        transient=transient,
        disable=not err.is_terminal,
    )


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table whose cells are rendered with ``str``."""
    grid = Table(title=title, title_justify="left")
    for column in columns:
        first = column in ("name", "model")
        grid.add_column(column, justify="left" if first else "right", no_wrap=first)
    for row in rows:
        grid.add_row(*("-" if cell is None else str(cell) for cell in row))
    return grid


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The same table as GitHub-flavoured Markdown."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"
