"""Building blocks shared by the command modules: help text, common options, output.

TF-free: parsers are built without importing any heavy module.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def examples(*lines: str) -> str:
    """The ``examples:`` block that ends every --help."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def command(
    group: Any, name: str, handler: Handler, summary: str, description: str, *example_lines: str
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``group`` with its help text, examples and handler."""
    sub = group.add_parser(
        name,
        help=summary,
        description=description,
        epilog=examples(*example_lines) if example_lines else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=handler)
    return sub


def data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding mnist/, fsdd/, sms-spam/ (default: $EDGESMITH_DATA; "
        "with neither, the public copy is downloaded into the cache)",
    )


def store_option(parser: argparse.ArgumentParser, *flags: str) -> None:
    parser.add_argument(
        *(flags or ("--store",)),
        dest="store",
        metavar="DIR",
        help="model store folder (default: $EDGESMITH_HOME/models or ~/.cache/edgesmith/models)",
    )


def emit_json(result: dict[str, Any], path: str | None) -> None:
    """Print ``result``; also write it to ``path`` (atomically) when given ('-': stdout only)."""
    text = json.dumps(result, indent=2)
    if path and path != "-":
        from edgesmith.core.fileio import write_text

        write_text(Path(path), text + "\n")
    print(text)


def pct(value: float | None) -> str | None:
    """``format_pct``, but None stays None (JSON null, or a caller's own wording)."""
    from edgesmith.core.formatting import format_pct

    return None if value is None else format_pct(value)
