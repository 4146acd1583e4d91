"""The report's statistics against SciPy's reference implementations and known cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from edgesmith.core.records import ResultRecord, pack_outcomes, unpack_outcomes, wilson_interval
from edgesmith.report_stats import (
    compare_accuracy,
    latency_spread,
    latency_tie,
    latency_verdict,
    mcnemar,
)


@pytest.mark.parametrize("hits, n", [(264, 270), (0, 10), (10, 10), (1, 3), (500, 1000)])
def test_wilson_matches_scipy(hits, n):
    ours = wilson_interval(hits, n)
    ref = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert ours == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_record_keeps_its_interval_in_step_with_its_accuracy():
    rec = ResultRecord(accuracy=264 / 270, samples=270)
    assert rec.accuracy_ci == pytest.approx([0.952374, 0.989776], abs=1e-6)
    later = rec.updated(accuracy=0.5)  # a later stage's measurement replaces the number
    assert later.accuracy_ci[0] < 0.5 < later.accuracy_ci[1]
    assert ResultRecord(accuracy=0.9).accuracy_ci is None  # no sample count, no interval
    assert ResultRecord.from_dict(rec.to_dict()) == rec


def test_outcomes_round_trip():
    hits = np.random.default_rng(0).random(1001) > 0.3
    assert (unpack_outcomes(pack_outcomes(hits), 1001) == hits).all()
    with pytest.raises(ValueError):
        unpack_outcomes(pack_outcomes(hits[:8]), 20)


def test_mcnemar_is_the_exact_binomial_test_of_the_disagreements():
    rng = np.random.default_rng(1)
    a = rng.random(300) > 0.1
    b = a.copy()
    flip = rng.choice(300, 25, replace=False)
    b[flip] = ~b[flip]
    result = mcnemar(a, b)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    assert (result.only_a, result.only_b) == (only_a, only_b)
    assert result.p_value == pytest.approx(binomtest(only_a, only_a + only_b).pvalue)
    # Known case: 10 disagreements all one way, p = 2 / 2**10.
    known = mcnemar([True] * 10 + [False] * 90, [False] * 100)
    assert known.p_value == pytest.approx(2 / 1024)
    assert mcnemar([True, False], [True, False]).p_value == 1.0


def _scored(acc_hits, n=270, **kw):
    hits = np.zeros(n, bool)
    hits[acc_hits] = True
    return ResultRecord(
        accuracy=float(hits.mean()), samples=n, split="test", correct=pack_outcomes(hits), **kw
    )


def test_paired_comparison_separates_noise_from_a_real_drop():
    base = _scored(np.arange(266))  # 266 / 270
    noisy = _scored(np.r_[np.arange(263), 268, 269])  # 3 lost, 2 gained: -0.37 pt
    worse = _scored(np.arange(250))  # 16 lost, none gained: -5.9 pt
    test = compare_accuracy(noisy, base)
    assert test.method == "McNemar" and not test.significant and test.verdict == "within noise"
    assert test.delta_pts == pytest.approx(-100 / 270)
    bad = compare_accuracy(worse, base)
    assert bad.significant and bad.verdict == "worse" and bad.p_value < 0.001
    # Without per-sample outcomes: the Wilson intervals decide, and say so.
    unpaired = compare_accuracy(noisy.updated(correct=None), base)
    assert unpaired.method == "CI overlap" and not unpaired.significant
    # Different test sets are never paired.
    assert compare_accuracy(noisy.updated(split="val"), base).method == "CI overlap"


def test_latency_spreads_decide_ties():
    def rec(p10, p50, p90):
        return ResultRecord(latency_ms={"p10": p10, "p50": p50, "p90": p90, "min": p10 / 2})

    a, b, c = rec(1.0, 1.1, 1.3), rec(1.2, 1.25, 1.4), rec(2.0, 2.1, 2.2)
    assert latency_spread(a) == (1.0, 1.3)
    assert latency_tie(a, b) and not latency_tie(a, c)
    assert latency_verdict(b, a) == "within noise" and latency_verdict(a, c) == "faster"
    old = ResultRecord(latency_ms={"min": 0.5, "p50": 1.0, "p90": 1.5})  # before p10 existed
    assert latency_spread(old) == (0.5, 1.5)
