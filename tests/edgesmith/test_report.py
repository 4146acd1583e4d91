"""The report renders fixed records: known Pareto front, deltas, files, and a real browser."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import pytest

from edgesmith.core.records import ResultRecord
from edgesmith.report import baseline_of, group_variants, model_table, pareto_front, write_report


def _rec(recipe, fmt, quant, size, acc, backend="litert", p50=1.0, **kw):
    return ResultRecord(
        model="cnn-digits", family="cnn", recipe=recipe, format=fmt, quant=quant,
        size_bytes=size, gzip_bytes=size // 2, accuracy=acc, backend=backend,
        latency_ms={"p50": p50}, **kw,
    )  # fmt: skip


RECORDS = [
    _rec("baseline", "tflite", "none", 40_000, 0.980, p50=2.0),
    _rec("baseline", "tflite", "int8", 10_000, 0.975, p50=1.0),
    _rec("prune", "tflite", "int8", 10_000, 0.970, p50=1.0),  # dominated by baseline int8
    _rec("distill", "tflite", "int8", 5_000, 0.950, p50=0.5),
    _rec("distill", "tflite", "none", 20_000, 0.960, p50=1.5),  # dominated by baseline int8
    _rec("baseline", "onnx", "none", 41_000, 0.980, backend="onnxruntime", p50=3.0),
    ResultRecord(
        model="cnn-digits",
        family="cnn",
        recipe="qat",
        format="tflite",
        quant="int8",
        backend="edgetpu",
        error="libedgetpu.so.1 not found",
    ),
]


def test_known_pareto_front_and_baseline():
    variants = group_variants(RECORDS)["cnn-digits"]
    assert baseline_of(variants).label == "baseline / tflite none"
    front = [(v.recipe, v.quant) for v in pareto_front(variants)]
    assert front == [("distill", "int8"), ("baseline", "int8"), ("baseline", "none")]


def test_model_table_is_sorted_by_size_with_ratios_and_speedups():
    variants = group_variants(RECORDS)["cnn-digits"]
    columns, rows = model_table(variants, ["litert"])
    assert columns[:6] == ["variant", "size", "gzip", "size ratio", "gzip ratio", "accuracy"]
    assert rows[0][0].startswith("distill / tflite int8") and rows[0][0].endswith("★")
    by_label = {row[0].split(" (")[0].rstrip(" ★"): row for row in rows}
    int8 = by_label["baseline / tflite int8"]
    assert int8[3] == "4.00x"  # 40,000 / 10,000 bytes
    assert int8[4] == "4.00x"  # gzip: 20,000 / 5,000 bytes
    assert int8[6] == "-0.50"  # 97.5% vs 98.0%
    assert int8[columns.index("litert speedup")] == "2.00x"  # 2.0 ms / 1.0 ms


def test_the_same_window_speedup_is_shown_where_the_bench_paired_it(tmp_path):
    # The separate float32 benchmark says 2.0 ms; measured side by side it was 3.0 ms.
    paired = {"reference": "model.tflite", "reference_latency_ms": {"p50": 3.0}, "speedup": 3.0}
    records = [RECORDS[0], _rec("baseline", "tflite", "int8", 10_000, 0.975, paired=paired)]
    records.append(_rec("distill", "tflite", "int8", 5_000, 0.950, p50=0.5))
    columns, rows = model_table(group_variants(records)["cnn-digits"], ["litert"])
    by_label = {row[0].split(" (")[0].rstrip(" ★"): row for row in rows}
    column = columns.index("litert speedup")
    assert by_label["baseline / tflite int8"][column] == "3.00x ⇆"  # not 2.0 / 1.0
    assert by_label["distill / tflite int8"][column] == "4.00x"  # unpaired: the old ratio
    markdown = write_report(records, tmp_path)["md"].read_text(encoding="utf-8")
    assert "⇆ marks a speedup measured side by side with float32" in markdown
    assert "3.00x ⇆" in markdown


def test_speedup_per_backend_uses_that_backends_float_baseline():
    variants = group_variants(RECORDS)["cnn-digits"]
    columns, rows = model_table(variants, ["litert", "onnxruntime"])
    onnx = next(row for row in rows if row[0].startswith("baseline / onnx none"))
    assert onnx[columns.index("onnxruntime speedup")] == "1.00x"


def test_write_report_files(tmp_path):
    paths = write_report(RECORDS, tmp_path)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [ResultRecord.from_dict(json.loads(line)) for line in lines] == RECORDS
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == len(RECORDS) and rows[0]["latency_p50_ms"] == "2.0"
    md = (tmp_path / "report.md").read_text()
    assert "## cnn-digits (cnn), float baseline accuracy 98.00%" in md
    assert "libedgetpu.so.1 not found" in md
    assert "edgetpu p50" not in md  # a backend that measured nothing gets no columns
    page = paths["html"].read_text()
    # the answers table and the model's table; two embedded plots (no profiles here)
    assert page.count("<table") == 2 and page.count("class='figure'") == 2
    assert "<img" not in page and not re.search(r"<script[^>]*\bsrc=", page)
    summary = json.loads(paths["summary"].read_text())
    smallest = next(r for r in summary["recommendations"] if r["goal"] == "smallest")
    # distill int8 loses 3 pt, prune int8 1 pt: baseline int8 (-0.5 pt) is the smallest in budget
    assert smallest["variant"] == "baseline / tflite int8"
    assert "smallest" in rows[1]["recommended_for"]
    assert not list(tmp_path.glob(".edgesmith-tmp*"))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_html_report_renders_in_headless_chromium(tmp_path):
    out = tmp_path / "report"
    page = write_report(RECORDS, out)["html"]
    profile = tmp_path / "profile"
    common = [CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr"]
    shot = out / "screenshot.png"
    dom = subprocess.run(
        [*common, "--dump-dom", "--virtual-time-budget=3000", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<table") == 2
    assert dom.stdout.count('class="main-svg"') >= 2  # both plots drawn, offline
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank image
