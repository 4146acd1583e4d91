"""Zoo models x backends: latency p50, accuracy and peak memory, as a Markdown table.

Runs ``edgesmith bench`` (one fresh process per file and backend) on every model file that
``benchmarks/make_models.py`` wrote, with the model's test split as the eval set:

    python benchmarks/zoo_table.py reports/bench-models --swiftshader --threads 1 --runs 200
    python benchmarks/zoo_table.py reports/bench-models --tflite-runtime-python /opt/pi-venv/bin/python

``--tflite-runtime-python`` names the Python of an environment with tflite-runtime (it needs
numpy<2, so it usually lives in its own venv with ``pip install --no-deps .``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_command import bench_command

BACKENDS = {".tflite": ("litert", "litert-gpu", "tflite-runtime"), ".onnx": ("onnxruntime",)}


def bench(python: str, path: Path, backend: str, npz: Path, args: argparse.Namespace) -> dict:
    command = bench_command(python, path, backend, args, eval_set=npz)
    done = subprocess.run(command, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.stdout.strip().startswith("{"):
        return json.loads(done.stdout)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return {"error": (lines or [done.stderr.strip()[-300:]])[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="folder written by make_models.py")
    parser.add_argument("--backends", nargs="+", help="subset of backends to run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--swiftshader", action="store_true", help="litert-gpu on SwiftShader")
    parser.add_argument("--tflite-runtime-python", help="Python of a tflite-runtime environment")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()

    rows = []
    for npz in sorted(args.folder.glob("*.npz")):
        name = npz.stem
        for path in sorted(args.folder.glob(f"{name}*")):
            if path.suffix not in BACKENDS or (
                path.stem != name and not path.stem.startswith(name + "-")
            ):
                continue
            for backend in BACKENDS[path.suffix]:
                if args.backends and backend not in args.backends:
                    continue
                python = sys.executable
                if backend == "tflite-runtime":
                    if not args.tflite_runtime_python:
                        continue
                    python = args.tflite_runtime_python
                record = bench(python, path, backend, npz, args)
                rows.append((name, path.name, backend, record))
                print(f"{path.name:34} {backend:15} {_cell(record, 'p50')}", file=sys.stderr)

    header = "| model | file | backend | p50 ms | accuracy | peak RSS MB | fully accel. | note |\n"
    header += "|---|---|---|---:|---:|---:|---|---|\n"
    body = "".join(
        f"| {name} | {file} | {backend} | {_cell(r, 'p50')} | {_cell(r, 'accuracy')} | "
        f"{_cell(r, 'peak')} | {_cell(r, 'accel')} | {_cell(r, 'note')} |\n"
        for name, file, backend, r in rows
    )
    table = header + body
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")


def _cell(record: dict, what: str) -> str:
    if record.get("error"):
        return "-" if what != "note" else record["error"].removeprefix("error: ")[:120]
    if what == "p50":
        return f"{record['latency_ms']['p50']:.4f}"
    if what == "accuracy":
        return f"{100 * record['accuracy']:.2f}%"
    if what == "peak":
        return f"{record['peak_rss_mb']:.0f}"
    if what == "accel":
        return {True: "yes", False: "no", None: "-"}[record.get("fully_accelerated")]
    runtime = record["environment"].get("runtime", {})
    return (
        "software Vulkan (SwiftShader): not GPU latency"
        if runtime.get("device_kind") == "software"
        else ""
    )


if __name__ == "__main__":
    main()
