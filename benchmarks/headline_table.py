"""The headline table of a run: per model the float accuracy, per variant accuracy and ratios.

Reads ``results.jsonl`` of an ``edgesmith run`` (``make demo-real`` writes
``reports/demo-real/results.jsonl``) and prints one Markdown table with the columns of the
report that matter most: accuracy, size ratio and gzip ratio against the float32 .tflite,
and the p50 latency speedup on each backend. Every number comes from the report's own
tables (nothing is recomputed here).

Usage:
    python benchmarks/headline_table.py reports/demo-real/results.jsonl
"""

from __future__ import annotations

import argparse

from edgesmith.console import markdown_table
from edgesmith.plan_runner import records_from_jsonl
from edgesmith.report import backends_in, baseline_of, cpus_by_device, group_variants, model_table

KEEP = ("accuracy", "Δ acc (pts)", "size ratio", "gzip ratio", "sparsity")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results.jsonl of an edgesmith run")
    args = parser.parse_args(argv)

    records = records_from_jsonl(args.results)
    backends = backends_in(records)
    speedups = [f"{backend} speedup" for backend in backends]
    header = ["model (float acc)", "variant", *KEEP, *speedups]
    rows = []
    for model, variants in group_variants(records).items():
        base = baseline_of(variants)
        float_acc = f"{100 * base.accuracy:.2f}%" if base and base.accuracy is not None else "-"
        columns, table = model_table(variants, backends)
        for row in table:
            cells = dict(zip(columns, row, strict=True))
            rows.append(
                [f"{model} ({float_acc})", cells["variant"]]
                + [cells[c] for c in (*KEEP, *speedups)]
            )
    for device, cpu in cpus_by_device(records).items():
        # A speedup printed without the CPU it was measured on misleads: int8 kernels differ.
        print(f"Latency measured on {device}: {cpu}\n")
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
