"""``edgesmith run`` end to end on tiny models: records, cache, resume after SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgesmith.plan import Plan
from edgesmith.plan_runner import records_from_jsonl, run_plan

PLAN = {
    "models": ["cnn-digits"],
    "recipes": {"prune50": "prune:sparsity=0.5,epochs=1"},
    "targets": ["tflite:none", "tflite:int8", "onnx:none"],
    "backends": ["litert", "onnxruntime"],
    "bench": {"runs": 5, "warmup": 1},
    "parity_samples": 50,
    "calibration_samples": 50,
}
# Measurements that differ from run to run by nature; everything else must match.
VOLATILE = {
    "latency_ms",
    "throughput_per_s",
    "peak_rss_mb",
    "environment",
    "seconds",
    "created",
    "reference_latency_ms",
    "speedup",
}


def _without_volatile(value):
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def _stable(records, out: Path):
    """Records without run-to-run measurements, with paths relative to the run folder."""
    rows = [_without_volatile(r.to_dict()) for r in records]
    return json.loads(json.dumps(rows).replace(str(out), "OUT"))


@pytest.fixture(scope="module")
def first_run(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, run_plan(Plan.from_dict(PLAN), out=out, store=tiny_store)


def test_every_variant_is_measured_with_the_float_baseline(first_run):
    out, summary = first_run
    assert summary.failed == 0, [r.error for r in summary.records if r.error]
    # 2 recipes (baseline + prune50) x (2 tflite targets on litert + 1 onnx on onnxruntime)
    assert len(summary.records) == 6
    pairs = {(r.recipe, r.format, r.quant, r.backend) for r in summary.records}
    assert ("baseline", "tflite", "none", "litert") in pairs
    assert ("prune50", "onnx", "none", "onnxruntime") in pairs
    for record in summary.records:
        assert record.size_bytes > 0 and record.latency_ms["p50"] > 0
        assert 0 <= record.accuracy <= 1 and record.samples == 270
    pruned = [r for r in summary.records if r.recipe == "prune50"]
    assert all(abs(r.sparsity - 0.5) < 0.01 for r in pruned)
    for name in ("results.jsonl", "results.csv", "report.md", "index.html", "plan.json"):
        assert (out / name).is_file()
    assert _stable(records_from_jsonl(out / "results.jsonl"), out) == _stable(summary.records, out)


def test_second_run_computes_nothing(first_run, tiny_store):
    out, summary = first_run
    again = run_plan(Plan.from_dict(PLAN), out=out, store=tiny_store)
    assert again.computed == {}
    assert _stable(again.records, out) == _stable(summary.records, out)


def test_changing_one_recipe_recomputes_only_its_dependents(first_run, tiny_store):
    out, _ = first_run
    plan = {**PLAN, "recipes": {"prune50": "prune:sparsity=0.6,epochs=1"}}
    summary = run_plan(Plan.from_dict(plan), out=out, store=tiny_store)
    # the baseline's conversions and benchmarks are reused; the recipe's are rebuilt
    assert summary.computed == {"compress": 1, "evalset": 1, "convert": 3, "bench": 3}


def test_a_missing_accelerator_is_a_note_with_the_offline_analysis(
    first_run, tiny_store, monkeypatch
):
    import edgesmith.plan_runner as plan_runner

    out, _ = first_run
    # Whether this machine has a Coral or not, the test sees one that has none.
    real = plan_runner._unavailable
    monkeypatch.setattr(
        plan_runner,
        "_unavailable",
        lambda backend: "libedgetpu.so.1 was not found" if backend == "edgetpu" else real(backend),
    )
    plan = {**PLAN, "recipes": {}, "targets": ["tflite:int8"], "backends": ["litert", "edgetpu"]}
    summary = run_plan(Plan.from_dict(plan), out=out, store=tiny_store)
    assert summary.failed == 0  # an absent backend is not a failed variant
    assert summary.computed == {"analyze": 1}  # the int8 file itself came from the cache
    tpu = next(r for r in summary.records if r.backend == "edgetpu")
    assert tpu.latency_ms is None and tpu.error is None
    assert any("edgetpu not available here: libedgetpu.so.1" in n for n in tpu.notes)
    analysis = next(n for n in tpu.notes if n.startswith("offline edgetpu analysis"))
    assert "parameter bytes" in analysis and " ops map" not in analysis  # mapping: a column
    entry = tpu.compatibility["edgetpu"]
    assert entry["source"] == "offline" and entry["ops"] > 0 and entry["mapped_ops"] is not None
    report = (out / "report.md").read_text()
    assert "## Notes" in report and "offline edgetpu analysis" in report
    assert "edgetpu p50" not in report  # nothing measured there, so no column


def test_killed_run_resumes_to_the_same_records(first_run, tiny_store, tmp_path):
    reference_out, reference = first_run
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLAN))
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "edgesmith", "run", "--plan", str(plan_file)]
    args += ["--out", str(out), "--store", str(tiny_store)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    # Kill as soon as the first conversion is done, in the middle of the run.
    while time.monotonic() < deadline and not list((out / "stages").glob("convert/*/.done")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.jsonl").exists(), "the run finished before it was killed"
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "computed this run" in result.stderr
    assert not list(out.rglob(".edgesmith-tmp*"))
    resumed = records_from_jsonl(out / "results.jsonl")
    assert _stable(resumed, out) == _stable(reference.records, reference_out)
