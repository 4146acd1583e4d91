"""The ``edgesmith`` command line.

Every command imports its heavy modules (TensorFlow among them) only when it runs, so
``edgesmith --help`` is instant and ``edgesmith bench`` never loads TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import import_module

from edgesmith import __version__
from edgesmith.commands import examples
from edgesmith.core.errors import EdgesmithError

# One module per command group under edgesmith/commands/, each with register(subparsers).
# Building the parser imports none of TensorFlow: handlers import what they need.
COMMAND_MODULES = ("zoo", "compress", "convert", "inspect", "bench", "run", "tune", "report")
# Set to 1 to see the full Python trace (with its causes) behind any error.
DEBUG_ENV = "EDGESMITH_DEBUG"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code (2 for a user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except EdgesmithError as exc:
        _print_error(str(exc), exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not a user error: one line, the trace on request
        _print_error(
            f"internal error ({type(exc).__name__}: {exc}); please report it with the "
            f"output of the same command run with {DEBUG_ENV}=1",
            exc,
        )
        return 1


def _print_error(message: str, exc: BaseException) -> None:
    """One line on stderr; with EDGESMITH_DEBUG=1 the full trace (causes included) first."""
    from rich.markup import escape

    from edgesmith.console import err

    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        import traceback

        err.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
    # The message quotes user input verbatim (a YAML snippet, exclude='^[ab]'): not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesmith",
        description="Take trained Keras models to the edge and measure what each step "
        "costs and saves: accuracy, size and latency.",
        epilog=examples(
            "edgesmith zoo list",
            "edgesmith zoo train cnn-digits",
            "edgesmith zoo eval cnn-mnist --data-dir ../shared/data --json eval.json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgesmith {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        import_module(f"edgesmith.commands.{module}").register(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
