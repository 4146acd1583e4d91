"""The `edgesmith bench` command line that the benchmark scripts run in a child process."""

from __future__ import annotations

import argparse
from pathlib import Path


def bench_command(
    python: str,
    model: Path,
    backend: str,
    args: argparse.Namespace,
    *,
    eval_set: Path | None = None,
) -> list[str]:
    """``python -m edgesmith bench MODEL`` on ``backend`` with the script's timing options.

    ``args`` carries ``threads``, ``runs``, ``warmup`` and ``swiftshader``; the JSON record
    goes to stdout.
    """
    command = [python, "-m", "edgesmith", "bench", str(model.resolve()), "--backend", backend]
    if eval_set is not None:
        command += ["--eval", str(eval_set.resolve())]
    command += ["--threads", str(args.threads), "--runs", str(args.runs)]
    command += ["--warmup", str(args.warmup), "--json", "-"]
    if args.swiftshader and backend == "litert-gpu":
        command.append("--swiftshader")
    return command
