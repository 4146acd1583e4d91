"""How library code reports progress without printing.

Long-running functions take a keyword-only ``progress: Progress | None``. They call it
with :class:`ProgressEvent` values; the CLI renders them (rich bars and messages), a
notebook user passes their own function or nothing (silence).

Example:
    >>> seen = []
    >>> report = as_progress(seen.append)
    >>> report(ProgressEvent("train", "epoch", done=1, total=3, fields={"val_accuracy": 0.9}))
    >>> seen[0].done, seen[0].total
    (1, 3)
    >>> as_progress(None)(ProgressEvent("train", "quiet"))  # no callback: nothing happens
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a long task, or a message about it.

    ``task`` names the work ("train cnn-digits"), ``message`` says what happened;
    ``done``/``total`` count steps when the task has them (epochs, variants); ``fields``
    carries numbers worth showing (loss, accuracy); ``level`` is ``info`` or ``warning``.
    ``source`` names the task of a parallel run that reported it (set by
    :func:`edgesmith.executor.run_graph`, empty for work done directly in this process), so
    that two workers' ``train`` events keep apart.
    """

    task: str
    message: str = ""
    done: int | None = None
    total: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    level: str = "info"
    source: str = ""


Progress = Callable[[ProgressEvent], None]


def _silent(event: ProgressEvent) -> None:
    del event


def as_progress(callback: Progress | None) -> Progress:
    """``callback`` itself, or a callback that ignores every event."""
    return callback if callback is not None else _silent
