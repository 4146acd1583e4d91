"""Convert every zoo model in every format x quant mode on the real data and print the table.

Accuracy (converted file, test split), Keras accuracy, size, deflated size, the size ratio
against the same format's float32 file, and parity (max |diff|, mean |diff|, top-1
agreement) per conversion, as Markdown. Missing zoo models are trained first.

    EDGESMITH_DATA=../shared/data .venv/bin/python benchmarks/convert_table.py \\
        --store /tmp/conv-store --out-dir /tmp/convert-table --report convert-table.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgesmith.core.tables import FORMAT_QUANT

MODES = [(fmt, quant) for fmt, modes in FORMAT_QUANT.items() for quant in modes]
COLUMNS = [
    "model",
    "format",
    "quant",
    "accuracy",
    "keras",
    "Δ pt",
    "bytes",
    "gzip bytes",
    "x smaller",
    "max |diff|",
    "mean |diff|",
    "top-1 agree",
    "parity",
    "how",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="model store (default: the user's store)")
    parser.add_argument("--data-dir", help="data folder (default: $EDGESMITH_DATA)")
    parser.add_argument("--models", nargs="*", help="zoo models (default: all)")
    parser.add_argument("--modes", nargs="*", help="format/quant pairs such as tflite/int8")
    parser.add_argument("--out-dir", default="convert-table", help="where files and records go")
    parser.add_argument("--report", help="also write the Markdown table to this file")
    args = parser.parse_args(argv)

    from edgesmith.console import err, markdown_table
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.convert.converter import convert_model
    from edgesmith.convert.parity import ParityError
    from edgesmith.core.errors import EdgesmithError
    from edgesmith.zoo.registry import model_names
    from edgesmith.zoo.store import ModelStore
    from edgesmith.zoo.train import train_zoo_model

    store = ModelStore(args.store)
    modes = [tuple(m.split("/")) for m in args.modes] if args.modes else MODES
    out_dir = Path(args.out_dir)
    rows = []
    for name in args.models or model_names():
        if not store.has(name):
            err.print(f"{name}: not in {store.root}, training it first")
            train_zoo_model(name, data_dir=args.data_dir, store=store)
        float_bytes: dict[str, int] = {}
        for fmt, quant in modes:
            out = out_dir / f"{name}-{quant}.{fmt}"
            started = time.perf_counter()
            try:
                convert_model(
                    name,
                    out=out,
                    config=ConversionConfig(format=fmt, quant=quant),
                    store=store,
                    data_dir=args.data_dir,
                )
            except ParityError:
                pass  # the record is written with the failure; the row shows it
            except EdgesmithError as exc:
                rows.append([name, fmt, quant, *["-"] * 9, f"error: {exc}"[:120], ""])
                err.print(f"{name} {fmt}/{quant}: {exc}")
                continue
            record = json.loads((out.parent / f"{out.name}.json").read_text())
            if quant == "none":
                float_bytes[fmt] = record["size_bytes"]
            rows.append(_row(record, float_bytes.get(fmt)))
            err.print(f"{name} {fmt}/{quant}: {time.perf_counter() - started:.0f} s")
    table = markdown_table(COLUMNS, rows)
    print(table)
    if args.report:
        from edgesmith.core.fileio import write_text

        header = (
            "# edgesmith convert: every zoo model x format x quant mode\n\n"
            "Accuracy on each model's test split; parity against the Keras model on the "
            "same samples; `x smaller` against the same format's float32 file.\n\n"
        )
        write_text(args.report, header + table)
    return 0


def _row(record: dict, float_bytes: int | None) -> list:
    parity = record["parity"] or {}
    keras_acc = record["reference"]["accuracy"]
    acc = record["accuracy"]
    delta = None if acc is None or keras_acc is None else f"{100 * (acc - keras_acc):+.1f}"
    ratio = f"{float_bytes / record['size_bytes']:.2f}" if float_bytes else None
    how = record["strategy"].get("lstm") or record["strategy"].get("token_ids") or ""
    return [
        record["model"],
        record["format"],
        record["quant"],
        None if acc is None else f"{100 * acc:.2f}%",
        None if keras_acc is None else f"{100 * keras_acc:.2f}%",
        delta,
        f"{record['size_bytes']:,}",
        f"{record['gzip_bytes']:,}",
        ratio,
        f"{parity.get('max_abs_diff', 0):.3g}",
        f"{parity.get('mean_abs_diff', 0):.2g}",
        f"{100 * parity.get('top1_agreement', 0):.1f}%",
        "ok" if parity.get("ok") else "FAIL",
        how.split(" (")[0],
    ]


if __name__ == "__main__":
    sys.exit(main())
