"""Distilled half-width students against the same students trained from scratch, over seeds.

Issue #3's distillation target: a half-width student distilled from a teacher must beat the
same student trained from scratch for the same epochs, for at least two families. On test
splits of 300-800 samples one seed decides by one or two samples, so every pair is run
with several seeds; per seed the distilled and the scratch student start from the same
initial weights, train for the same epochs at the same learning rate, and both keep the
weights of their best validation epoch. The table gives both accuracies per seed and
their means.

Pairs (teacher -> student architecture at half width):

* ``cnn``: cnn-mnist -> cnn-mnist x0.5 (same family);
* ``lstm``: dscnn-kws -> lstm-kws x0.5 (the DS-CNN is the strongest KWS teacher, 100%);
* ``transformer``: dscnn-kws -> transformer-kws x0.5;
* ``lstm-self``, ``transformer-self``: the same-family teachers (lstm-kws, transformer-kws).

Results are cached in ``--out/distill.json`` (an interrupted run resumes); the Markdown
table goes to stdout and ``--out/distill_table.md``.

Usage:
    EDGESMITH_DATA=../shared/data python benchmarks/distill_table.py --out reports/distill
    python benchmarks/distill_table.py --pairs lstm --seeds 0 1 --recipe-options temperature=4,alpha=0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

PAIRS = {
    "cnn": ("cnn-mnist", "cnn-mnist"),
    "lstm": ("dscnn-kws", "lstm-kws"),
    "transformer": ("dscnn-kws", "transformer-kws"),
    "lstm-self": ("lstm-kws", "lstm-kws"),
    "transformer-self": ("transformer-kws", "transformer-kws"),
}
DEFAULT_PAIRS = ("cnn", "lstm", "transformer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), choices=PAIRS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--recipe-options",
        default="",
        help="extra distill options, e.g. temperature=4,alpha=0.5 (default: the config's)",
    )
    parser.add_argument("--data-dir", help="data folder (default: $EDGESMITH_DATA)")
    parser.add_argument("--store", default=None, help="model store (default: the user's)")
    parser.add_argument("--out", default="reports/distill", help="results folder")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "distill.json"
    results: dict[str, Any] = json.loads(cache.read_text()) if cache.is_file() else {}
    for pair in args.pairs:
        teacher, student = PAIRS[pair]
        recipe = f"distill:student={student},width=0.5"
        if args.recipe_options:
            recipe += f",{args.recipe_options}"
        for seed in args.seeds:
            key = f"{pair}|{recipe}|{seed}"
            if key in results:
                continue
            print(f"== {pair}: {teacher} -> {recipe} (seed {seed})", file=sys.stderr, flush=True)
            results[key] = measure(teacher, recipe, seed, args)
            cache.write_text(json.dumps(results, indent=2) + "\n")
    table = render(results, args.pairs, args.seeds)
    (out / "distill_table.md").write_text(table)
    print(table)
    return 0


def measure(teacher: str, recipe: str, seed: int, args: Any) -> dict[str, Any]:
    """One distillation with its scratch baseline, through the library's own entry points."""
    from edgesmith.compress import distill
    from edgesmith.compress.recipe import parse_recipe
    from edgesmith.compress.step import StepContext
    from edgesmith.zoo.evaluate import data_for, open_model
    from edgesmith.zoo.store import ModelStore
    from edgesmith.zoo.train import evaluate_model, train_zoo_model

    store = ModelStore(args.store)
    train_zoo_model(teacher, data_dir=args.data_dir, store=store)
    stored = open_model(teacher, store=store)
    data = data_for(stored, data_dir=args.data_dir)
    (config,) = parse_recipe(recipe).steps
    started = time.perf_counter()
    step = distill.run(stored.model, data, config, StepContext(seed=seed))
    result = {**step.details, "model": step.model}
    student_data = step.data  # the data as the student reads it
    return {
        "teacher": teacher,
        "teacher_accuracy": result["teacher_accuracy"],
        "recipe": recipe,
        "seed": seed,
        "student": result["student"],
        "student_params": result["student_params"],
        "epochs": result["budget"]["epochs"],
        "distilled": float(evaluate_model(result["model"], student_data)["accuracy"]),
        "scratch": result["scratch_accuracy"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def render(results: dict[str, Any], pairs: list[str], seeds: list[int]) -> str:
    lines = [
        "| family | teacher (acc) | student (params, epochs) | recipe | per seed: distilled / scratch"
        " | mean distilled | mean scratch | distilled - scratch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair in pairs:
        rows = [r for k, r in results.items() if k.startswith(f"{pair}|") and r["seed"] in seeds]
        for recipe in dict.fromkeys(r["recipe"] for r in rows):
            runs = sorted((r for r in rows if r["recipe"] == recipe), key=lambda r: r["seed"])
            distilled = [r["distilled"] for r in runs]
            scratch = [r["scratch"] for r in runs]
            first = runs[0]
            per_seed = ", ".join(
                f"s{r['seed']} {100 * r['distilled']:.2f} / {100 * r['scratch']:.2f}" for r in runs
            )
            gap = 100 * (sum(distilled) - sum(scratch)) / len(runs)
            lines.append(
                f"| {pair} | {first['teacher']} ({100 * first['teacher_accuracy']:.2f}%) "
                f"| {first['student']} x0.5 ({first['student_params']:,}, {first['epochs']} ep) "
                f"| `{recipe}` | {per_seed} | {100 * sum(distilled) / len(runs):.2f}% "
                f"| {100 * sum(scratch) / len(runs):.2f}% | {gap:+.2f} pt |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
