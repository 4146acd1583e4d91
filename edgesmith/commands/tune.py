"""``edgesmith tune``: search recipes and targets for the smallest or fastest variant in budget."""

from __future__ import annotations

import argparse
from typing import Any

from edgesmith.commands import data_options, examples, store_option
from edgesmith.commands.run import executor_options, open_executor


def register(commands: Any) -> None:
    sub = commands.add_parser(
        "tune",
        help="search compression recipes and targets: smallest or fastest within a budget",
        description="Search the compression steps (pruning sparsity and structure, "
        "clusters, student width, fine-tuning), their order with QAT, and the conversion "
        "targets with Optuna (multi-objective: validation accuracy, size, latency). A trial "
        "whose validation accuracy falls more than --budget points below the float model's "
        "stops early. Writes DIR/tune.json (the Pareto front and the recommended variant, "
        "accuracy on the test split), DIR/recommended.tflite|.onnx and the report. The "
        "study lives in DIR/study.db: a killed tune resumes, a larger --trials extends it.",
        epilog="The default space searches what changes the deployed file: channel pruning, "
        "students, QAT and every quantization mode. Unstructured sparsity and clusters keep "
        "the dense file's size and speed (only its compressed download shrinks): add them "
        "with a space file.\n\n"
        "search-space file (YAML or JSON; sections replace the defaults'):\n"
        "  techniques: [baseline, prune, cluster, distill, prune+cluster]\n"
        "  qat: [false, true]\n"
        "  prune: {sparsity: {low: 0.5, high: 0.95, step: 0.05}, structure: [unstructured],\n"
        "          epochs: [null]}          # null: the automatic fine-tuning budget\n"
        "  cluster: {clusters: [8, 16, 32]}\n"
        "  distill: {width: [0.25, 0.5]}\n"
        "  targets: [tflite:int8, onnx:int8]\n"
        "  pruner: {warmup_epochs: 2, slack_pt: 2.0}  # stop a trial 2 pt below the budget\n\n"
        + examples(
            "edgesmith tune cnn-digits --budget 1.0 --objective size --trials 20 --out tune/cnn",
            "edgesmith tune model.keras --data data.npz --budget 0.5 --objective latency "
            "--backend litert --time 3600 --out tune/mine",
            "edgesmith tune cnn-digits --budget 1.0 --trials 40 --out tune/cnn  # extends it",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=_tune)
    sub.add_argument("model", metavar="MODEL", help="zoo model name or your model file")
    sub.add_argument(
        "--budget",
        type=float,
        required=True,
        metavar="PTS",
        help="accuracy points the variant may lose against the float model (1.0 = 1%%)",
    )
    sub.add_argument("--objective", choices=("size", "latency"), default="size")
    sub.add_argument("--backend", metavar="B", help="measure with B only (litert, onnxruntime)")
    sub.add_argument("--trials", type=int, default=40, metavar="N", help="trials in all")
    sub.add_argument("--time", type=float, metavar="S", help="start no trial after S seconds")
    sub.add_argument("--space", metavar="FILE", help="search-space file (YAML or JSON)")
    sub.add_argument("--sampler", choices=("tpe", "nsga2"), default="tpe")
    sub.add_argument("--runs", type=int, default=30, help="timed runs per benchmark")
    sub.add_argument("--out", required=True, metavar="DIR", help="study, cache and report")
    data_options(sub, "what the trials fine-tune on and are judged on")
    executor_options(sub)
    store_option(sub)


def _tune(args: argparse.Namespace) -> int:
    from edgesmith.console import err, progress_renderer
    from edgesmith.tune import TuneConfig, run_tune

    config = TuneConfig(
        model=args.model,
        budget=args.budget,
        out=args.out,
        objective=args.objective,
        data=args.data,
        image_scale=args.image_scale,
        backend=args.backend,
        trials=args.trials,
        seconds=args.time,
        space=args.space,
        data_dir=args.data_dir,
        store=args.store,
        sampler=args.sampler,
        bench_runs=args.runs,
    )
    with open_executor(args) as executor, progress_renderer() as progress:
        result = run_tune(config, executor=executor, progress=progress)
    counts = ", ".join(f"{n} {state}" for state, n in result["trials"].items())
    err.print(f"trials: {counts}; front: {len(result['front'])} variants", highlight=False)
    best = result["recommended"]
    if best is None:
        err.print("[yellow]no variant within the budget[/]; see the report")
        return 1
    err.print(
        f"recommended: {best['recipe']} -> {best['target']}: accuracy {best['accuracy']:.4f} "
        f"(test), {best['size_bytes']:,} bytes, {best['latency_ms']:.3f} ms; {best['file']}",
        highlight=False,
    )
    err.print(f"report: {result['report']['html']}")
    return 0
