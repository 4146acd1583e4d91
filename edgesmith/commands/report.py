"""``edgesmith report``: render run folders again, or compare several side by side."""

from __future__ import annotations

import argparse
from typing import Any

from edgesmith.commands import examples


def register(commands: Any) -> None:
    sub = commands.add_parser(
        "report",
        help="the report of a run again, or several runs/devices compared",
        description="With one RUN_DIR: write the report (index.html, report.md, results.csv, "
        "results.jsonl, summary.json) of that run's records into --out. With several, or "
        "one run measured on several devices: per file and backend the accuracy and latency "
        "of each next to the first, with the changes tested the same way as in the report "
        "(McNemar on the same samples, overlapping p10-p90 latency spreads: within noise).",
        epilog=examples(
            "edgesmith report reports/demo --out reports/demo-view --budget 0.5",
            "edgesmith report reports/host reports/pi --out reports/host-vs-pi",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=_report)
    sub.add_argument("runs", nargs="+", metavar="RUN_DIR", help="--out folders of edgesmith run")
    sub.add_argument("--out", required=True, metavar="DIR", help="where the report goes")
    sub.add_argument(
        "--budget",
        type=float,
        metavar="PTS",
        help="accuracy points a recommended file may lose (default: the run's plan, else 1)",
    )
    sub.add_argument("--title", help="the report's title")
    sub.add_argument(
        "--compare",
        action="store_true",
        help="compare the devices of a single RUN_DIR instead of rendering its report",
    )


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgesmith.console import out
    from edgesmith.core.errors import ConfigError

    if args.budget is not None and not 0 <= args.budget <= 100:
        raise ConfigError(f"--budget {args.budget}", expected="a number of points from 0 to 100")
    if len(args.runs) == 1 and not args.compare:
        from edgesmith.report import plan_budget, read_run, write_report

        run = Path(args.runs[0])
        budget = plan_budget(run) if args.budget is None else args.budget
        title = args.title or f"{run.resolve().name}: accuracy vs size vs latency"
        paths = write_report(read_run(run), args.out, title=title, budget=budget)
    else:
        from edgesmith.report_compare import compare_runs

        title = args.title or "edgesmith comparison: " + " vs ".join(
            Path(r).resolve().name for r in args.runs
        )
        paths = compare_runs(args.runs, args.out, title=title, budget=args.budget)
    out.print(f"report: {paths['html']}", highlight=False)
    return 0
