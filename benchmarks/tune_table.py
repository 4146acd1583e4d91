"""``edgesmith tune`` against the best hand-written recipes of ``plans/demo-real.yaml``.

For each case below, through the ``edgesmith`` CLI as a user runs it:

- ``edgesmith tune MODEL --budget B --objective O --backend litert`` on the local executor
  (every core), with a trial cap and a wall-time cap; its recommended file and test-split
  accuracy come from ``tune.json``;
- the plan's hand-written recipes that change the dense file (structured pruning and the
  distilled student: unstructured pruning, clustering and QAT keep the dense file's size
  and speed, see ``benchmarks/structured_table.py``), each converted to float32 and int8;
- every file benchmarked with ``edgesmith bench --reference`` against the model's float32
  .tflite (LiteRT, XNNPACK, one thread, batch 1, timed in alternating blocks in one
  process), so tune's pick and the hand-written files are compared as speedups measured
  side by side.

Writes ``table.md`` and ``results.json`` under ``--out``, with each tune's wall time and
its trials per hour per core (what a search costs on N machines). A step whose output
exists is reused; a tune whose study exists resumes (and extends with more trials).

    EDGESMITH_HOME=/path/home .venv/bin/python benchmarks/tune_table.py \\
        --data-dir ../shared/data --out benchmarks/results/tune [--models cnn-mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from structured_table import bench, compress, convert, edgesmith, log

# (objective, budget in pt, hand-written recipes of plans/demo-real.yaml worth comparing)
CASES = {
    "cnn-mnist": ("size", 0.5, {"channels": "prune:structure=channels,target_params=40000"}),
    "lstm-kws": (
        "latency",
        1.0,
        {
            "channels": "prune:structure=channels,sparsity=0.5",
            "distilled-student": "distill:width=0.5",
        },
    ),
    "transformer-kws": (
        "latency",
        1.0,
        {
            "channels": "prune:structure=channels,sparsity=0.5,criterion=taylor",
            "distilled-student": "distill:width=0.5",
        },
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EDGESMITH_DATA"))
    parser.add_argument("--out", default="benchmarks/results/tune")
    parser.add_argument("--models", nargs="*", choices=list(CASES), help="default: all")
    parser.add_argument("--trials", type=int, default=40, help="trial cap per tune")
    parser.add_argument("--time", type=float, default=1800, help="seconds per tune (cap)")
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per file")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("--data-dir (or EDGESMITH_DATA) must name the folder holding mnist/ ...")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for name in args.models or list(CASES):
        results[name] = measure_case(name, out, args)
        results_file.write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(table(results))
    log(f"done: {out / 'table.md'}")
    return 0


def measure_case(name: str, out: Path, args: argparse.Namespace) -> dict:
    objective, budget, hand = CASES[name]
    folder = out / name
    folder.mkdir(exist_ok=True)
    data = ["--data-dir", args.data_dir]
    evalset = folder / "test.npz"
    if not evalset.exists():
        edgesmith("zoo", "export-eval", name, *data, "--out", str(evalset))
    reference = convert(name, folder / "float32.tflite", "none", data)
    tune_dir = folder / "tune"
    argv = [name, *data, "--budget", str(budget), "--objective", objective]
    argv += ["--backend", "litert", "--trials", str(args.trials), "--time", str(args.time)]
    argv += ["--out", str(tune_dir)]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    wall_file = folder / "tune.wall.json"
    if not wall_file.exists():
        started = time.perf_counter()
        edgesmith("tune", *argv)
        wall = {"seconds": time.perf_counter() - started, "workers": args.workers or _cores()}
        wall_file.write_text(json.dumps(wall))
    wall = json.loads(wall_file.read_text())
    tuned = json.loads((tune_dir / "tune.json").read_text())
    chosen = tuned["recommended"]  # None when no trial kept the accuracy budget
    rows = [_row("float32", "-", "tflite:none", reference, reference, evalset, args.runs)]
    if chosen:
        file = Path(chosen["file"])
        file = file if file.exists() else tune_dir / file.name
        rows.append(
            _row("tune", chosen["recipe"], chosen["target"], file, reference, evalset, args.runs)
        )
    for label, recipe in hand.items():
        source = compress(name, recipe, folder / label, data)
        for quant in ("none", "int8"):
            file = convert(str(source), folder / f"{label}-{quant}.tflite", quant, data)
            rows.append(_row(label, recipe, f"tflite:{quant}", file, reference, evalset, args.runs))
    return {
        "objective": objective,
        "budget": budget,
        "tune": {
            "wall_s": round(wall["seconds"], 1),
            "workers": wall["workers"],
            "trials": tuned.get("trials"),
            "recommended": chosen,
        },
        "rows": rows,
    }


def _row(
    label: str, recipe: str, target: str, file: Path, reference: Path, evalset: Path, runs: int
) -> dict:
    record = bench(file, reference, evalset, runs)
    return {
        "variant": label,
        "recipe": recipe,
        "target": target,
        "file": str(file),
        "accuracy": record["accuracy"],
        "size_bytes": file.stat().st_size,
        "p50_ms": record["latency_ms"]["p50"],
        "speedup": (record.get("paired") or {}).get("speedup"),
        "cpu": record["environment"].get("cpu"),
    }


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _trial_count(trials: object) -> int:
    """Finished trials (complete, pruned or failed) from ``tune.json``'s ``trials``."""
    if isinstance(trials, dict):
        skip = ("running", "repeats")  # repeats were told earlier numbers, not run
        return int(sum(v for k, v in trials.items() if k not in skip and isinstance(v, int)))
    if isinstance(trials, list):
        return len(trials)
    return int(trials or 0)


def table(results: dict) -> str:
    lines = [
        "# edgesmith tune against the hand-written recipes (LiteRT, XNNPACK, 1 thread)",
        "",
        "`benchmarks/tune_table.py`. Accuracy on the test split (tune chose on the validation "
        "split); speedup = the float32 file's p50 / this file's p50, timed in alternating "
        "blocks in one process (`edgesmith bench --reference`).",
        "",
    ]
    for name, case in results.items():
        tune = case["tune"]
        count = _trial_count(tune["trials"])
        core_hours = tune["wall_s"] / 3600 * tune["workers"]
        per_core = count / core_hours if core_hours else 0.0
        lines += [
            f"## {name}: --objective {case['objective']} --budget {case['budget']}",
            "",
            f"tune: {count} trials in {tune['wall_s'] / 60:.1f} min on {tune['workers']} "
            f"worker(s): {per_core:.1f} trials per hour per core. Trials: {tune['trials']}.",
            "",
            "| variant | recipe | target | accuracy | Δ pt | size | smaller | p50 ms | speedup |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        rows = case["rows"]
        base = rows[0]
        for r in rows:
            delta = round(100 * (r["accuracy"] - base["accuracy"]), 2)
            speedup = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
            lines.append(
                f"| {r['variant']} | {r['recipe']} | {r['target']} | {100 * r['accuracy']:.2f}% "
                f"| {delta:+.2f} | {r['size_bytes']:,} | "
                f"{base['size_bytes'] / r['size_bytes']:.1f}x | {r['p50_ms']:.4f} | {speedup} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
