"""The ``edgesmith`` command line.

Every command imports its heavy modules (TensorFlow among them) only when it runs, so
``edgesmith --help`` is instant and ``edgesmith bench`` never loads TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgesmith import __version__
from edgesmith.errors import EdgesmithError

Handler = Callable[[argparse.Namespace], int]


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
        from edgesmith.console import err

        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesmith",
        description="Take trained Keras models to the edge and measure what each step "
        "costs and saves: accuracy, size and latency.",
        epilog=_examples(
            "edgesmith zoo list",
            "edgesmith zoo train cnn-digits",
            "edgesmith zoo eval cnn-mnist --data-dir ../shared/data --json eval.json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgesmith {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_zoo(commands)
    return parser


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _command(
    group: Any, name: str, handler: Handler, summary: str, description: str, *examples: str
) -> argparse.ArgumentParser:
    sub = group.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_examples(*examples) if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=handler)
    return sub


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding mnist/, fsdd/, sms-spam/ (default: $EDGESMITH_DATA; "
        "with neither, the public copy is downloaded into the cache)",
    )


def _store_option(parser: argparse.ArgumentParser, *flags: str) -> None:
    parser.add_argument(
        *(flags or ("--store",)),
        dest="store",
        metavar="DIR",
        help="model store folder (default: $EDGESMITH_HOME/models or ~/.cache/edgesmith/models)",
    )


# --- zoo -----------------------------------------------------------------------------


def _add_zoo(commands: Any) -> None:
    zoo = commands.add_parser(
        "zoo",
        help="list, train and evaluate the model zoo",
        description="The model zoo: CNN, LSTM and Transformer models on real data sets.",
        epilog=_examples("edgesmith zoo list", "edgesmith zoo train lstm-kws --data-dir DATA"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = zoo.add_subparsers(title="zoo commands", metavar="COMMAND")
    zoo.set_defaults(handler=lambda _args: (zoo.print_help(), 2)[1])

    sub = _command(
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
    _store_option(sub)

    sub = _command(
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
    _data_dir_option(sub)
    sub.add_argument("--epochs", type=int, help="override the model's default number of epochs")
    _store_option(sub, "--out", "--store")
    sub.add_argument("--retrain", action="store_true", help="train again even if stored")
    sub.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sub.add_argument("--report", metavar="FILE.md", help="also write the results as Markdown")

    sub = _command(
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
    _data_dir_option(sub)
    sub.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    sub.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT")
    _store_option(sub)

    sub = _command(
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
    _data_dir_option(sub)
    sub.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    sub.add_argument("--out", required=True, metavar="FILE.npz", help="the .npz file to write")
    _store_option(sub)


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
            _pct(e["accuracy"]),
            e["params"],
        ]
        for e in entries
    ]
    columns = ["name", "family", "task", "dataset", "trained", "accuracy", "params"]
    out.print(table(f"edgesmith zoo (store: {store.root})", columns, rows))
    return 0


def _zoo_train(args: argparse.Namespace) -> int:
    from edgesmith.console import err, markdown_table, out, table
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
        card = train_zoo_model(
            name,
            data_dir=args.data_dir,
            epochs=args.epochs,
            store=store,
            retrain=args.retrain,
            seed=args.seed,
        )
        extra = {k: v for k, v in card.metric.items() if k != "accuracy"}
        metric = ", ".join(f"{k}={v:.3f}" for k, v in extra.items()) or None
        row = {
            "model": card.name,
            "family": card.family,
            "dataset": card.dataset,
            "accuracy": _pct(card.accuracy),
            "metric": metric,
            "params": card.params,
            "test samples": card.split.get("test"),
            "epochs": card.epochs,
            "train s": f"{card.train_seconds:.0f}",
        }
        rows.append(list(row.values()))
        if not reused:
            err.print(f"{name}: test accuracy {_pct(card.accuracy)}, saved to {store.path(name)}")
    columns = list(row)
    out.print(table("trained models (accuracy on each model's test split)", columns, rows))
    if args.report:
        from edgesmith.fileio import write_text

        text = "# edgesmith zoo\n\nAccuracy on each model's own test split.\n\n"
        write_text(args.report, text + markdown_table(columns, rows))
        err.print(f"report written to {args.report}")
    return 0


def _zoo_eval(args: argparse.Namespace) -> int:
    from edgesmith.zoo.evaluate import evaluate_stored

    result = evaluate_stored(args.name, data_dir=args.data_dir, split=args.split, store=args.store)
    _emit_json(result, args.json)
    return 0


def _zoo_export_eval(args: argparse.Namespace) -> int:
    from edgesmith.zoo.evaluate import export_eval

    result = export_eval(
        args.name, out=args.out, data_dir=args.data_dir, split=args.split, store=args.store
    )
    from edgesmith.console import err

    err.print(f"wrote {result['samples']} samples of the {args.split} split to {args.out}")
    return 0


def _emit_json(result: dict[str, Any], path: str | None) -> None:
    """Print ``result``; also write it to ``path`` (atomically) when given."""
    text = json.dumps(result, indent=2)
    if path:
        from edgesmith.fileio import write_text

        write_text(Path(path), text + "\n")
    print(text)


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.2f}%"


if __name__ == "__main__":
    sys.exit(main())
