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
        help="where the zoo's data sets live: the folder holding mnist/, fsdd/, sms-spam/ "
        "(default: $EDGESMITH_DATA; with neither, the public copy is downloaded)",
    )


DATA_HELP = (
    "your data: an .npz (x_train, y_train, optional x_val/y_val, x_test/y_test; or x, y "
    "split by --seed), a folder of class folders of images (png, jpg; resized to the "
    "model's input, values 0-255), or a zoo data set name (found under --data-dir). "
    "Default: a zoo model's own set"
)


def data_options(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--data``, ``--image-scale`` and ``--data-dir``: one idea, where the data comes from."""
    parser.add_argument("--data", metavar="PATH", help=DATA_HELP + (f"; {what}" if what else ""))
    parser.add_argument(
        "--image-scale",
        type=float,
        metavar="S",
        help="multiply image pixels (0-255) by S for a model that expects another range, "
        "e.g. 0.00392157 (1/255) for 0-1; Keras models usually carry their own Rescaling",
    )
    data_dir_option(parser)


def trust_options(parser: argparse.ArgumentParser) -> None:
    """``--trust-model`` and ``--custom-objects``: when code from a model file may run."""
    parser.add_argument(
        "--trust-model",
        action="store_true",
        help="let the model file run its own code (Lambda layers, unknown custom objects); "
        "off by default: such files are refused, naming the layer",
    )
    parser.add_argument(
        "--custom-objects",
        metavar="FILE.py",
        help="your own Python file defining the model's custom layers (imported, so only "
        "give code you trust); its Layer classes, or its CUSTOM_OBJECTS dict, are used",
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
