"""Measure the compression targets of issue #3 on the five real zoo models; print a Markdown table.

For each of cnn-mnist, dscnn-kws, lstm-kws, transformer-kws and transformer-sms (trained on
demand into ``--store``), it runs the recipes below through ``edgesmith compress`` and
measures each result on the model's test split:

* ``prune``: 80% sparsity (polynomial decay), target within 1 pt of the float model;
* ``qat``: the QAT model converted to full-int8 TFLite by ``edgesmith convert``'s path
  (``edgesmith.convert.convert_keras``, ``--quant int8``) and run with LiteRT, target
  within 0.5 pt of float;
* ``prune+cluster``: 80% sparsity then 16 clusters, target within 1 pt.

With ``--defaults`` it measures instead what a new user gets from each pruning step's
defaults (issue #14: within 1 pt of float on every model): ``prune:sparsity=0.8``,
``prune:structure=2:4`` and ``prune:structure=channels,sparsity=0.5`` (with the other
channel criterion, ``criterion=l2``, as a fourth row), every fine-tuning setting automatic; the table says
how many epochs each ran and why it stopped.

Distillation is measured over several seeds by ``benchmarks/distill_table.py``.

Results are cached in ``--out/results.json`` so an interrupted run resumes; the Markdown
table goes to stdout and to ``--out/compress_table.md``.

Usage:
    EDGESMITH_DATA=../shared/data python benchmarks/compress_table.py --out reports/compress
    python benchmarks/compress_table.py --models dscnn-kws --only prune qat   # a subset
    python benchmarks/compress_table.py --defaults --out reports/prune-defaults
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

MODELS = ("cnn-mnist", "dscnn-kws", "lstm-kws", "transformer-kws", "transformer-sms")
DIGITS = ("cnn-digits", "lstm-digits", "transformer-digits")  # --defaults: every zoo model

# The pruning step's budget per model: enough steps to ramp up to 80% and recover there.
# The DS-CNN (24k weights, 3x3 depthwise filters left with ~2 taps each) needs the longest
# recovery, at its training learning rate.
PRUNE = {
    "cnn-mnist": "ramp_end=0.5,epochs=6",
    "dscnn-kws": "ramp_end=0.3,epochs=60,learning_rate=3e-3",
    "lstm-kws": "ramp_end=0.5,epochs=24",
    "transformer-kws": "ramp_end=0.5,epochs=24",
    "transformer-sms": "ramp_end=0.5,epochs=4",
}
QAT_EPOCHS = {
    "cnn-mnist": 2,
    "dscnn-kws": 4,
    "lstm-kws": 4,
    "transformer-kws": 4,
    "transformer-sms": 2,
}
CLUSTER_EPOCHS = {
    "cnn-mnist": 2,
    "dscnn-kws": 4,
    "lstm-kws": 4,
    "transformer-kws": 4,
    "transformer-sms": 2,
}


# Defaults only: what `edgesmith compress M --recipe ...` gives a user who sets nothing else.
DEFAULT_RECIPES = {
    "unstructured 80%": "prune:sparsity=0.8",
    "2:4": "prune:structure=2:4",
    "channels 50%": "prune:structure=channels,sparsity=0.5",
    "channels 50% l2": "prune:structure=channels,sparsity=0.5,criterion=l2",
}
DEFAULTS = False  # set by --defaults


def recipes(model: str) -> dict[str, str]:
    """The recipes measured for ``model`` (label -> one-line recipe)."""
    if DEFAULTS:
        return dict(DEFAULT_RECIPES)
    prune = f"prune:sparsity=0.8,schedule=poly,{PRUNE[model]}"
    result = {
        "prune": prune,
        "qat": f"qat:epochs={QAT_EPOCHS[model]}",
        "prune+cluster": f"{prune}+cluster:clusters=16,epochs={CLUSTER_EPOCHS[model]}",
    }
    return result


TARGETS = {
    **{label: ("defaults within 1 pt of float", 1.0) for label in DEFAULT_RECIPES},
    "prune": ("within 1 pt of float", 1.0),
    "qat": ("int8 TFLite within 0.5 pt of float", 0.5),
    "prune+cluster": ("within 1 pt of float", 1.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS + DIGITS)
    parser.add_argument("--only", nargs="+", help="recipe labels to run (default: all)")
    parser.add_argument("--data-dir", help="data folder (default: $EDGESMITH_DATA)")
    parser.add_argument("--store", default=None, help="model store (default: the user's)")
    parser.add_argument("--out", default="reports/compress", help="results folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--defaults", action="store_true", help="measure the pruning steps' defaults instead"
    )
    args = parser.parse_args(argv)
    global DEFAULTS
    DEFAULTS = args.defaults

    from edgesmith.zoo.store import ModelStore
    from edgesmith.zoo.train import train_zoo_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "results.json"
    results: dict[str, Any] = json.loads(cache.read_text()) if cache.is_file() else {}
    store = ModelStore(args.store)
    for model in args.models:
        card = train_zoo_model(model, data_dir=args.data_dir, store=store, seed=args.seed)
        results.setdefault(model, {})["float"] = {
            "accuracy": card.accuracy,
            "params": card.params,
            "recipe": "(zoo model)",
        }
        for label, recipe in recipes(model).items():
            if args.only and label not in args.only:
                continue
            key = f"{label}|{recipe}"
            if key in results[model]:
                continue
            print(f"== {model}: {recipe}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                results[model][key] = measure(model, label, recipe, out, args, store)
            except Exception as exc:  # record it, go on with the other recipes
                results[model][key] = {"recipe": recipe, "error": f"{type(exc).__name__}: {exc}"}
            results[model][key]["seconds"] = round(time.perf_counter() - started, 1)
            cache.write_text(json.dumps(results, indent=2) + "\n")
    table = render(results, args.models)
    (out / "compress_table.md").write_text(table)
    print(table)
    return 0


def measure(
    model: str, label: str, recipe: str, out: Path, args: Any, store: Any
) -> dict[str, Any]:
    from edgesmith.compress.recipe_runner import compress_model

    slug = "".join(c if c.isalnum() else "-" for c in label)
    folder = out / "models" / f"{model}-{slug}"
    card = compress_model(
        model, recipe, out=folder, data_dir=args.data_dir, store=store.root, seed=args.seed
    )
    row: dict[str, Any] = {
        "recipe": recipe,
        "accuracy": card.accuracy,
        "sparsity": card.sparsity,
        "params": card.params,
        "nonzero_params": card.nonzero_params,
        "unique_weights_max": card.unique_weights_max,
    }
    step = card.steps[-1] if card.steps else {}
    if step.get("budget"):
        row["budget"] = step["budget"]
        row["rounds"] = step.get("rounds")
    if label == "qat":
        row.update(int8_accuracy(folder, args))
        row["qat_accuracy"] = card.accuracy
    return row


def int8_accuracy(folder: Path, args: Any) -> dict[str, Any]:
    """Convert the QAT model in ``folder`` to full-int8 TFLite and measure it on the test split.

    The file is what ``edgesmith convert FOLDER --quant int8`` writes (learned ranges, the
    rest calibrated on training samples, every op int8), run on LiteRT by the runtime.
    """
    from edgesmith.convert import convert_keras
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.convert.parity import predict_file
    from edgesmith.convert.tflite import int8_report
    from edgesmith.core.metrics import accuracy
    from edgesmith.zoo.evaluate import data_for
    from edgesmith.zoo.store import load_model_folder

    stored = load_model_folder(folder)
    data = data_for(stored, data_dir=args.data_dir)
    blob = convert_keras(
        stored.model, ConversionConfig(quant="int8"), data.x_train, qat=stored.card.qat
    )
    path = folder / "model_int8.tflite"
    path.write_bytes(blob)
    report = int8_report(blob)
    return {
        "int8_accuracy": accuracy(data.y_test, predict_file(path, data.x_test)),
        "int8_bytes": len(blob),
        "int8_float_ops": report["float_ops"],
    }


def render(results: dict[str, Any], models: list[str]) -> str:
    from edgesmith.console import markdown_table

    columns = [
        "model",
        "recipe",
        "accuracy",
        "vs float (pt)",
        "sparsity",
        "params",
        "nonzero",
        "unique max",
        "reference",
        "fine-tuning",
        "target",
    ]
    rows = []
    for model in models:
        entries = results.get(model, {})
        base = entries.get("float", {})
        float_acc = base.get("accuracy")
        rows.append(
            [
                model,
                "float (zoo)",
                _pct(float_acc),
                "",
                "0.000",
                base.get("params"),
                "",
                "",
                "",
                "",
                "",
            ]
        )
        for label, recipe in recipes(model).items():
            row = entries.get(f"{label}|{recipe}")
            if row is None:  # not run (yet), or a stale entry of an older recipe
                continue
            if row.get("error"):
                rows.append(
                    [
                        model,
                        f"`{row['recipe']}`",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        f"failed: {row['error'][:200]}",
                    ]
                )
                continue
            acc = row.get("int8_accuracy") if label == "qat" else row.get("accuracy")
            reference = ""
            verdict = ""
            text, tolerance = TARGETS.get(label, ("", None))
            if label == "qat":
                reference = f"QAT Keras {_pct(row.get('qat_accuracy'))}"
                if row.get("int8_float_ops"):
                    reference += f"; float ops: {', '.join(row['int8_float_ops'])}"
            if tolerance is not None and float_acc is not None and acc is not None:
                drop = round((float_acc - acc) * 100, 6)  # no float noise in the verdict
                verdict = "met" if drop <= tolerance else f"missed by {drop - tolerance:.2f} pt"
            delta = "" if acc is None or float_acc is None else f"{(acc - float_acc) * 100:+.2f}"
            rows.append(
                [
                    model,
                    f"`{row['recipe']}`" + (" -> int8 TFLite" if label == "qat" else ""),
                    _pct(acc),
                    delta,
                    f"{row['sparsity']:.3f}" if row.get("sparsity") is not None else "",
                    row.get("params"),
                    row.get("nonzero_params"),
                    row.get("unique_weights_max") or "",
                    reference,
                    _budget(row),
                    f"{text}: {verdict}" if verdict else text,
                ]
            )
    return markdown_table(columns, rows)


def _budget(row: dict[str, Any]) -> str:
    """How long the step fine-tuned and why it stopped (automatic budgets), from its card."""
    budget = row.get("budget") or {}
    if not budget:
        return ""
    rounds = row.get("rounds") or []
    if rounds:  # channel pruning: epochs per round
        epochs = "+".join(str(r.get("epochs_run", r.get("epochs"))) for r in rounds)
        stopped = rounds[-1].get("stopped") or "cap"
        return f"{epochs} epochs ({stopped}), lr {budget.get('learning_rate'):g}"
    cap = f" of {budget['cap']}" if "cap" in budget else ""
    stopped = f", {budget['stopped']}" if budget.get("stopped") else ""
    return f"{budget.get('epochs')}{cap} epochs{stopped}, lr {budget.get('learning_rate'):g}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


if __name__ == "__main__":
    sys.exit(main())
