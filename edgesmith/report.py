"""Render lists of :class:`~edgesmith.core.records.ResultRecord` into the accuracy / size / latency report.

Nothing here measures or re-derives a number: every figure comes from a record. The
only computed columns are ratios between records (size vs the float baseline,
accuracy delta, speedup) and the Pareto front.

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

import base64
import csv
import html
import io
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.core.fileio import write_text
from edgesmith.core.formatting import format_bytes, format_pct
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
        return self.first("accuracy")

    def p50(self, backend: str) -> float | None:
        for record in self.records:
            if record.backend == backend and record.latency_ms and record.error is None:
                return record.latency_ms.get("p50")
        return None


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


def model_table(
    variants: Sequence[Variant], backends: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of one model's table, sorted by size, with deltas vs the baseline."""
    devices = list(dict.fromkeys(v.device for v in variants))
    if len(devices) > 1:  # side by side: each device's rows against its own float baseline
        rows = []
        for device in devices:
            columns, part = model_table([v for v in variants if v.device == device], backends)
            rows += [[row[0], device, *row[1:]] for row in part]
        return [columns[0], "device", *columns[1:]], rows
    base = baseline_of(variants)
    front = {id(v) for v in pareto_front(variants)}
    columns = [
        "variant", "size", "gzip", "size ratio", "gzip ratio", "accuracy", "Δ acc (pts)",
        "sparsity",
    ]  # fmt: skip
    for backend in backends:
        columns += [f"{backend} p50 ms", f"{backend} speedup"]
    base_latency = {backend: baseline_latency(variants, backend) for backend in backends}
    rows = []
    ordered = sorted(variants, key=lambda v: (v.size_bytes is None, v.size_bytes or 0, v.label))
    for v in ordered:
        size, acc, gzipped = v.size_bytes, v.accuracy, v.first("gzip_bytes")
        base_gzip = base.first("gzip_bytes") if base else None
        is_base = v is base
        row = [
            v.label + (" (baseline)" if is_base else "") + (" ★" if id(v) in front else ""),
            format_bytes(size),
            format_bytes(gzipped),
            _ratio(base.size_bytes / size) if base and size else "-",
            _ratio(base_gzip / gzipped) if base_gzip and gzipped else "-",
            format_pct(acc),
            _delta(acc, base.accuracy if base else None),
            format_pct(v.first("sparsity")),
        ]
        for backend, base_p50 in base_latency.items():
            p50 = v.p50(backend)
            row += [_num(p50), _ratio(base_p50 / p50) if p50 and base_p50 else "-"]
        rows.append(row)
    return columns, rows


# --- output files --------------------------------------------------------------------


def write_report(
    records: Sequence[ResultRecord],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "edgesmith report",
) -> dict[str, Path]:
    """Write results.jsonl, results.csv, report.md and a self-contained index.html to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "jsonl": write_text(
            out / "results.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for r in records)
        ),
        "csv": write_text(out / "results.csv", records_csv(records)),
        "md": write_text(out / "report.md", render_markdown(records, title=title)),
        "html": write_text(out / "index.html", render_html(records, title=title)),
    }
    return paths


CSV_COLUMNS = (
    "model", "family", "task", "dataset", "split", "recipe", "format", "quant", "backend",
    "device", "threads", "file", "size_bytes", "gzip_bytes", "params", "nonzero_params", "sparsity",
    "accuracy", "samples", "parity_max_abs_diff", "parity_top1_agreement", "latency_p50_ms",
    "latency_mean_ms", "latency_p90_ms", "throughput_per_s", "peak_rss_mb", "fully_accelerated",
    "error",
)  # fmt: skip


def records_csv(records: Iterable[ResultRecord]) -> str:
    """One CSV row per record (nested fields flattened to the columns people sort by)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        row = record.to_dict()
        row["device"] = device_name(record)
        parity, latency = record.parity or {}, record.latency_ms or {}
        row["parity_max_abs_diff"] = parity.get("max_abs_diff")
        row["parity_top1_agreement"] = parity.get("top1_agreement")
        for key in ("p50", "mean", "p90"):
            row[f"latency_{key}_ms"] = latency.get(key)
        writer.writerow(row)
    return buffer.getvalue()


def _where(record: ResultRecord, *, backend: bool = True) -> str:
    parts = (record.model, record.recipe, record.format, record.quant)
    parts += (record.backend,) if backend else ()
    parts += (device_name(record),) if backend and device_name(record) != "local" else ()
    return " / ".join(str(x) for x in parts if x)


def failures_and_notes(records: Iterable[ResultRecord]) -> tuple[list[str], list[str]]:
    """Each failure with its variant, and each distinct note once with the variants it concerns.

    Conversion notes repeat on every backend's record and often on every recipe of a
    model, so a note is listed once followed by where it applies (backends folded away).
    """
    failures: list[str] = []
    where_by_note: dict[str, dict[str, None]] = {}
    for r in records:
        if r.error:
            failures.append(f"{_where(r)}: {r.error}")
        for note in r.notes:
            where_by_note.setdefault(note, {})[_where(r, backend=False)] = None
    notes = []
    for note, where in where_by_note.items():
        places = list(where)
        shown = "; ".join(places[:4]) + (f"; and {len(places) - 4} more" if len(places) > 4 else "")
        notes.append(f"{note} [{shown}]")
    return list(dict.fromkeys(failures)), notes


def render_markdown(records: Sequence[ResultRecord], *, title: str = "edgesmith report") -> str:
    """The report as Markdown tables, one per model."""
    from edgesmith.console import markdown_table

    backends = backends_in(records)
    parts = [f"# {title}\n"]
    parts.append(
        "Sizes are file bytes; size ratio, gzip ratio (DEFLATE-9 size of the float32 baseline "
        "over that of the variant) and speedup are relative to the float32 baseline "
        "(★ marks the accuracy-vs-size Pareto front).\n"
    )
    for model, variants in group_variants(records).items():
        base = baseline_of(variants)
        header = f"## {model} ({variants[0].family})"
        if base and base.accuracy is not None:
            header += f", float baseline accuracy {format_pct(base.accuracy)}"
        columns, rows = model_table(variants, backends)
        parts.append(header + "\n\n" + markdown_table(columns, rows))
    failures, notes = failures_and_notes(records)
    if failures:
        parts.append("## Failures\n\n" + "".join(f"- {n}\n" for n in failures))
    if notes:
        parts.append("## Notes\n\n" + "".join(f"- {n}\n" for n in notes))
    return "\n".join(parts)


def render_html(records: Sequence[ResultRecord], *, title: str = "edgesmith report") -> str:
    """A self-contained HTML page: tables, embedded plots, notes. Readable without a server."""
    backends = backends_in(records)
    per_model = group_variants(records)
    body = [f"<h1>{html.escape(title)}</h1>"]
    body.append(
        "<p>Sizes are file bytes; size ratio, gzip ratio (gzipped baseline over gzipped "
        "variant) and speedup are relative to the float32 baseline; "
        "★ marks the accuracy-vs-size Pareto front.</p>"
    )
    for model, variants in per_model.items():
        base = baseline_of(variants)
        heading = f"{model} ({variants[0].family})"
        if base and base.accuracy is not None:
            heading += f" — float baseline accuracy {format_pct(base.accuracy)}"
        columns, rows = model_table(variants, backends)
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body.append(_html_table(columns, rows, css_class="results"))
    body.append("<h2>Accuracy vs size (Pareto front per family)</h2>")
    for family, variants in _by_family(per_model).items():
        body.append(_img(_plot_accuracy_vs_size(family, variants), f"accuracy vs size, {family}"))
    if backends:
        body.append("<h2>Accuracy vs latency</h2>")
        for backend in backends:
            variants = [v for vs in per_model.values() for v in vs if v.p50(backend)]
            if variants:
                body.append(
                    _img(
                        _plot_accuracy_vs_latency(backend, variants),
                        f"accuracy vs latency, {backend}",
                    )
                )
    failures, notes = failures_and_notes(records)
    for heading, items in (("Failures", failures), ("Notes", notes)):
        if items:
            body.append(f"<h2>{heading}</h2><ul class='notes'>")
            body += [f"<li>{html.escape(n)}</li>" for n in items]
            body.append("</ul>")
    return _PAGE.format(title=html.escape(title), body="\n".join(body))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
td {{ white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; white-space: nowrap; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; display: block; margin: 0.5rem 0 1.5rem; }}
</style></head>
<body>
{body}
</body></html>
"""


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[str]], css_class: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table class='{css_class}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _by_family(per_model: dict[str, list[Variant]]) -> dict[str, list[Variant]]:
    families: dict[str, list[Variant]] = defaultdict(list)
    for variants in per_model.values():
        for v in variants:
            families[v.family].append(v)
    return dict(families)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines and boards
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.2), dpi=100)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _plot_accuracy_vs_size(family: str, variants: Sequence[Variant]) -> bytes:
    fig, ax = _figure()
    by_model: dict[str, list[Variant]] = defaultdict(list)
    for v in variants:
        if v.size_bytes and v.accuracy is not None:
            by_model[v.model].append(v)
    for model, points in by_model.items():
        ax.scatter(
            [p.size_bytes / 1024 for p in points],
            [100 * p.accuracy for p in points],
            label=model,
            alpha=0.8,
        )
        front = pareto_front(points)
        ax.plot(
            [p.size_bytes / 1024 for p in front], [100 * p.accuracy for p in front], "--", alpha=0.6
        )
    ax.set_xscale("log")
    ax.set_xlabel("model file size (KiB, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{family}: accuracy vs size (dashed: Pareto front)")
    if by_model:
        ax.legend(fontsize="small")
    return _png(fig)


def _plot_accuracy_vs_latency(backend: str, variants: Sequence[Variant]) -> bytes:
    fig, ax = _figure()
    by_model: dict[str, list[Variant]] = defaultdict(list)
    for v in variants:
        if v.accuracy is not None:
            by_model[v.model].append(v)
    for model, points in by_model.items():
        ax.scatter(
            [p.p50(backend) for p in points],
            [100 * p.accuracy for p in points],
            label=model,
            alpha=0.8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency p50 (ms, batch 1, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"accuracy vs latency on {backend}")
    if by_model:
        ax.legend(fontsize="small")
    return _png(fig)


def _delta(value: float | None, base: float | None) -> str:
    return "-" if value is None or base is None else f"{100 * (value - base):+.2f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
