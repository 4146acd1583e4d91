"""Answer first: per model, which file to ship for each goal, with its numbers and why.

Goals (``GOALS``): the smallest file within the accuracy budget; the fastest on each
backend and device within the budget; the best file that maps fully to the Edge TPU; the
best file for the GPU delegate. "Within the budget" means losing at most ``budget``
percentage points of accuracy against the float baseline (the plan's ``budget``, 1 by
default). Where the data cannot tell two candidates apart (McNemar on the same samples
for accuracy, overlapping p10-p90 for latency) the reason says so instead of calling one
better, and an accuracy tie goes to the smaller file.

Example:
    >>> from edgesmith.core.records import ResultRecord
    >>> recs = [ResultRecord(model="m", family="cnn", recipe="baseline", format="tflite",
    ...                      quant=q, size_bytes=s, accuracy=0.9, samples=200)
    ...         for q, s in (("none", 400), ("int8", 100))]
    >>> [(r.goal, r.variant) for r in recommend(recs)]
    [('smallest', 'baseline / tflite int8'), ('edgetpu', None), ('gpu', None)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgesmith.core.formatting import format_bytes, format_pct
from edgesmith.core.records import ResultRecord
from edgesmith.report_model import (
    Variant,
    baseline_latency,
    baseline_of,
    compatibility,
    device_name,
    group_variants,
    speedup,
)
from edgesmith.report_stats import compare_accuracy, format_ci, latency_spread, latency_tie

GOALS = ("smallest", "fastest", "edgetpu", "gpu")
DEFAULT_BUDGET = 1.0  # accuracy points a variant may lose against the float baseline


@dataclass(frozen=True)
class Recommendation:
    """One answer: the variant to ship for ``goal`` (None: no variant qualifies, ``why`` says)."""

    model: str
    goal: str
    title: str
    variant: str | None
    why: str
    accuracy: float | None = None
    accuracy_ci: list[float] | None = None
    size_bytes: int | None = None
    latency_ms: float | None = None
    backend: str | None = None
    device: str | None = None
    file: str | None = None
    # The variant's identity, so rows of the CSV and JSONL can say what they are picked for.
    recipe: str | None = None
    format: str | None = None
    quant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, record: ResultRecord) -> bool:
        """Whether ``record`` is (a backend's measurement of) the recommended file."""
        if self.variant is None or record.model != self.model:
            return False
        same = (record.recipe, record.format, record.quant) == (
            self.recipe,
            self.format,
            self.quant,
        )
        if not same or (self.device and device_name(record) != self.device):
            return False
        return self.goal != "fastest" or record.backend == self.backend


def recommend(
    records: Sequence[ResultRecord], budget: float = DEFAULT_BUDGET
) -> list[Recommendation]:
    """The recommendations for every model in ``records``, model by model, goal by goal."""
    out: list[Recommendation] = []
    for model, variants in group_variants(records).items():
        out += _for_model(model, variants, budget)
    return out


def recommended_for(record: ResultRecord, recommendations: Sequence[Recommendation]) -> list[str]:
    """The goals ``record``'s file is recommended for (``fastest`` only on its own backend)."""
    return [r.goal for r in recommendations if r.matches(record)]


class _Judge:
    """The budget and the noise rules for one model's variants."""

    def __init__(self, variants: Sequence[Variant], budget: float) -> None:
        self.budget = budget
        self.base = baseline_of(variants)
        self.base_record = self.base.scored if self.base else None

    def drop(self, v: Variant) -> float | None:
        if self.base is None or self.base.accuracy is None or v.accuracy is None:
            return None
        return 100 * (self.base.accuracy - v.accuracy)

    def within(self, v: Variant) -> bool:
        drop = self.drop(v)
        return drop is not None and drop <= self.budget + 1e-9

    def vs_base(self, v: Variant) -> str:
        if v is self.base or self.base_record is None or v.scored is None:
            return "the float baseline itself" if v is self.base else "no baseline to compare"
        test = compare_accuracy(v.scored, self.base_record)
        return "no accuracy" if test is None else f"{test.describe()} vs the float baseline"

    def accuracy_text(self, v: Variant) -> str:
        scored = v.scored
        ci = format_ci(scored.accuracy_ci if scored else None)
        return f"accuracy {format_pct(v.accuracy)} (95% CI {ci})"


def _for_model(model: str, variants: Sequence[Variant], budget: float) -> list[Recommendation]:
    judge = _Judge(variants, budget)
    files = _unique_files(variants)
    recs = [_smallest(model, files, judge)]
    recs += _fastest(model, variants, judge)
    recs.append(_accelerated(model, files, judge, "edgetpu"))
    recs.append(_accelerated(model, files, judge, "gpu", variants))
    return recs


def _unique_files(variants: Sequence[Variant]) -> list[Variant]:
    """One variant per file (size and accuracy do not depend on the device)."""
    seen: dict[tuple[str, str, str], Variant] = {}
    for v in variants:
        if v.size_bytes:
            seen.setdefault((v.recipe, v.format, v.quant), v)
    return list(seen.values())


def _pick(
    model: str,
    goal: str,
    title: str,
    v: Variant,
    why: str,
    record: ResultRecord | None = None,
) -> Recommendation:
    measured = record or next((r for r in v.records if r.latency_ms and r.error is None), None)
    scored = v.scored
    return Recommendation(
        model=model,
        goal=goal,
        title=title,
        variant=v.label,
        why=why,
        accuracy=v.accuracy,
        accuracy_ci=scored.accuracy_ci if scored else None,
        size_bytes=v.size_bytes,
        latency_ms=(measured.latency_ms or {}).get("p50") if measured else None,
        backend=measured.backend if measured else None,
        device=v.device,
        file=v.first("file"),
        recipe=v.recipe,
        format=v.format,
        quant=v.quant,
    )


def _none(model: str, goal: str, title: str, why: str, **extra: Any) -> Recommendation:
    return Recommendation(model=model, goal=goal, title=title, variant=None, why=why, **extra)


def _budget_text(judge: _Judge) -> str:
    return f"within the {judge.budget:g} pt budget"


def _smallest(model: str, files: Sequence[Variant], judge: _Judge) -> Recommendation:
    title = "smallest within budget"
    if judge.base is None or judge.base.accuracy is None:
        return _none(model, "smallest", title, "no float baseline with an accuracy to hold to")
    within = [v for v in files if judge.within(v)]
    if not within:
        return _none(model, "smallest", title, f"no file is {_budget_text(judge)}")
    best = min(within, key=lambda v: (v.size_bytes, -(v.accuracy or 0)))
    ratio = judge.base.size_bytes / best.size_bytes if judge.base.size_bytes else None
    size = format_bytes(best.size_bytes) + (f", {ratio:.2f}x smaller" if ratio else "")
    why = f"{size}; {judge.accuracy_text(best)}, {judge.vs_base(best)}; {_budget_text(judge)}"
    return _pick(model, "smallest", title, best, why)


def _fastest(model: str, variants: Sequence[Variant], judge: _Judge) -> list[Recommendation]:
    """The fastest file within budget on each backend and device that measured one."""
    slots: dict[tuple[str, str], list[tuple[Variant, ResultRecord]]] = {}
    for v in variants:
        for r in v.records:
            if r.backend and r.latency_ms and r.error is None and r.latency_ms.get("p50"):
                slots.setdefault((r.backend, v.device), []).append((v, r))
    out = []
    for (backend, device), entries in slots.items():
        title = f"fastest on {backend} ({device}) within budget"
        within = [(v, r) for v, r in entries if judge.within(v)]
        if not within:
            why = f"no file measured on {backend} is {_budget_text(judge)}"
            out.append(_none(model, "fastest", title, why, backend=backend, device=device))
            continue
        best, rec = min(within, key=lambda e: (e[1].latency_ms["p50"], e[0].size_bytes or 0))
        spread = latency_spread(rec)
        p50 = rec.latency_ms["p50"]
        text = f"p50 {p50:.3g} ms"
        if spread:
            text += f" (p10-p90 {spread[0]:.3g}-{spread[1]:.3g})"
        same_device = [v for v in variants if v.device == device]
        base_p50 = baseline_latency(same_device, backend)
        ratio, same_window = speedup(rec, base_p50)
        if ratio and best is not judge.base:
            text += f", {ratio:.2f}x the float baseline's speed"
            text += " (timed side by side)" if same_window else ""
        cpu = (rec.environment or {}).get("cpu")
        if cpu:
            text += f" on {cpu}"
        ties = [v.label for v, r in within if r is not rec and latency_tie(r, rec)]
        if ties:
            text += f"; cannot be told apart from {', '.join(ties[:3])}"
            text += f"{' and more' if len(ties) > 3 else ''} (overlapping spreads)"
        why = f"{text}; {judge.accuracy_text(best)}, {_budget_text(judge)}"
        out.append(_pick(model, "fastest", title, best, why, rec))
    return out


_TITLES = {"edgetpu": "best fully Edge TPU-mappable", "gpu": "best for the GPU delegate"}
_ADD = {"edgetpu": "edgetpu", "gpu": "litert-gpu"}


def _accelerated(
    model: str,
    files: Sequence[Variant],
    judge: _Judge,
    target: str,
    variants: Sequence[Variant] = (),
) -> Recommendation:
    """The best file an accelerator runs whole: the fastest measured there, else the most
    accurate (an accuracy tie going to the smaller file)."""
    title = _TITLES[target]
    compat = {id(v): compatibility(v, target) for v in files}
    known = [v for v in files if compat[id(v)].source != "none"]
    if not known:
        why = f"no measurement or offline analysis: add {_ADD[target]} to the plan's backends"
        return _none(model, target, title, why)
    full = [v for v in known if compat[id(v)].full]
    if not full:
        closest = max(
            known, key=lambda v: (compat[id(v)].mapped_ops or 0) / (compat[id(v)].ops or 1)
        )
        cell = compat[id(closest)].cell
        return _none(model, target, title, f"no file maps fully; closest: {closest.label}, {cell}")
    within = [v for v in full if judge.within(v)]
    pool = within or full
    over = "" if within else f"over budget (no fully mapped file is {_budget_text(judge)}); "
    if target == "gpu":
        measured = _fastest_measured(pool, variants, _ADD[target])
        if measured is not None:
            v, rec = measured
            why = f"{over}runs whole on the GPU, p50 {rec.latency_ms['p50']:.3g} ms measured; "
            return _pick(model, target, title, v, why + judge.accuracy_text(v), rec)
    top = max(pool, key=lambda v: v.accuracy or 0)
    tied = [v for v in pool if v is top or _accuracy_tie(v, top)]
    best = min(tied, key=lambda v: (v.size_bytes, -(v.accuracy or 0)))
    how = "measured" if compat[id(best)].source == "measured" else "offline analysis"
    why = f"{over}maps 100% ({how}); {judge.accuracy_text(best)}, {judge.vs_base(best)}"
    others = [v.label for v in tied if v is not best]
    if others:
        why += f"; accuracy within noise of {', '.join(others[:3])}, so the smallest is chosen"
    return _pick(model, target, title, best, why)


def _accuracy_tie(a: Variant, b: Variant) -> bool:
    if a.scored is None or b.scored is None:
        return False
    test = compare_accuracy(a.scored, b.scored)
    return test is not None and not test.significant


def _fastest_measured(
    pool: Sequence[Variant], variants: Sequence[Variant], backend: str
) -> tuple[Variant, ResultRecord] | None:
    keys = {(v.recipe, v.format, v.quant) for v in pool}
    found = [
        (v, r)
        for v in variants
        if (v.recipe, v.format, v.quant) in keys
        for r in v.records
        if (r.backend or "").split(":", 1)[0] == backend and r.latency_ms and r.error is None
    ]
    return min(found, key=lambda e: e[1].latency_ms.get("p50") or float("inf"), default=None)
