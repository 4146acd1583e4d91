"""What the report groups records into: variants per model and device, baselines, fronts.

A :class:`Variant` is one model file (model x recipe x format x quant) on one device, with
the records of every backend that ran it. Accelerator compatibility is read from the
records' ``compatibility`` field: a measurement on the accelerator first, else the offline
analysis the plan runner records where the accelerator is absent.

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
# A record's ``compatibility`` field holds, per target, what a bench on the accelerator
# measured or what the offline analysis of the file predicted. The plan runner fills it with
# the two builders below; the report reads it with :func:`compatibility`.

# Target (of `edgesmith analyze`) -> the backend that runs the file on that accelerator.
ACCELERATOR_BACKENDS = {"edgetpu": "edgetpu", "gpu": "litert-gpu"}
ACCELERATOR_TARGETS = {backend: target for target, backend in ACCELERATOR_BACKENDS.items()}


def offline_compatibility(report: dict[str, Any]) -> dict[str, Any]:
    """A record's ``compatibility`` entry from an ``analyze`` report of the file.

    Example:
        >>> offline_compatibility({"target": "edgetpu", "op_count": 4, "mapped_op_fraction": 0.5,
        ...     "mapped_mac_fraction": 0.9, "first_fallback_op": {"index": 2, "op": "TANH",
        ...     "reason": "float32 tensor"}})  # doctest: +NORMALIZE_WHITESPACE
        {'full': False, 'source': 'offline', 'mapped_ops': 2, 'ops': 4, 'macs_share': 0.9,
         'first_fallback': {'index': 2, 'op': 'TANH', 'reason': 'float32 tensor'}}
    """
    ops = int(report.get("op_count") or 0)
    mapped = round((report.get("mapped_op_fraction") or 0.0) * ops)
    macs = report.get("mapped_mac_fraction")
    fallback = report.get("first_fallback_op")
    return {
        "full": ops > 0 and mapped == ops,
        "source": "offline",
        "mapped_ops": mapped,
        "ops": ops,
        "macs_share": None if macs is None else round(float(macs), 4),
        "first_fallback": (
            {k: fallback[k] for k in ("index", "op", "reason")} if fallback else None
        ),
    }


def measured_compatibility(full: bool) -> dict[str, Any]:
    """A record's ``compatibility`` entry from a bench on the accelerator (whole model or not).

    The runtimes say only whether everything was delegated, not how many ops were.
    """
    return {
        "full": bool(full),
        "source": "measured",
        "mapped_ops": None,
        "ops": None,
        "macs_share": None,
        "first_fallback": None,
    }


def analysis_note(report: dict[str, Any]) -> str | None:
    """What an ``analyze`` report says beyond the compatibility columns (None: nothing).

    The mapping itself goes into the record's ``compatibility``; this keeps the one fact
    the columns do not show, whether the Edge TPU's parameters fit its on-chip cache.

    Example:
        >>> analysis_note({"target": "edgetpu", "parameter_bytes": 1000,
        ...                "parameter_cache_bytes": 8000000, "parameters_fit_cache": True})
        'offline edgetpu analysis: 1,000 parameter bytes fit the 8,000,000-byte on-chip cache'
        >>> analysis_note({"target": "gpu", "op_count": 3}) is None
        True
    """
    if report.get("parameter_bytes") is None:
        return None
    fits = "fit" if report.get("parameters_fit_cache") else "do not fit"
    cache = report.get("parameter_cache_bytes")
    where = f"the {cache:,}-byte on-chip cache" if cache else "the on-chip cache"
    return f"offline {report.get('target')} analysis: {report['parameter_bytes']:,} parameter bytes {fits} {where}"


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
    macs_share: float | None = None  # share of the multiply-accumulates that map

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

    @classmethod
    def from_entry(cls, target: str, entry: dict[str, Any]) -> Compatibility:
        """The view of one entry of a record's ``compatibility`` field."""
        fallback = entry.get("first_fallback") or {}
        return cls(
            target,
            entry.get("full"),
            str(entry.get("source") or "offline"),
            entry.get("mapped_ops"),
            entry.get("ops"),
            f"#{fallback['index']} {fallback['op']}" if fallback else None,
            fallback.get("reason"),
            entry.get("macs_share"),
        )


def compatibility(variant: Variant, target: str) -> Compatibility:
    """Edge TPU mapping or GPU delegate coverage of ``variant`` (``target``: edgetpu | gpu).

    A measurement wins over an offline analysis; both come from the records' ``compatibility``.

    Example:
        >>> rec = ResultRecord(model="m", format="tflite", quant="int8", compatibility={
        ...     "edgetpu": offline_compatibility({"op_count": 7, "mapped_op_fraction": 1.0})})
        >>> compatibility(group_variants([rec])["m"][0], "edgetpu").cell
        '100%'
    """
    found: dict[str, dict[str, Any]] = {}
    for record in variant.records:
        entry = (record.compatibility or {}).get(target) or _legacy_entry(record, target)
        if entry and record.error is None:
            found.setdefault(str(entry.get("source")), entry)
    for source in ("measured", "offline"):
        if source in found:
            return Compatibility.from_entry(target, found[source])
    return Compatibility(target, None, "none")


# Records without a ``compatibility`` field: those written before it existed, and those of a
# bare ``edgesmith bench`` (runtime/bench.py sets only ``fully_accelerated``). Read: a
# measured backend's ``fully_accelerated``, else the line the plan runner used to write into
# the notes, so that old run folders still render (and compare) with their columns.
_ANALYSIS = re.compile(
    r"offline (?P<target>edgetpu|gpu) analysis: (?P<mapped>\d+) of (?P<ops>\d+) ops map"
    r"(?: \((?P<macs>\d+)% of MACs\))?"
    r"(?:; first fallback: op #(?P<index>\d+) (?P<op>\S+) \((?P<reason>.*?)\)(?=;|$))?"
)


def _legacy_entry(record: ResultRecord, target: str) -> dict[str, Any] | None:
    if record.compatibility:
        return None  # a record with the field says all it knows there
    backend = (record.backend or "").split(":", 1)[0]
    if ACCELERATOR_TARGETS.get(backend) == target and record.fully_accelerated is not None:
        return measured_compatibility(record.fully_accelerated)
    for note in record.notes:
        match = _ANALYSIS.search(note)
        if match and match["target"] == target:
            fallback = None
            if match["op"]:
                fallback = {"index": int(match["index"]), "op": match["op"]}
                fallback["reason"] = match["reason"]
            return offline_compatibility(
                {
                    "op_count": int(match["ops"]),
                    "mapped_op_fraction": int(match["mapped"]) / max(int(match["ops"]), 1),
                    "mapped_mac_fraction": int(match["macs"]) / 100 if match["macs"] else None,
                    "first_fallback_op": fallback,
                }
            )
    return None


def is_analysis_note(note: str) -> bool:
    """Whether ``note`` is an old record's offline mapping line (now a column, not a note)."""
    return bool(_ANALYSIS.search(note))
