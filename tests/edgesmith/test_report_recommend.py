"""Recommendations on hand-built records: the budget, noise, accelerators, per backend."""

from __future__ import annotations

import numpy as np

from edgesmith.core.records import ResultRecord, pack_outcomes
from edgesmith.report_recommend import recommend, recommended_for

N = 400


def _rec(recipe, quant, size, hits, backend="litert", p50=1.0, spread=0.05, **kw):
    correct = np.zeros(N, bool)
    correct[hits] = True
    return ResultRecord(
        model="m", family="cnn", recipe=recipe, format="tflite", quant=quant, size_bytes=size,
        accuracy=float(correct.mean()), samples=N, split="test", correct=pack_outcomes(correct),
        backend=backend, environment={"cpu": "Test CPU", "cpu_features": ["avx2"]},
        latency_ms={"p10": p50 - spread, "p50": p50, "p90": p50 + spread}, **kw,
    )  # fmt: skip


BASE = np.arange(392)  # 98.0%


def _goal(recs, goal, backend=None):
    return next(r for r in recs if r.goal == goal and (backend is None or r.backend == backend))


def test_smaller_variant_within_noise_is_recommended():
    records = [
        _rec("baseline", "none", 40_000, BASE, p50=2.0),
        # 2 samples lost, 1 gained: -0.25 pt, McNemar p=1
        _rec("baseline", "int8", 10_000, np.r_[np.arange(390), 395], p50=1.0),
    ]
    smallest = _goal(recommend(records, budget=1.0), "smallest")
    assert smallest.variant == "baseline / tflite int8"
    assert "within noise" in smallest.why and "4.00x smaller" in smallest.why
    assert smallest.accuracy_ci[0] < smallest.accuracy < smallest.accuracy_ci[1]


def test_significantly_worse_smaller_variant_is_passed_over_and_marked():
    records = [
        _rec("baseline", "none", 40_000, BASE, p50=2.0),
        _rec("prune", "int8", 5_000, np.arange(380), p50=0.9),  # -3 pt, 12 lost: significant
        _rec("baseline", "int8", 10_000, np.arange(389), p50=1.0),  # -0.75 pt, 3 lost: p=0.25
    ]
    recs = recommend(records, budget=1.0)
    smallest = _goal(recs, "smallest")
    assert smallest.variant == "baseline / tflite int8"
    # With a budget that takes the pruned file, its real loss is said, not hidden.
    loose = _goal(recommend(records, budget=5.0), "smallest")
    assert loose.variant == "prune / tflite int8" and "worse (McNemar p=" in loose.why
    # A budget of 0 keeps only files that lose nothing.
    assert _goal(recommend(records, budget=0.0), "smallest").variant == "baseline / tflite none"


def test_fastest_per_backend_names_ties_and_the_cpu():
    records = [
        _rec("baseline", "none", 40_000, BASE, p50=2.0),
        _rec("baseline", "int8", 10_000, BASE, p50=1.0, spread=0.1),
        _rec("baseline", "fp16", 20_000, BASE, p50=1.05, spread=0.1),  # overlaps int8
        _rec("baseline", "none", 40_000, BASE, backend="xnn", p50=3.0),
    ]
    recs = recommend(records)
    litert = _goal(recs, "fastest", "litert")
    assert litert.variant == "baseline / tflite int8" and litert.latency_ms == 1.0
    assert "cannot be told apart from baseline / tflite fp16" in litert.why
    assert "Test CPU" in litert.why and "2.00x" in litert.why
    assert _goal(recs, "fastest", "xnn").variant == "baseline / tflite none"
    # The CSV/JSONL tag: only the int8 litert record is "fastest".
    tagged = [r for r in records if "fastest" in recommended_for(r, recs)]
    assert {(r.quant, r.backend) for r in tagged} == {("int8", "litert"), ("none", "xnn")}


def test_accelerator_goals_from_measurements_and_offline_notes():
    tpu_note = "offline edgetpu analysis: 7 of 7 ops map (100% of MACs)"
    part_note = (
        "offline edgetpu analysis: 3 of 7 ops map (40% of MACs); first fallback: "
        "op #3 TANH (float32 tensor)"
    )
    records = [
        _rec("baseline", "none", 40_000, BASE, notes=[part_note]),
        _rec("baseline", "int8", 10_000, np.arange(391), notes=[tpu_note]),
        _rec("qat", "int8", 10_500, BASE, notes=[tpu_note]),
        _rec("baseline", "int8", 10_000, np.arange(391), backend="litert-gpu", p50=0.3,
             fully_accelerated=True),
    ]  # fmt: skip
    recs = recommend(records)
    tpu = _goal(recs, "edgetpu")
    # 391 vs 392 correct: within noise, so the smaller fully mapped file wins.
    assert tpu.variant == "baseline / tflite int8"
    assert "within noise of qat / tflite int8" in tpu.why
    gpu = _goal(recs, "gpu")
    assert gpu.variant == "baseline / tflite int8" and gpu.latency_ms == 0.3
    only_partial = recommend(records[:1])
    assert _goal(only_partial, "edgetpu").variant is None
    assert "#3 TANH" in _goal(only_partial, "edgetpu").why
    assert "add litert-gpu" in _goal(only_partial, "gpu").why
