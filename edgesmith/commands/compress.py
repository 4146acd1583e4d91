"""``edgesmith compress``: run a recipe of pruning, QAT, distillation and clustering steps."""

from __future__ import annotations

import argparse
from typing import Any

from edgesmith.commands import data_options, examples, pct, store_option, trust_options

RECIPE_HELP = """\
recipe syntax:
  steps joined by '+', each 'name' or 'name:key=value,key=value'
  (or a .json/.yaml file; recipe.json in an output folder is one):
    prune    sparsity, schedule=constant|poly, initial_sparsity,
             structure=unstructured|2:4|channels, ramp_end, frequency, epochs,
             learning_rate, batch_size, keep_best, exclude;
             with structure=channels (whole filters, LSTM/GRU units and attention heads
             removed, the model rebuilt smaller): sparsity = share of channels removed,
             or target_params=N / target_macs=N, criterion=taylor|l2, rounds (3),
             distill=true|false (learn from the unpruned model too; default true)
    qat      epochs, learning_rate, batch_size, preserve=auto|none|sparsity|clusters,
             calibration_samples, keep_best, exclude, freeze_batch_norm=true|false
             (true: BatchNormalization keeps its moving statistics while fine-tuning)
    distill  student=ZOO_NAME|input (input: fine-tune the step's input model itself),
             teacher=input|original (original: the recipe's model before its first
             step), width (0.5), depth, temperature (2), alpha (0.9: weight of the hard
             labels), epochs, learning_rate, batch_size, baseline=true|false, keep_best
    cluster  clusters, init=kmeans++|linear|density|random, preserve_sparsity, epochs,
             learning_rate, batch_size, keep_best, exclude
  exclude= is a regex searched in layer names; matching layers are left out of the step.
  prune without epochs= / learning_rate= fine-tunes automatically: at the model's own
  training rate, until validation accuracy is back within 0.5 pt of the input model's or
  stops improving, for at most the model's training epochs; the card's budget says what ran.
  prune:structure=channels fine-tunes the same way after each of its rounds, learning
  from the unpruned model's outputs as well as the labels; layers it cannot narrow keep
  their width (the card's plan says why). To distil once more afterwards, add
  +distill:student=input,teacher=original.
  qat must be the last step.
"""


def register(commands: Any) -> None:
    sub = commands.add_parser(
        "compress",
        help="prune, quantization-aware train, distill or cluster a model",
        description="Compress a zoo model, a model folder, or a model of your own (Keras 3 or "
        "tf-keras .keras/.h5, with --data) with a recipe of steps and "
        "write the result with the zoo store's layout (model.keras, card.json, "
        "preprocessing.json) plus recipe.json. card.json holds the test accuracy, the "
        "measured sparsity, parameters, distinct weight values, each step's record and "
        "the parent's card.",
        epilog=RECIPE_HELP
        + "\n"
        + examples(
            "edgesmith compress cnn-digits --recipe prune:sparsity=0.8,schedule=poly "
            "--out out/cnn-pruned",
            "edgesmith compress my.keras --data my.npz --recipe prune:sparsity=0.5+qat "
            "--out out/my-qat",
            "edgesmith compress lstm-kws --data-dir ../shared/data "
            "--recipe prune:sparsity=0.5+qat:epochs=2 --out out/lstm-qat",
            "edgesmith compress transformer-kws --data-dir ../shared/data "
            "--recipe distill:student=dscnn-kws,width=0.5 --out out/kws-student",
            "edgesmith compress cnn-mnist --recipe recipe.yaml --out out/mnist --logdir tb/",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument(
        "model", metavar="MODEL", help="zoo name, model folder, or your .keras/.h5/SavedModel"
    )
    sub.add_argument(
        "--recipe",
        required=True,
        metavar="RECIPE",
        help="one-line recipe (see below) or a .json/.yaml recipe file",
    )
    data_options(sub, "what the steps train on and the test accuracy is measured on")
    trust_options(sub)
    sub.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced)")
    store_option(sub)
    sub.add_argument("--logdir", metavar="DIR", help="also write TensorBoard logs under DIR")
    sub.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sub.set_defaults(handler=_compress)


def _compress(args: argparse.Namespace) -> int:
    from edgesmith.compress.recipe import load_recipe

    recipe = load_recipe(args.recipe)  # a bad recipe fails before TensorFlow loads
    from edgesmith.compress.recipe_runner import compress_model
    from edgesmith.console import err, out, progress_renderer, table

    with progress_renderer() as progress:
        card = compress_model(
            args.model,
            recipe,
            out=args.out,
            data_dir=args.data_dir,
            store=args.store,
            logdir=args.logdir,
            seed=args.seed,
            progress=progress,
            data=args.data,
            trust=args.trust_model,
            custom_objects=args.custom_objects,
            image_scale=args.image_scale,
        )
    err.print(f"compressed model written to {args.out}")
    rows = [
        [
            "(parent)",
            card.parent.get("name"),
            pct(card.parent.get("accuracy")),
            "-",
            card.parent.get("params"),
        ]
    ]
    for step in card.steps:
        rows.append(
            [
                step["step"],
                step["config"].get("student") or "",
                pct(step["accuracy"]),
                f"{step['sparsity']:.3f}",
                step["params"],
            ]
        )
    columns = ["step", "student", "accuracy", "sparsity", "params"]
    out.print(table(f"{card.name} -> {args.out} (test split)", columns, rows))
    return 0
