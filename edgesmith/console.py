"""Terminal output shared by every command: one console on stderr, progress bars, tables. TF-free.

Library code never prints: it reports through a ``progress`` callback
(:mod:`edgesmith.core.progress`). The commands pass :func:`progress_renderer`, which draws
those events here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from edgesmith.core.progress import ProgressEvent

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


# Fields of a progress event shown beside its bar, in this order, when present.
STATUS_FIELDS = ("loss", "val_accuracy")


class ProgressRenderer:
    """A :data:`~edgesmith.core.progress.Progress` callback that draws events with rich.

    An event with ``done`` and ``total`` advances the bar of its task (one bar per task
    and ``source``, created on its first event and finished when ``done`` reaches
    ``total``), showing the loss and validation accuracy among its fields: two workers
    fine-tuning at once each get their own bar, named after the task of the run it belongs
    to. Any other event is a message, printed on stderr after its source (``warning``
    events in yellow). Call it from one thread at a time (``run_graph`` does). Use it as a
    context manager so the bars stop with the command.

    Example:
        >>> with progress_renderer() as progress:  # doctest: +SKIP
        ...     train_zoo_model("cnn-digits", progress=progress)
    """

    def __init__(self, bar: Progress | None = None) -> None:
        self.bar = bar if bar is not None else progress_bar()
        self._tasks: dict[tuple[str, str], Any] = {}
        self._started = False

    def __call__(self, event: ProgressEvent) -> None:
        if event.done is None or event.total is None:
            self._message(event)
            return
        if not self._started:
            self.bar.start()
            self._started = True
        status = " ".join(
            f"{key}={event.fields[key]:.3f}" for key in STATUS_FIELDS if key in event.fields
        )
        key = (event.source, event.task)
        task = self._tasks.get(key)
        if task is None:
            # Escaped: the names quote recipes, which may hold brackets.
            name = f"{event.source}: {event.task}" if event.source else event.task
            task = self.bar.add_task(escape(name), total=event.total, status=status)
            self._tasks[key] = task
        self.bar.update(task, completed=event.done, total=event.total, status=status)
        if event.done >= event.total:
            # Finished: a later task of the same name (another step's fine-tuning) gets
            # its own bar.
            del self._tasks[key]

    def _message(self, event: ProgressEvent) -> None:
        # Text, not markup: messages quote user input such as exclude='^[ab]' verbatim.
        source = (f"{event.source}: ", "dim") if event.source else ""
        if event.level == "warning":
            err.print(Text.assemble(("warning: ", "yellow"), source, event.message))
        else:
            err.print(Text.assemble(source, event.message))

    def close(self) -> None:
        if self._started:
            self.bar.stop()
            self._started = False

    def __enter__(self) -> ProgressRenderer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def progress_renderer() -> ProgressRenderer:
    """A progress callback for library calls that shows their events on the terminal."""
    return ProgressRenderer()


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
