"""``edgesmith run``: the whole pipeline, from zoo models to the accuracy / size / latency report."""

from __future__ import annotations

import argparse
from typing import Any

from edgesmith.commands import data_dir_option, examples, store_option


def register(commands: Any) -> None:
    sub = commands.add_parser(
        "run",
        help="zoo -> compress -> convert -> bench -> report, cached and resumable",
        description="Run a plan of models x recipes x (format, quant) x backends and write "
        "results.jsonl, results.csv, report.md and index.html to --out. Every stage is "
        "cached by a key derived from its inputs: a re-run recomputes nothing that is done, "
        "a killed run resumes. The float model is always the baseline row. Exit code 1 "
        "when any variant failed (each failure is in the report).",
        epilog="plan file (YAML or JSON):\n"
        "  models: [cnn-digits, lstm-digits]\n"
        "  # or zoo names next to models of your own (paths relative to the plan file;\n"
        "  # each stage is cached by the content of the model and data files):\n"
        "  # models: {cnn-digits: null, my-kws: {file: models/kws.keras, data: data/kws.npz}}\n"
        "  #   per model also: image_scale, trust (run the file's own code), custom_objects\n"
        "  recipes:\n"
        "    prune80: 'prune:sparsity=0.8'\n"
        "    qat: {recipe: 'qat:epochs=2', targets: ['tflite:int8']}   # only these targets\n"
        "    distilled: {recipe: 'distill:width=0.5',\n"
        "                models: {lstm-kws: 'distill:width=0.5,epochs=20'}}  # per-model text\n"
        "  targets: ['tflite:none', 'tflite:int8', 'onnx:none', 'onnx:int8']\n"
        "  backends: [litert, onnxruntime]\n"
        "  bench: {runs: 50, warmup: 5, threads: null}\n"
        "  data_dir: null            # or a folder holding mnist/, fsdd/, sms-spam/\n\n"
        + examples(
            "edgesmith run --plan plans/demo.yaml --out reports/demo",
            "edgesmith run --models cnn-digits --recipes prune:sparsity=0.8 "
            "--formats tflite:int8 onnx:int8 --backends litert onnxruntime --out reports/quick",
            "edgesmith run --plan plans/demo.yaml --out reports/demo --executor ray",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=_run)
    sub.add_argument("--plan", metavar="PLAN.yaml", help="plan file (flags below override it)")
    sub.add_argument("--out", required=True, metavar="DIR", help="report and cache folder")
    sub.add_argument("--models", nargs="+", metavar="NAME", help="zoo model names")
    sub.add_argument(
        "--recipes",
        nargs="+",
        metavar="RECIPE",
        help="compression recipes (one-line form; 'baseline' is always included)",
    )
    sub.add_argument(
        "--formats", nargs="+", metavar="FORMAT:QUANT", help="targets such as tflite:int8 onnx:none"
    )
    sub.add_argument("--backends", nargs="+", metavar="B", help="litert, onnxruntime, ...")
    sub.add_argument("--runs", type=int, help="timed runs per benchmark")
    executor_options(sub)
    data_dir_option(sub)
    store_option(sub)


def executor_options(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--workers`` and ``--ray-address``: where the stage tasks run."""
    parser.add_argument(
        "--executor",
        choices=("local", "serial", "ray"),
        default="local",
        help="local: worker processes on this machine's cores (default); serial: one "
        "task at a time in this process; ray: Ray tasks (needs the ray package). "
        "Benchmarks run one at a time whatever the executor; the records are the same",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="worker processes (default: one per core)"
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="an existing Ray cluster (HOST:PORT or auto); default: start a local Ray",
    )


def open_executor(args: argparse.Namespace) -> Any:
    """The executor the command line asked for."""
    from edgesmith.executor import make_executor

    return make_executor(args.executor, workers=args.workers, address=args.ray_address)


def _run(args: argparse.Namespace) -> int:
    from edgesmith.console import err, progress_renderer
    from edgesmith.plan import Plan, load_plan
    from edgesmith.plan_runner import run_plan

    data = load_plan(args.plan).to_dict() if args.plan else {}
    overrides = {
        "models": args.models,
        "recipes": args.recipes,
        "targets": args.formats,
        "backends": args.backends,
        "data_dir": args.data_dir,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.recipes is not None:
        # Recipes given on the command line replace the plan's, and with them its per-recipe
        # targets and per-model budgets.
        data.pop("recipe_targets", None)
        data.pop("recipe_models", None)
    if args.runs is not None:
        data["bench"] = {**data.get("bench", {}), "runs": args.runs}
    if "models" not in data:
        from edgesmith.core.errors import ConfigError

        raise ConfigError("no models", expected="--plan PLAN.yaml or --models NAME ...")
    plan = Plan.from_dict(data)
    with open_executor(args) as executor, progress_renderer() as progress:
        summary = run_plan(
            plan, out=args.out, store=args.store, progress=progress, executor=executor
        )
    done = ", ".join(f"{n} {stage}" for stage, n in summary.computed.items()) or "nothing"
    err.print(f"{len(summary.records)} records; computed this run: {done} (the rest was cached)")
    for record in summary.records:
        if record.error:
            where = " / ".join(
                str(x)
                for x in (record.model, record.recipe, record.format, record.quant, record.backend)
                if x
            )
            err.print(f"[red]failed[/] {where}: {record.error}", highlight=False)
    err.print(f"report: {summary.report['html']}")
    return 1 if summary.failed else 0
