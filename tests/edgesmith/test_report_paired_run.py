"""``edgesmith run`` times each quantized file beside its float32 file; the report shows it."""

from __future__ import annotations

import csv

import pytest

from edgesmith.plan import Plan
from edgesmith.plan_runner import run_plan

PLAN = {
    "models": ["cnn-digits"],
    "targets": ["tflite:int8", "onnx:none"],  # the float32 .tflite is converted to pair with
    "backends": ["litert", "onnxruntime"],
    "bench": {"runs": 5, "warmup": 1},
    "parity_samples": 20,
    "calibration_samples": 20,
}


@pytest.mark.slow
def test_run_pairs_each_variant_with_the_float_file_of_its_format(tiny_store, tmp_path):
    summary = run_plan(Plan.from_dict(PLAN), out=tmp_path, store=tiny_store)
    int8 = next(r for r in summary.records if r.format == "tflite")
    assert int8.error is None and int8.paired is not None
    assert int8.paired["reference"] == "model.tflite" and int8.paired["speedup"] > 0
    onnx = next(r for r in summary.records if r.format == "onnx")
    assert onnx.error is None and onnx.paired is None  # the float32 .onnx is the reference
    assert "x ⇆" in (tmp_path / "report.md").read_text(encoding="utf-8")  # a paired cell
    rows = list(csv.DictReader((tmp_path / "results.csv").open(encoding="utf-8")))
    row = next(r for r in rows if r["format"] == "tflite" and r["quant"] == "int8")
    assert row["speedup_same_window"] == "True"
    assert float(row["speedup_vs_baseline"]) == pytest.approx(int8.paired["speedup"])
    # Unpaired, the int8 bench has its own key (the onnx one keeps its key: measured alone).
    unpaired = run_plan(
        Plan.from_dict({**PLAN, "bench": {**PLAN["bench"], "paired": False}}),
        out=tmp_path,
        store=tiny_store,
    )
    assert unpaired.computed == {"bench": 1}
    assert all(r.paired is None for r in unpaired.records)
    assert "x ⇆" not in (tmp_path / "report.md").read_text(encoding="utf-8")
