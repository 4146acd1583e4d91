"""Small text formatters shared by the CLI, the runtime's messages and the report.

Example:
    >>> format_shape((1, -1, 40))
    '(1, ?, 40)'
    >>> format_bytes(2048), format_pct(0.98765), format_pct(None)
    ('2.0 KiB', '98.77%', '-')
"""

from __future__ import annotations

from collections.abc import Iterable


def format_shape(shape: Iterable[int | None]) -> str:
    """A tensor shape with unknown (negative or None) dimensions shown as ``?``."""
    return "(" + ", ".join("?" if d is None or d < 0 else str(d) for d in shape) + ")"


def format_bytes(value: int | None) -> str:
    """Bytes as KiB below one MiB, MiB above; ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value / 1024:.1f} KiB" if value < 1024 * 1024 else f"{value / 1024 / 1024:.2f} MiB"


def format_pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals; ``-`` when unknown."""
    return "-" if value is None else f"{100 * value:.2f}%"
