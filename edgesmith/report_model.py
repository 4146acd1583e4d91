"""What the report groups records into: variants per model and device, baselines, fronts.

A :class:`Variant` is one model file (model x recipe x format x quant) on one device, with
the records of every backend that ran it. Accelerator compatibility is read from the
records: a measured backend's ``fully_accelerated`` first, else the offline analysis line
the plan runner adds to the notes where the accelerator is absent.

Example:
    >>> from edgesmith.core.records import ResultRecord
    >>> recs = [ResultRecord(model="m", family="cnn", recipe="baseline", format="tflite",
    ...                      quant="none", size_bytes=400, accuracy=0.9),
    ...         ResultRecord(model="m", family="cnn", recipe="baseline", format="tflite",
    ...                      quant="int8", size_bytes=100, accuracy=0.89)]
    >>> [r.quant for r in pareto_front(recs)]
    ['int8', 'none']
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edgesmith.core.records import ResultRecord
from edgesmith.core.tables import BASELINE_RECIPE


@dataclass(frozen=True)
class Variant:
    """One model file: model x recipe x format x quant, measured on one or more backends."""

    model: str
    family: str
    recipe: str
    format: str
    quant: str
    records: tuple[ResultRecord, ...]
    device: str = "local"  # where its records were measured (a row per device)

    @property
    def label(self) -> str:
        return f"{self.recipe} / {self.format} {self.quant}"

    def first(self, attribute: str) -> Any:
        """The first non-null value of ``attribute`` among this variant's records."""
        for record in self.records:
            value = getattr(record, attribute)
            if value is not None:
                return value
        return None

    @property
    def size_bytes(self) -> int | None:
        return self.first("size_bytes")

    @property
    def accuracy(self) -> float | None:
        scored = self.scored
        return scored.accuracy if scored else None

    @property
    def scored(self) -> ResultRecord | None:
        """The record whose accuracy the variant shows.

        A benchmark scores the file on the whole eval set (and keeps per-sample outcomes);
        a record of a backend that did not run has the conversion's check on fewer samples.
        """
        with_acc = [r for r in self.records if r.accuracy is not None]
        ranked = sorted(with_acc, key=lambda r: (not r.correct, not r.latency_ms))
        return ranked[0] if ranked else None

    def measured(self, backend: str) -> ResultRecord | None:
        """The record that measured a latency on ``backend`` (None: not measured there)."""
        for record in self.records:
            if record.backend == backend and record.latency_ms and record.error is None:
                return record
        return None

    def p50(self, backend: str) -> float | None:
        record = self.measured(backend)
        return record.latency_ms.get("p50") if record and record.latency_ms else None


def device_name(record: ResultRecord) -> str:
    """The device a record was measured on (``local`` when it names none)."""
    return str((record.device or {}).get("name") or "local")


def group_variants(records: Iterable[ResultRecord]) -> dict[str, list[Variant]]:
    """Variants per model (one per device), in the order records arrived."""
    grouped: dict[tuple[str, ...], list[ResultRecord]] = defaultdict(list)
    for record in records:
        key = (
            record.model or "?",
            record.family or "?",
            record.recipe or BASELINE_RECIPE,
            record.format or "keras",
            record.quant or "none",
            device_name(record),
        )
        grouped[key].append(record)
    per_model: dict[str, list[Variant]] = defaultdict(list)
    for (model, family, recipe, fmt, quant, device), recs in grouped.items():
        per_model[model].append(Variant(model, family, recipe, fmt, quant, tuple(recs), device))
    return dict(per_model)


def baseline_of(variants: Sequence[Variant]) -> Variant | None:
    """The float baseline: the uncompressed model as a float32 .tflite (else any float file)."""
    floats = [v for v in variants if v.recipe == BASELINE_RECIPE and v.quant == "none"]
    for variant in floats:
        if variant.format == "tflite" and variant.size_bytes:
            return variant
    return next((v for v in floats if v.size_bytes), None)


def pareto_front(points: Sequence[Any]) -> list[Any]:
    """Points no other point beats on both size (smaller) and accuracy (higher), by size.

    Works on anything with ``size_bytes`` and ``accuracy``; points missing either are left out.
    """
    valid = [p for p in points if p.size_bytes and p.accuracy is not None]
    front = []
    for p in valid:
        dominated = any(
            q.size_bytes <= p.size_bytes
            and q.accuracy >= p.accuracy
            and (q.size_bytes < p.size_bytes or q.accuracy > p.accuracy)
            for q in valid
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: (p.size_bytes, -p.accuracy))


def backends_in(records: Iterable[ResultRecord]) -> list[str]:
    """Backends that measured a latency, in order of appearance (failed ones go to notes)."""
    seen: dict[str, None] = {}
    for record in records:
        if record.backend and record.latency_ms and record.error is None:
            seen.setdefault(record.backend, None)
    return list(seen)


def baseline_latency(variants: Sequence[Variant], backend: str) -> float | None:
    """p50 of the float baseline on ``backend``: the float file of the format that backend runs."""
    base = baseline_of(variants)
    if base and base.p50(backend):
        return base.p50(backend)
    floats = (v for v in variants if v.recipe == BASELINE_RECIPE and v.quant == "none")
    return next((v.p50(backend) for v in floats if v.p50(backend)), None)


def speedup(record: ResultRecord, base_p50: float | None) -> tuple[float | None, bool]:
    """``record``'s speedup over the float32 baseline, and whether both were timed side by side.

    A record benchmarked interleaved with its float32 file (``paired``) has the ratio of the
    two p50s of one window; otherwise it falls back to ``base_p50`` (the baseline's own,
    separate benchmark) over the record's p50, which drift between the two runs can skew.

    Example:
        >>> speedup(ResultRecord(latency_ms={"p50": 1.0}, paired={"speedup": 2.5}), 2.0)
        (2.5, True)
        >>> speedup(ResultRecord(latency_ms={"p50": 1.0}), 2.0)
        (2.0, False)
    """
    same_window = (record.paired or {}).get("speedup")
    if same_window:
        return float(same_window), True
    p50 = (record.latency_ms or {}).get("p50")
    return (base_p50 / p50 if p50 and base_p50 else None), False


# --- accelerator compatibility ----------------------------------------------------------

# The line plan_runner.analysis_note writes for an accelerator that is not on the machine.
_ANALYSIS = re.compile(
    r"offline (?P<target>edgetpu|gpu) analysis: (?P<mapped>\d+) of (?P<ops>\d+) ops map"
    r"(?: \((?P<macs>\d+)% of MACs\))?"
    r"(?:; first fallback: op #(?P<index>\d+) (?P<op>\S+) \((?P<reason>.*?)\)(?=;|$))?"
)
ANALYSIS_PREFIX = "offline "  # notes starting so are shown as columns, not notes
# Backends whose measured records say whether the accelerator ran the whole model.
ACCELERATOR_BACKENDS = {"edgetpu": "edgetpu", "gpu": "litert-gpu"}


@dataclass(frozen=True)
class Compatibility:
    """How much of a file an accelerator runs: measured, or predicted offline."""

    target: str  # edgetpu | gpu
    full: bool | None  # None: unknown (not measured, no analysis)
    source: str  # measured | offline | none
    mapped_ops: int | None = None
    ops: int | None = None
    first_fallback: str | None = None  # "#3 TANH": the first op that runs on the CPU
    reason: str | None = None  # why that op does not map

    @property
    def cell(self) -> str:
        """The table cell: ``100%``, ``71% (first CPU op #3 TANH)``, ``n/a`` or ``-``."""
        if self.source == "none":
            return "-"
        if self.source == "measured":
            return "100% (measured)" if self.full else "partial (measured)"
        share = f"{100 * (self.mapped_ops or 0) / self.ops:.0f}%" if self.ops else "0%"
        if self.full:
            return "100%"
        return share + (f" (first CPU op {self.first_fallback})" if self.first_fallback else "")


def compatibility(variant: Variant, target: str) -> Compatibility:
    """Edge TPU mapping or GPU delegate coverage of ``variant`` (``target``: edgetpu | gpu)."""
    backend = ACCELERATOR_BACKENDS[target]
    for record in variant.records:
        name = (record.backend or "").split(":", 1)[0]
        if name == backend and record.error is None and record.fully_accelerated is not None:
            return Compatibility(target, bool(record.fully_accelerated), "measured")
    for record in variant.records:
        for note in record.notes:
            match = _ANALYSIS.search(note)
            if match and match["target"] == target:
                mapped, ops = int(match["mapped"]), int(match["ops"])
                fallback = f"#{match['index']} {match['op']}" if match["op"] else None
                full = ops > 0 and mapped == ops
                return Compatibility(
                    target, full, "offline", mapped, ops, fallback, match["reason"]
                )
    return Compatibility(target, None, "none")


def is_analysis_note(note: str) -> bool:
    """Whether ``note`` is an offline analysis line (shown in the compatibility columns)."""
    return bool(_ANALYSIS.search(note))
