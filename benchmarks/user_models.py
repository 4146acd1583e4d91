"""Four Keras 3 models of a user's, taken through the edgesmith CLI as a user would take them.

Builds and briefly trains, with the ``keras`` package (Keras 3), on the local data sets:

- ``mobilenetv3-mnist``: ``keras.applications.MobileNetV3Small`` (no weights, its own
  Rescaling) on MNIST 8k, padded to 32x32 and repeated to RGB, pixels 0-255;
- ``transformer-sms``: a Transformer encoder (Embedding, MultiHeadAttention,
  LayerNormalization, gelu feed-forward, GlobalAveragePooling1D, one sigmoid unit) on the
  SMS spam token ids;
- ``bigru-kws``: a bidirectional GRU on the FSDD MFCC frames;
- ``conv1d-kws``: Conv1D, SeparableConv1D, BatchNormalization and pooling on the same frames.

Each is saved as ``models/NAME.keras`` with its data as ``models/NAME.npz`` (x_train, y_train,
x_val, y_val, x_test, y_test), then run through ``edgesmith convert`` (TFLite float32 and
int8, ONNX int8), ``edgesmith compress`` (prune 50%, QAT), ``convert`` of each compressed
folder to TFLite int8 and ``edgesmith bench`` (LiteRT, ONNX Runtime for the .onnx), each a
subprocess. Writes ``table.md`` and ``results.json`` (one row per model x variant; a variant
that fails is a row with its error), then ``plan.yaml`` naming the four models and the report
of ``edgesmith run`` on it under ``report/``.

Every step is cached by its output: a trained model, a converted file with its record, a
compressed folder or a bench record that exists is reused, so running the script again
re-runs only what failed (``--fresh`` redoes everything after training).

    .venv/bin/python benchmarks/user_models.py --data-dir ../shared/data \\
        --out benchmarks/results/user-models [--quick] [--models bigru-kws] [--no-plan]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = ("mobilenetv3-mnist", "transformer-sms", "bigru-kws", "conv1d-kws")
EDGESMITH = str(Path(sys.executable).with_name("edgesmith"))
# Training epochs (full, --quick) and the fine-tuning epochs of prune / QAT per model: the
# 1.5M-parameter MobileNet takes about a minute an epoch on two shared cores.
EPOCHS = {
    "mobilenetv3-mnist": (5, 2),
    "transformer-sms": (8, 3),
    "bigru-kws": (15, 4),
    "conv1d-kws": (30, 6),
}
# QAT's fine-tuning epochs (full, quick); others: (2, 1). Pruning runs with its automatic
# budget (no epochs given, as a user would type it), or 1 epoch with --quick.
FINE_TUNE = {"mobilenetv3-mnist": (1, 1)}
STEP_TIMEOUT_S = 1800
COLUMNS = [
    "model",
    "variant",
    "backend",
    "accuracy",
    "Δ vs Keras 3 (pt)",
    "within 1 pt (no worse than -1)",
    "size",
    "p50 ms",
    "note",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EDGESMITH_DATA"))
    parser.add_argument("--out", default="benchmarks/results/user-models")
    parser.add_argument("--models", nargs="*", choices=MODELS, help="default: all four")
    parser.add_argument("--quick", action="store_true", help="fewer epochs everywhere")
    parser.add_argument("--fresh", action="store_true", help="redo every CLI step")
    parser.add_argument("--no-plan", action="store_true", help="skip plan.yaml and its run")
    parser.add_argument("--runs", type=int, default=100, help="timed bench runs")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("--data-dir (or EDGESMITH_DATA) must name the folder holding mnist/ ...")

    out = Path(args.out)
    model_dir = out / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    names = args.models or list(MODELS)
    rows: list[dict] = []
    for name in names:
        model_file, data_file = model_dir / f"{name}.keras", model_dir / f"{name}.npz"
        if model_file.exists() and data_file.exists():
            log(f"{name}: reusing {model_file}")
        else:
            train_one(name, model_file, data_file, data_dir=args.data_dir, quick=args.quick)
        rows.extend(run_variants(name, model_file, data_file, out, args))
    previous = _previous_rows(out / "results.json", keep_out=names)
    rows = sorted(previous + rows, key=lambda r: MODELS.index(r["model"]))
    write_table(out, rows, wall_s=time.perf_counter() - started, quick=args.quick)
    if not args.no_plan:
        plan_run(out, args)
    log(f"done in {time.perf_counter() - started:.0f} s: {out / 'table.md'}")
    return 0


# -- 1. the user's side: build and train with Keras 3 -------------------------------------


def train_one(name: str, model_file: Path, data_file: Path, *, data_dir: str, quick: bool) -> None:
    """Build ``name`` with Keras 3, train it briefly, save the .keras file and its .npz."""
    import keras

    from edgesmith.zoo.datasets import load_dataset

    keras.utils.set_random_seed(0)
    dataset = {"mobilenetv3-mnist": "mnist", "transformer-sms": "sms-spam"}.get(name, "fsdd")
    data = load_dataset(dataset, data_dir=data_dir)
    splits = {
        s: (getattr(data, f"x_{s}"), getattr(data, f"y_{s}")) for s in ("train", "val", "test")
    }
    if name == "mobilenetv3-mnist":
        splits = {s: (_mnist_rgb32(x), y) for s, (x, y) in splits.items()}
    builder = {
        "mobilenetv3-mnist": build_mobilenet,
        "transformer-sms": build_transformer,
        "bigru-kws": build_bigru,
        "conv1d-kws": build_conv1d,
    }[name]
    extra = {"vocabulary": len(data.preprocessing["vocabulary"])} if dataset == "sms-spam" else {}
    model = builder(splits["train"][0].shape[1:], len(data.class_names), **extra)
    binary = name == "transformer-sms"
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3 if name == "mobilenetv3-mnist" else 1e-3),
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    epochs = EPOCHS[name][1 if quick else 0]
    log(f"{name}: training {model.count_params():,} parameters for {epochs} epochs")
    t0 = time.perf_counter()
    best = keras.callbacks.ModelCheckpoint(
        str(model_file), monitor="val_accuracy", save_best_only=True, verbose=0
    )
    model.fit(
        *splits["train"],
        validation_data=splits["val"],
        epochs=epochs,
        batch_size=64,
        callbacks=[best],
        verbose=2,
    )
    model = keras.saving.load_model(model_file)  # the best epoch on the validation split
    _, test_acc = model.evaluate(*splits["test"], verbose=0)
    log(f"{name}: test accuracy {100 * test_acc:.2f}% after {time.perf_counter() - t0:.0f} s")
    arrays = {f"{k}_{s}": v for s, xy in splits.items() for k, v in zip("xy", xy, strict=True)}
    arrays["class_names"] = np.asarray(data.class_names)
    np.savez_compressed(data_file, **arrays)


def _mnist_rgb32(x: np.ndarray) -> np.ndarray:
    """28x28 0-1 digits as 32x32x3 uint8 0-255 (2 px of zero padding, grey repeated to RGB)."""
    pixels = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    pixels = np.pad(pixels, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(pixels[..., None], 3, axis=-1)


def build_mobilenet(shape: tuple, classes: int):
    import keras

    model = keras.applications.MobileNetV3Small(
        weights=None, input_shape=tuple(shape), classes=classes, include_preprocessing=True
    )
    # Its BatchNormalization momentum (0.999) needs thousands of steps before the moving
    # statistics are usable; a few epochs of 100 steps leave validation at chance.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def build_transformer(shape: tuple, classes: int, *, vocabulary: int, width: int = 32):
    # No position embedding: Keras 3 has no built-in layer for one, and spam is told by
    # which words occur far more than by their order.
    from keras import Input, Model, layers

    tokens = Input(shape, dtype="int32", name="tokens")
    x = layers.Embedding(vocabulary + 2, width, name="embedding")(tokens)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=width // 2, name="attention")(x, x)
    x = layers.LayerNormalization(name="norm1")(layers.Add()([x, attended]))
    ffn = layers.Dense(2 * width, activation="gelu", name="ffn1")(x)
    ffn = layers.Dense(width, name="ffn2")(ffn)
    x = layers.LayerNormalization(name="norm2")(layers.Add()([x, ffn]))
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    return Model(tokens, layers.Dense(1, activation="sigmoid", name="spam")(x), name="tsms")


def build_bigru(shape: tuple, classes: int):
    from keras import Input, Model, layers

    frames = Input(shape, name="mfcc")
    x = layers.Bidirectional(layers.GRU(32, return_sequences=True), name="bigru1")(frames)
    x = layers.Bidirectional(layers.GRU(32), name="bigru2")(x)
    x = layers.Dropout(0.2)(x)
    return Model(frames, layers.Dense(classes, activation="softmax")(x), name="bigru")


def build_conv1d(shape: tuple, classes: int):
    # BatchNormalization momentum 0.9: about 30 steps an epoch on 2,100 samples.
    from keras import Input, Model, layers

    frames = Input(shape, name="mfcc")
    x = layers.Conv1D(32, 3, padding="same", use_bias=False)(frames)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    for filters in (64, 64):
        x = layers.SeparableConv1D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
        x = layers.MaxPooling1D(2)(x)
    x = layers.SeparableConv1D(96, 3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.GlobalAveragePooling1D()(x)
    return Model(frames, layers.Dense(classes, activation="softmax")(x), name="conv1d")


# -- 2. edgesmith, as a user runs it ------------------------------------------------------


def run_variants(name: str, model: Path, data: Path, out: Path, args) -> list[dict]:
    """Every variant of one model: convert, compress + convert, bench; one row each."""
    files = out / "files" / name
    files.mkdir(parents=True, exist_ok=True)
    epochs = FINE_TUNE.get(name, (2, 1))[1 if args.quick else 0]
    compressed = {
        "prune50": "prune:sparsity=0.5" + (",epochs=1" if args.quick else ""),
        "qat": f"qat:epochs={epochs}",
    }
    plans = [
        ("tflite float32", model, "tflite", "none", None),
        ("tflite int8", model, "tflite", "int8", None),
        ("onnx int8", model, "onnx", "int8", None),
    ]
    for variant, recipe in compressed.items():
        plans.append((f"{variant} -> tflite int8", files / variant, "tflite", "int8", recipe))
    rows = []
    reference = None  # the Keras 3 model's test accuracy, from the first convert record
    for variant, source, fmt, quant, recipe in plans:
        row = {"model": name, "variant": variant, "format": fmt, "quant": quant}
        t0 = time.perf_counter()
        fresh = args.fresh
        try:
            if recipe is not None:
                row["recipe"] = recipe
                # A recompressed model makes its converted files and benchmarks stale.
                fresh = compress(model, data, recipe, source, args.fresh) or fresh
                card = json.loads((source / "card.json").read_text())
                row["compressed_keras_accuracy"] = card.get("accuracy")
                row["sparsity"] = card.get("sparsity")
            slug = variant.replace(" -> ", "-").replace(" ", "-")
            target = files / f"{name}-{slug}.{fmt}"
            record = convert(source, data, fmt, quant, target, fresh)
            if recipe is None and reference is None:
                reference = (record.get("reference") or {}).get("accuracy")
            row.update(
                accuracy=record.get("accuracy"),
                keras_reference=(record.get("reference") or {}).get("accuracy"),
                size_bytes=record.get("size_bytes"),
                gzip_bytes=record.get("gzip_bytes"),
                parity=record.get("parity"),
                notes=record.get("notes"),
            )
            backend = "onnxruntime" if fmt == "onnx" else "litert"
            bench = run_bench(target, data, backend, args.runs, fresh)
            row["backend"] = backend
            row["bench_accuracy"] = bench.get("accuracy")
            row["p50_ms"] = (bench.get("latency_ms") or {}).get("p50")
            if bench.get("error"):
                row["error"] = f"bench: {bench['error']}"
        except StepFailed as exc:
            row["error"] = str(exc)
            log(f"{name} {variant}: FAILED: {exc}")
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    for row in rows:
        row["keras3_accuracy"] = reference
    return rows


class StepFailed(Exception):
    """A CLI step exited non-zero; the message is its last error line."""


def cli(*argv: str) -> None:
    """Run ``edgesmith ARGV``; raise :class:`StepFailed` with its error line when it fails."""
    command = [EDGESMITH, *argv]
    log("$ " + " ".join(_short(a) for a in command))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=STEP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{argv[0]}: no result after {STEP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if _is_message(ln)]
        # The error is the CLI's "error: ..." line to the end (a wrapped message can span
        # lines); otherwise the last line it wrote.
        first = next((i for i, ln in enumerate(lines) if ln.startswith("error:")), -1)
        message = " ".join(ln.strip() for ln in lines[first:]) if lines else "?"
        raise StepFailed(f"{argv[0]} exit {done.returncode}: {message}")


def compress(model: Path, data: Path, recipe: str, folder: Path, fresh: bool) -> bool:
    """Compress unless ``folder`` already holds ``recipe``'s result; True when it ran."""
    from edgesmith.compress.recipe import parse_recipe

    done = (folder / "card.json").exists() and (folder / "recipe.json").exists()
    if done:  # the same steps with the same settings (defaults included)
        held = json.loads((folder / "recipe.json").read_text()).get("steps")
        done = held == [step.to_dict() for step in parse_recipe(recipe).steps]
    if fresh or not done:
        cli("compress", str(model), "--data", str(data), "--recipe", recipe, "--out", str(folder))
        return True
    return False


def convert(source: Path, data: Path, fmt: str, quant: str, target: Path, fresh: bool) -> dict:
    record_file = target.parent / f"{target.name}.json"
    if fresh or not target.exists() or not record_file.exists():
        # A compressed folder remembers its data (its preprocessing names the .npz); --data
        # is given anyway, as a user would.
        cli(
            "convert", str(source), "--data", str(data), "--format", fmt, "--quant", quant,
            "--out", str(target),
        )  # fmt: skip
    record = json.loads(record_file.read_text())
    if record.get("error"):
        raise StepFailed(f"convert: {record['error']}")
    return record


def run_bench(file: Path, data: Path, backend: str, runs: int, fresh: bool) -> dict:
    record_file = file.parent / f"{file.name}.{backend}.json"
    if fresh or not record_file.exists():
        cli(
            "bench", str(file), "--data", str(data), "--backend", backend, "--runs", str(runs),
            "--json", str(record_file),
        )  # fmt: skip
    record = json.loads(record_file.read_text())
    return record[0] if isinstance(record, list) else record


def _is_message(line: str) -> bool:
    """An edgesmith line on stderr, not TensorFlow's C++ start-up chatter."""
    noise = ("WARNING: All log", "To enable the following", "I0000", "W0000", "E0000")
    return bool(line.strip()) and not line.startswith(noise)


def _short(arg: str) -> str:
    return os.path.relpath(arg) if os.path.isabs(arg) else arg


# -- 3. the table, the plan ---------------------------------------------------------------


def write_table(out: Path, rows: list[dict], *, wall_s: float, quick: bool) -> None:
    from edgesmith.console import markdown_table
    from edgesmith.core.fileio import write_text

    table_rows = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        ref = mine[0].get("keras3_accuracy")
        table_rows.append([model, "Keras 3 (.keras)", "-", _pct(ref), "", "", "", "", ""])
        for r in mine:
            acc = r.get("accuracy")
            delta = None if acc is None or ref is None else 100 * (acc - ref)
            note = r.get("error") or _note(r)
            table_rows.append(
                [
                    model,
                    r["variant"],
                    r.get("backend"),
                    _pct(acc),
                    None if delta is None else f"{delta:+.2f}",
                    None if delta is None else ("yes" if delta >= -1.0 - 1e-9 else "no"),
                    None if r.get("size_bytes") is None else f"{r['size_bytes']:,}",
                    None if r.get("p50_ms") is None else f"{r['p50_ms']:.4f}",
                    note.replace("|", "/").replace("\n", " ")[:300],
                ]
            )
    header = (
        "# Keras 3 models of a user's through edgesmith\n\n"
        f"`benchmarks/user_models.py{' --quick' if quick else ''}`: accuracy on each model's "
        "test split (the converted file, run by the converter's parity check), Δ against the "
        "Keras 3 model's own test accuracy (`reference.accuracy` of its convert record), "
        "size of the file in bytes, p50 latency of `edgesmith bench` at batch 1, 1 thread. "
        f"Wall time of this invocation (steps whose output exists are reused): "
        f"{wall_s / 60:.1f} min.\n\n"
    )
    write_text(out / "table.md", header + markdown_table(COLUMNS, table_rows))
    write_text(out / "results.json", json.dumps(rows, indent=2, default=str) + "\n")
    print(markdown_table(COLUMNS, table_rows))


def _note(row: dict) -> str:
    parts = []
    if row.get("sparsity"):
        parts.append(f"sparsity {row['sparsity']:.2f}")
    bench_acc, acc = row.get("bench_accuracy"), row.get("accuracy")
    if bench_acc is not None and acc is not None and abs(bench_acc - acc) > 1e-9:
        parts.append(f"bench accuracy {_pct(bench_acc)}")
    return ", ".join(parts)


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.2f}%"


def _previous_rows(results: Path, keep_out: list[str]) -> list[dict]:
    """Rows of models not run this time, kept from the last results.json."""
    if not results.exists():
        return []
    return [r for r in json.loads(results.read_text()) if r["model"] not in keep_out]


def plan_run(out: Path, args) -> None:
    """plan.yaml naming the four models; ``edgesmith run`` on it must write the report."""
    from edgesmith.core.fileio import write_text

    models = [m for m in MODELS if (out / "models" / f"{m}.keras").exists()]
    lines = [
        "# Keras 3 models of a user's (benchmarks/user_models.py): paths from this file",
        "models:",
    ]
    for m in models:
        lines.append(f"  {m}: {{file: models/{m}.keras, data: models/{m}.npz}}")
    lines += [
        "recipes:",
        '  prune50: "prune:sparsity=0.5,epochs=1"',
        'targets: ["tflite:none", "tflite:int8"]',
        "backends: [litert]",
        "bench: {runs: 20, warmup: 2}",
    ]
    plan = out / "plan.yaml"
    write_text(plan, "\n".join(lines) + "\n")
    report = out / "report"
    t0 = time.perf_counter()
    try:
        cli("run", "--plan", str(plan), "--out", str(report))
        outcome = "ok"
    except StepFailed as exc:
        outcome = str(exc)  # exit 1 when any variant failed: the report still holds it
    written = [f for f in ("results.jsonl", "report.md", "index.html") if (report / f).exists()]
    log(f"edgesmith run: {outcome}; {len(written)}/3 report files in {report} "
        f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    if (report / "results.jsonl").exists():
        records = [json.loads(x) for x in (report / "results.jsonl").read_text().splitlines() if x]
        failed = [r for r in records if r.get("error")]
        summary = {"outcome": outcome, "records": len(records), "failed": len(failed)}
        summary["errors"] = [f"{r.get('model')} {r.get('recipe')}: {r['error']}" for r in failed]
        write_text(out / "plan-run.json", json.dumps(summary, indent=2) + "\n")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
