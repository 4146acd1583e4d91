"""Accelerator compatibility is a field of the record: written by the runner, rendered by the
report (columns, not notes), read back from JSONL; the CSV carries the paired speedup."""

from __future__ import annotations

import csv
import io
import json

from edgesmith.core.records import ResultRecord
from edgesmith.plan_runner import _merge
from edgesmith.report import (
    failures_and_notes,
    group_variants,
    model_table,
    read_run,
    records_csv,
    render_markdown,
    write_report,
)
from edgesmith.report_model import (
    analysis_note,
    compatibility,
    measured_compatibility,
    offline_compatibility,
)

# What `edgesmith analyze` reports for a file whose 4th op does not map to the Edge TPU.
TPU_REPORT = {
    "target": "edgetpu", "op_count": 7, "mapped_op_fraction": 3 / 7, "mapped_mac_fraction": 0.4,
    "first_fallback_op": {"index": 3, "op": "TANH", "reason": "float32 tensor"},
    "parameter_bytes": 12_345, "parameter_cache_bytes": 8_000_000, "parameters_fit_cache": True,
}  # fmt: skip
GPU_REPORT = {"target": "gpu", "op_count": 5, "mapped_op_fraction": 1.0, "first_fallback_op": None}


def _rec(quant, p50, backend="litert", **kw):
    return ResultRecord(
        model="m", family="cnn", recipe="baseline", format="tflite", quant=quant,
        size_bytes=4000 if quant == "none" else 1000, accuracy=0.9, samples=200,
        backend=backend, latency_ms={"p10": 0.9 * p50, "p50": p50, "p90": 1.1 * p50}, **kw,
    )  # fmt: skip


def _analysed(quant, p50):
    """A file analysed offline for both accelerators, as the runner records it."""
    compat = {
        "edgetpu": offline_compatibility(TPU_REPORT),
        "gpu": offline_compatibility(GPU_REPORT),
    }
    return _rec(quant, p50, compatibility=compat, notes=[analysis_note(TPU_REPORT)])


def test_offline_entry_has_the_mapping_and_the_note_only_the_rest():
    entry = offline_compatibility(TPU_REPORT)
    assert entry["full"] is False and entry["source"] == "offline"
    assert (entry["mapped_ops"], entry["ops"], entry["macs_share"]) == (3, 7, 0.4)
    assert entry["first_fallback"] == {"index": 3, "op": "TANH", "reason": "float32 tensor"}
    assert offline_compatibility(GPU_REPORT)["full"] is True
    note = analysis_note(TPU_REPORT)
    assert "12,345 parameter bytes fit" in note and "ops map" not in note and "TANH" not in note
    assert analysis_note(GPU_REPORT) is None  # nothing beyond the column: no note


def test_the_field_round_trips_through_jsonl_and_old_lines_still_load(tmp_path):
    records = [_rec("none", 2.0), _analysed("int8", 1.0)]
    write_report(records, tmp_path)
    back = read_run(tmp_path)
    assert back == records
    assert back[1].compatibility["edgetpu"]["first_fallback"]["op"] == "TANH"
    # A line written before the field existed loads, with no compatibility.
    old = records[0].to_dict()
    del old["compatibility"]
    (tmp_path / "results.jsonl").write_text(json.dumps(old) + "\n")
    assert read_run(tmp_path)[0].compatibility == {}


def test_the_edge_tpu_column_comes_from_the_field_and_is_not_a_note():
    records = [_rec("none", 2.0), _analysed("int8", 1.0)]
    columns, rows = model_table(group_variants(records)["m"], ["litert"])
    int8 = next(row for row in rows if row[0].startswith("baseline / tflite int8"))
    assert int8[columns.index("Edge TPU")] == "43% (first CPU op #3 TANH)"
    assert int8[columns.index("GPU delegate")] == "100%"
    _, notes = failures_and_notes(records)
    assert len(notes) == 1 and "parameter bytes" in notes[0]  # the cache note, not the mapping
    markdown = render_markdown(records)
    assert "43% (first CPU op #3 TANH)" in markdown and "of 7 ops map" not in markdown


def test_a_measurement_wins_over_the_offline_analysis():
    # The runner merges a bench on the Edge TPU into the converted record.
    converted = _analysed("int8", 1.0).updated(backend=None, latency_ms=None)
    measured = _rec("int8", 0.2, backend="edgetpu", fully_accelerated=True)
    merged = _merge(converted, measured)
    assert merged.compatibility["edgetpu"] == measured_compatibility(True)
    assert merged.compatibility["gpu"]["source"] == "offline"  # the other target is kept
    variant = group_variants([merged])["m"][0]
    assert compatibility(variant, "edgetpu").cell == "100% (measured)"
    # A CPU bench says nothing about accelerators; a failed one does not count either.
    assert _merge(converted, _rec("int8", 1.0)).compatibility == converted.compatibility
    failed = measured.updated(error="the accelerator rejected its own GPU program")
    assert _merge(converted, failed).compatibility == converted.compatibility


def test_records_from_before_the_field_fall_back_to_their_notes_and_flags():
    note = (
        "offline edgetpu analysis: 3 of 7 ops map (40% of MACs); first fallback: op #3 TANH "
        "(float32 tensor); 12,345 parameter bytes fit the on-chip cache"
    )
    old = [_rec("int8", 1.0, notes=[note])]
    old.append(_rec("int8", 0.5, backend="litert-gpu", fully_accelerated=False))
    variant = group_variants(old[:1])["m"][0]
    assert compatibility(variant, "edgetpu").cell == "43% (first CPU op #3 TANH)"
    assert compatibility(variant, "edgetpu").macs_share == 0.4
    assert failures_and_notes(old[:1])[1] == []  # the old line is a column, not a note
    gpu = group_variants(old[1:])["m"][0]
    assert compatibility(gpu, "gpu").cell == "partial (measured)"
    # A record that has the field is not second-guessed from its notes.
    new = old[0].updated(compatibility={"gpu": offline_compatibility(GPU_REPORT)})
    assert compatibility(group_variants([new])["m"][0], "edgetpu").source == "none"


def test_csv_has_the_speedup_and_whether_it_was_measured_side_by_side():
    paired = {"reference": "model.tflite", "reference_latency_ms": {"p50": 3.0}, "speedup": 3.0}
    records = [
        _rec("none", 2.0),
        _rec("int8", 1.0, paired=paired),  # timed beside float32: 3.0 ms / 1.0 ms
        _rec("dynamic", 0.5),  # alone: the float32 benchmark's 2.0 ms / 0.5 ms
        _rec("int8", 4.0, backend="onnxruntime", error="it broke"),
    ]
    rows = list(csv.DictReader(io.StringIO(records_csv(records))))
    got = [(r["quant"], r["speedup_vs_baseline"], r["speedup_same_window"]) for r in rows]
    assert got == [
        ("none", "1.0", "False"),
        ("int8", "3.0", "True"),
        ("dynamic", "4.0", "False"),
        ("int8", "", ""),  # failed: no speedup
    ]
    assert rows[1]["latency_p50_ms"] == "1.0"  # the existing columns are still there
