"""``edgesmith zoo``: list, train, evaluate and export the model zoo."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgesmith.commands import command, data_dir_option, emit_json, examples, pct, store_option


def register(commands: Any) -> None:
    zoo = commands.add_parser(
        "zoo",
        help="list, train and evaluate the model zoo",
        description="The model zoo: CNN, LSTM and Transformer models on real data sets.",
        epilog=examples("edgesmith zoo list", "edgesmith zoo train lstm-kws --data-dir DATA"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = zoo.add_subparsers(title="zoo commands", metavar="COMMAND")
    zoo.set_defaults(handler=lambda _args: (zoo.print_help(), 2)[1])

    sub = command(
        group,
        "list",
        _zoo_list,
        "list the zoo's models and whether a trained copy is stored",
        "List every zoo model with its family, task and data set, and whether a trained "
        "copy is in the store (with its test accuracy).",
        "edgesmith zoo list",
        "edgesmith zoo list --json",
    )
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    store_option(sub)

    sub = command(
        group,
        "train",
        _zoo_train,
        "train zoo models (reuses stored copies)",
        "Train one or more zoo models deterministically and store each with card.json "
        "(accuracy on its test split, parameters, seconds, library versions). A model "
        "already in the store is reused unless --retrain is given.",
        "edgesmith zoo train cnn-digits lstm-digits transformer-digits",
        "edgesmith zoo train cnn-mnist --data-dir ../shared/data --epochs 5 --out models/",
    )
    sub.add_argument("names", nargs="+", metavar="NAME", help="zoo model name(s)")
    data_dir_option(sub)
    sub.add_argument("--epochs", type=int, help="override the model's default number of epochs")
    store_option(sub, "--out", "--store")
    sub.add_argument("--retrain", action="store_true", help="train again even if stored")
    sub.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sub.add_argument("--report", metavar="FILE.md", help="also write the results as Markdown")

    sub = command(
        group,
        "eval",
        _zoo_eval,
        "evaluate a stored model on its data set",
        "Evaluate a stored model (a zoo name or a model folder) with the preprocessing "
        "saved at training time. --split all evaluates on every file of the data folder.",
        "edgesmith zoo eval cnn-digits",
        "edgesmith zoo eval dscnn-kws --data-dir ../shared/data --split all --json eval.json",
    )
    sub.add_argument("name", metavar="NAME", help="zoo model name or model folder")
    data_dir_option(sub)
    sub.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    sub.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT")
    store_option(sub)

    sub = command(
        group,
        "export-eval",
        _zoo_export_eval,
        "write preprocessed eval inputs and labels to .npz for the runtime",
        "Write the inputs (x) and labels (y) of a split exactly as the model consumes "
        "them, so `edgesmith bench --eval FILE.npz` measures accuracy with no "
        "preprocessing code on the device.",
        "edgesmith zoo export-eval lstm-kws --data-dir ../shared/data --out lstm-kws-test.npz",
    )
    sub.add_argument("name", metavar="NAME", help="zoo model name or model folder")
    data_dir_option(sub)
    sub.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    sub.add_argument("--out", required=True, metavar="FILE.npz", help="the .npz file to write")
    store_option(sub)


def _zoo_list(args: argparse.Namespace) -> int:
    from edgesmith.zoo.registry import list_specs
    from edgesmith.zoo.store import ModelStore

    store = ModelStore(args.store)
    entries = []
    for spec in list_specs():
        card = store.card(spec.name) if store.has(spec.name) else None
        entries.append(
            {
                "name": spec.name,
                "family": spec.family,
                "arch": spec.arch,
                "task": spec.task,
                "dataset": spec.dataset,
                "trained": card is not None,
                "accuracy": card.accuracy if card else None,
                "params": card.params if card else None,
                "path": str(store.path(spec.name)) if card else None,
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    from edgesmith.console import out, table

    rows = [
        [
            e["name"],
            e["family"],
            e["task"],
            e["dataset"],
            "yes" if e["trained"] else "no",
            pct(e["accuracy"]),
            e["params"],
        ]
        for e in entries
    ]
    columns = ["name", "family", "task", "dataset", "trained", "accuracy", "params"]
    out.print(table(f"edgesmith zoo (store: {store.root})", columns, rows))
    return 0


def _zoo_train(args: argparse.Namespace) -> int:
    from edgesmith.console import err, markdown_table, out, progress_renderer, table
    from edgesmith.zoo.registry import get_spec
    from edgesmith.zoo.store import ModelStore
    from edgesmith.zoo.train import train_zoo_model

    for name in args.names:
        get_spec(name)  # fail on a typo before training anything
    store = ModelStore(args.store)
    rows = []
    for name in args.names:
        reused = store.has(name) and not args.retrain
        if reused:
            err.print(f"{name}: reusing the stored copy in {store.path(name)} (--retrain to redo)")
        with progress_renderer() as progress:
            card = train_zoo_model(
                name,
                data_dir=args.data_dir,
                epochs=args.epochs,
                store=store,
                retrain=args.retrain,
                seed=args.seed,
                progress=progress,
            )
        extra = {k: v for k, v in card.metric.items() if k != "accuracy"}
        metric = ", ".join(f"{k}={v:.3f}" for k, v in extra.items()) or None
        row = {
            "model": card.name,
            "family": card.family,
            "dataset": card.dataset,
            "accuracy": pct(card.accuracy),
            "metric": metric,
            "params": card.params,
            "test samples": card.split.get("test"),
            "epochs": card.epochs,
            "train s": f"{card.train_seconds:.0f}",
        }
        rows.append(list(row.values()))
        if not reused:
            err.print(f"{name}: test accuracy {pct(card.accuracy)}, saved to {store.path(name)}")
    columns = list(row)
    out.print(table("trained models (accuracy on each model's test split)", columns, rows))
    if args.report:
        from edgesmith.core.fileio import write_text

        text = "# edgesmith zoo\n\nAccuracy on each model's own test split.\n\n"
        write_text(args.report, text + markdown_table(columns, rows))
        err.print(f"report written to {args.report}")
    return 0


def _zoo_eval(args: argparse.Namespace) -> int:
    from edgesmith.zoo.evaluate import evaluate_stored

    result = evaluate_stored(args.name, data_dir=args.data_dir, split=args.split, store=args.store)
    emit_json(result, args.json)
    return 0


def _zoo_export_eval(args: argparse.Namespace) -> int:
    from edgesmith.zoo.evaluate import export_eval

    result = export_eval(
        args.name, out=args.out, data_dir=args.data_dir, split=args.split, store=args.store
    )
    from edgesmith.console import err

    err.print(f"wrote {result['samples']} samples of the {args.split} split to {args.out}")
    return 0
