"""The report's uncertainty rules: paired accuracy tests and latency spreads, read from records.

Every rule here reads what the records carry: ``accuracy_ci`` (the Wilson interval each
record keeps), ``correct`` (which eval samples a file got right) and ``latency_ms``
(percentiles of the timed runs). Two accuracies are compared with McNemar's exact test on
the samples both files were scored on; where a record has no per-sample outcomes the
comparison falls back to whether the two Wilson intervals overlap, and says so.

Example:
    >>> from edgesmith.core.records import ResultRecord, pack_outcomes
    >>> base = ResultRecord(accuracy=0.9, samples=10, split="test",
    ...                     correct=pack_outcomes([1] * 9 + [0]))
    >>> small = ResultRecord(accuracy=0.8, samples=10, split="test",
    ...                      correct=pack_outcomes([1] * 8 + [0, 0]))
    >>> test = compare_accuracy(small, base)
    >>> test.method, test.significant, round(test.delta_pts, 1)
    ('McNemar', False, -10.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgesmith.core.records import ResultRecord, unpack_outcomes

# The significance level of every accuracy comparison in the report (two-sided).
ALPHA = 0.05


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on paired outcomes: discordant counts and the two-sided p-value."""

    only_a: int  # samples ``a`` got right and ``b`` wrong
    only_b: int  # samples ``b`` got right and ``a`` wrong
    p_value: float


def mcnemar(a: Sequence[bool] | Any, b: Sequence[bool] | Any) -> McNemar:
    """McNemar's exact test of two classifiers' right/wrong outcomes on the same samples.

    Only the samples where they disagree count: under "equally accurate" each disagreement
    is a fair coin, so the p-value is the exact two-sided binomial test of the split.

    Example:
        >>> result = mcnemar([1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0])
        >>> result.only_a, result.only_b, round(result.p_value, 4)
        (6, 0, 0.0312)
    """
    import numpy as np
    from scipy.stats import binomtest

    a = np.asarray(a, dtype=bool).reshape(-1)
    b = np.asarray(b, dtype=bool).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"outcomes of {a.size} and {b.size} samples: expected the same samples")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)
    return McNemar(only_a, only_b, min(1.0, p))


@dataclass(frozen=True)
class AccuracyComparison:
    """How a variant's accuracy compares with a reference's, and whether the data can tell."""

    delta_pts: float  # variant minus reference, percentage points
    method: str  # "McNemar" (paired, per sample) or "CI overlap" (no per-sample outcomes)
    significant: bool
    p_value: float | None = None
    only_variant: int | None = None  # samples only the variant got right
    only_reference: int | None = None

    @property
    def verdict(self) -> str:
        """``within noise``, ``better`` or ``worse``."""
        if not self.significant:
            return "within noise"
        return "better" if self.delta_pts > 0 else "worse"

    def describe(self) -> str:
        """A short cell: ``-0.74 pt, within noise (McNemar p=0.45)``."""
        if self.method == "McNemar":
            how = f"McNemar p={_p(self.p_value)}"
        else:
            how = "95% CIs overlap" if not self.significant else "95% CIs apart"
        return f"{self.delta_pts:+.2f} pt, {self.verdict} ({how})"


def outcomes(record: ResultRecord) -> Any:
    """The record's per-sample right/wrong array, or None when it carries none."""
    if not record.correct or not record.samples:
        return None
    try:
        return unpack_outcomes(record.correct, record.samples)
    except (ValueError, TypeError):
        return None


def compare_accuracy(
    variant: ResultRecord, reference: ResultRecord, *, alpha: float = ALPHA
) -> AccuracyComparison | None:
    """``variant``'s accuracy against ``reference``'s; None when either has no accuracy.

    Paired (McNemar) when both records carry per-sample outcomes of the same eval samples
    (same split and count); otherwise significant only when the 95% Wilson intervals are
    disjoint, which is the conservative reading of two unpaired intervals.
    """
    if variant.accuracy is None or reference.accuracy is None:
        return None
    delta = 100 * (variant.accuracy - reference.accuracy)
    a, b = outcomes(variant), outcomes(reference)
    same_samples = variant.samples == reference.samples and variant.split == reference.split
    if a is not None and b is not None and same_samples:
        test = mcnemar(a, b)
        return AccuracyComparison(
            delta, "McNemar", test.p_value < alpha, test.p_value, test.only_a, test.only_b
        )
    ci_a, ci_b = variant.accuracy_ci, reference.accuracy_ci
    apart = bool(ci_a and ci_b and (ci_a[0] > ci_b[1] or ci_b[0] > ci_a[1]))
    return AccuracyComparison(delta, "CI overlap", apart)


def latency_spread(record: ResultRecord) -> tuple[float, float] | None:
    """The p10-p90 spread of the record's timed runs (min-p90 for records without p10)."""
    latency = record.latency_ms or {}
    high = latency.get("p90")
    low = latency.get("p10", latency.get("min"))
    if low is None or high is None:
        return None
    return float(low), float(high)


def spread_label(record: ResultRecord) -> str:
    """What :func:`latency_spread` is for this record: ``p10-p90`` or ``min-p90``."""
    return "p10-p90" if "p10" in (record.latency_ms or {}) else "min-p90"


def latency_tie(a: ResultRecord, b: ResultRecord) -> bool:
    """Whether the two records' latency spreads overlap: the runs cannot tell them apart."""
    sa, sb = latency_spread(a), latency_spread(b)
    if sa is None or sb is None:
        return False
    return sa[0] <= sb[1] and sb[0] <= sa[1]


def latency_verdict(variant: ResultRecord, reference: ResultRecord) -> str:
    """``faster``, ``slower`` or ``within noise`` (overlapping spreads)."""
    p_v = (variant.latency_ms or {}).get("p50")
    p_r = (reference.latency_ms or {}).get("p50")
    if p_v is None or p_r is None:
        return "-"
    if latency_tie(variant, reference):
        return "within noise"
    return "faster" if p_v < p_r else "slower"


def format_ci(ci: Sequence[float] | None) -> str:
    """``[95.2, 99.0]`` in percent, or ``-``."""
    return "-" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def format_spread(record: ResultRecord) -> str:
    """``0.41-0.52`` (ms), or ``-``."""
    spread = latency_spread(record)
    return "-" if spread is None else f"{spread[0]:.3g}-{spread[1]:.3g}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}" if value < 0.01 else f"{value:.2f}"
