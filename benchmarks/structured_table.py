"""Structured (channel) pruning against unstructured pruning at the same parameter count.

For each zoo model (trained on demand into ``--store``), through the ``edgesmith`` CLI as a
user runs it:

- ``float32``: the model as it is, converted to a float32 .tflite (the reference);
- ``channels``: ``prune:structure=channels`` with the model's recipe below (defaults
  otherwise: automatic fine-tuning, the unpruned model as teacher), as float32 and as
  full-int8 .tflite;
- ``unstructured``: ``prune:sparsity=S`` with S chosen so that the nonzero weights equal
  the channel-pruned model's parameters, as float32 and int8 .tflite.

Every file is benchmarked with ``edgesmith bench --reference`` on LiteRT (XNNPACK, one
thread, batch 1): its timed runs alternate with the float32 file's in one process, so the
speedup is measured side by side. Writes ``table.md`` and ``results.json`` under ``--out``;
a step whose output exists is reused.

    EDGESMITH_HOME=/path/home .venv/bin/python benchmarks/structured_table.py \\
        --data-dir ../shared/data --out benchmarks/results/structured [--models cnn-mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

EDGESMITH = str(Path(sys.executable).with_name("edgesmith"))
# The channel-pruning recipe per model: the targets (40x smaller for cnn-mnist,
# so a parameter target; half the channels elsewhere).
RECIPES = {
    "cnn-mnist": "prune:structure=channels,target_params=40000",
    "dscnn-kws": "prune:structure=channels,sparsity=0.5",
    "lstm-kws": "prune:structure=channels,sparsity=0.5",
    "transformer-kws": "prune:structure=channels,sparsity=0.5",
    "transformer-sms": "prune:structure=channels,sparsity=0.5",
}
TARGETS = {  # (max accuracy loss in pt, min speedup, min size ratio) of the issue
    "cnn-mnist": (0.5, 3.0, 40.0),
    "dscnn-kws": (1.0, 2.0, None),
    "lstm-kws": (1.0, 1.5, None),
    "transformer-kws": (1.0, 1.5, None),
    "transformer-sms": (1.0, 1.5, None),
}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def edgesmith(*argv: str) -> None:
    log("$ edgesmith " + " ".join(argv))
    done = subprocess.run([EDGESMITH, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"edgesmith {' '.join(argv)} failed:\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("EDGESMITH_DATA"))
    parser.add_argument("--out", default="benchmarks/results/structured")
    parser.add_argument("--models", nargs="*", choices=list(RECIPES), help="default: all five")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per file")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("--data-dir (or EDGESMITH_DATA) must name the folder holding mnist/ ...")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    rows = json.loads(results_file.read_text()) if results_file.exists() else []
    started = time.perf_counter()
    for name in args.models or list(RECIPES):
        rows = [r for r in rows if r["model"] != name] + measure_model(name, out, args)
        results_file.write_text(json.dumps(rows, indent=1))
    (out / "table.md").write_text(table(rows, time.perf_counter() - started))
    log(f"done: {out / 'table.md'}")
    return 0


def measure_model(name: str, out: Path, args: argparse.Namespace) -> list[dict]:
    folder = out / name
    folder.mkdir(exist_ok=True)
    data = ["--data-dir", args.data_dir]
    evalset = folder / "test.npz"
    if not evalset.exists():
        edgesmith("zoo", "export-eval", name, *data, "--out", str(evalset))
    reference = convert(name, folder / "float32.tflite", "none", data)
    channels = compress(name, RECIPES[name], folder / "channels", data)
    card = json.loads((channels / "card.json").read_text())
    base_params = _params(name)
    sparsity = round(1.0 - card["params"] / base_params, 4)
    unstructured = compress(name, f"prune:sparsity={sparsity}", folder / "unstructured", data)
    variants = [("float32", reference, base_params)]
    for label, source, params in (
        ("channels", channels, card["params"]),
        ("unstructured", unstructured, base_params),
    ):
        for quant in ("none", "int8"):
            file = convert(str(source), folder / f"{label}-{quant}.tflite", quant, data)
            variants.append((f"{label} {'float32' if quant == 'none' else 'int8'}", file, params))
    rows = []
    for label, file, params in variants:
        record = bench(file, reference, evalset, args.runs)
        rows.append(
            {
                "model": name,
                "variant": label,
                "recipe": RECIPES[name]
                if label.startswith("channels")
                else (f"prune:sparsity={sparsity}" if label.startswith("unstructured") else ""),
                "params": params,
                "accuracy": record["accuracy"],
                "size_bytes": file.stat().st_size,
                "p50_ms": record["latency_ms"]["p50"],
                "speedup": (record.get("paired") or {}).get("speedup"),
                "cpu": record["environment"].get("cpu"),
            }
        )
    return rows


def _params(name: str) -> int:
    """The stored zoo model's parameter count (``EDGESMITH_HOME``, as the CLI reads it)."""
    home = Path(os.environ.get("EDGESMITH_HOME", Path.home() / ".cache" / "edgesmith"))
    return int(json.loads((home / "models" / name / "card.json").read_text())["params"])


def convert(source: str, out: Path, quant: str, data: list[str]) -> Path:
    if not out.exists():
        edgesmith(
            "convert", source, *data, "--format", "tflite", "--quant", quant, "--out", str(out)
        )
    return out


def compress(name: str, recipe: str, out: Path, data: list[str]) -> Path:
    if not (out / "card.json").exists():
        edgesmith("compress", name, *data, "--recipe", recipe, "--out", str(out))
    return out


def bench(file: Path, reference: Path, evalset: Path, runs: int) -> dict:
    record_file = file.with_suffix(".bench.json")
    if not record_file.exists():
        argv = ["bench", str(file), "--eval", str(evalset), "--backend", "litert"]
        argv += ["--threads", "1", "--runs", str(runs), "--json", str(record_file)]
        if file != reference:
            argv += ["--reference", str(reference)]
        edgesmith(*argv)
    record = json.loads(record_file.read_text())
    return record[0] if isinstance(record, list) else record


def table(rows: list[dict], wall_s: float) -> str:
    lines = [
        "# Structured against unstructured pruning (LiteRT, XNNPACK, 1 thread, batch 1)",
        "",
        "`benchmarks/structured_table.py`; speedup = the float32 file's p50 / this file's p50,"
        " timed in alternating blocks in one process (`edgesmith bench --reference`). "
        f"CPU: {rows[0]['cpu'] if rows else '?'}. Wall time of this invocation: "
        f"{wall_s / 60:.1f} min.",
        "",
        "| model | variant | recipe | params | accuracy | Δ pt | size | smaller | p50 ms |"
        " speedup | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == model]
        base = next(r for r in group if r["variant"] == "float32")
        loss, speed, smaller = TARGETS[model]
        for r in group:
            delta = round(100 * (r["accuracy"] - base["accuracy"]), 2)  # -0.5, not -0.50000001
            ratio = base["size_bytes"] / r["size_bytes"]
            verdict = ""
            if r["variant"].startswith("channels"):
                checks = [delta >= -loss, (r["speedup"] or 0) >= speed]
                checks += [ratio >= smaller] if smaller and "int8" in r["variant"] else []
                verdict = "met" if all(checks) else "missed"
            speedup = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
            lines.append(
                f"| {model} | {r['variant']} | {r['recipe'] or '-'} | {r['params']:,} | "
                f"{100 * r['accuracy']:.2f}% | {delta:+.2f} | {r['size_bytes']:,} | "
                f"{ratio:.1f}x | {r['p50_ms']:.4f} | {speedup} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
