"""Render lists of :class:`~edgesmith.core.records.ResultRecord` into the report people decide from.

Nothing here measures or re-derives a number: every figure comes from a record. The
computed columns are ratios between records (size vs the float baseline, speedup), the
paired comparisons of :mod:`edgesmith.report_stats`, the recommendations of
:mod:`edgesmith.report_recommend` and the Pareto front. The interactive page is
:mod:`edgesmith.report_html`; several runs side by side are :mod:`edgesmith.report_compare`.

Example:
    >>> from edgesmith.core.records import ResultRecord
    >>> rec = ResultRecord(model="m", recipe="baseline", format="tflite", quant="none",
    ...                    latency_ms={"p50": 0.1},
    ...                    environment={"cpu": "AMD EPYC", "cpu_features": ["avx2", "fma"]})
    >>> cpus_by_device([rec])
    {'local': 'AMD EPYC (avx2, fma)'}
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from edgesmith.core.errors import ConfigError
from edgesmith.core.fileio import write_text
from edgesmith.core.formatting import format_bytes, format_pct
from edgesmith.core.records import ResultRecord
from edgesmith.report_model import (
    Variant,
    backends_in,
    baseline_latency,
    baseline_of,
    compatibility,
    device_name,
    group_variants,
    is_analysis_note,
    pareto_front,
    speedup,
)
from edgesmith.report_recommend import DEFAULT_BUDGET, Recommendation, recommend, recommended_for
from edgesmith.report_stats import compare_accuracy, format_ci, format_spread

__all__ = [
    "CSV_COLUMNS",
    "Variant",
    "backends_in",
    "baseline_latency",
    "baseline_of",
    "cpus_by_device",
    "device_name",
    "failures_and_notes",
    "group_variants",
    "model_table",
    "pareto_front",
    "read_run",
    "records_csv",
    "render_html",
    "render_markdown",
    "table_cells",
    "write_report",
]

# A cell of a table: the text shown and the value it sorts by (None: sorts last).
Cell = tuple[str, float | str | None]


def table_cells(
    variants: Sequence[Variant], backends: Sequence[str]
) -> tuple[list[str], list[tuple[Variant, list[Cell]]]]:
    """Columns and rows (each with its variant) of one model's table, sorted by size.

    One device: deltas against the float baseline. Several: each device's rows against its
    own baseline, with a device column.
    """
    devices = list(dict.fromkeys(v.device for v in variants))
    if len(devices) > 1:
        rows: list[tuple[Variant, list[Cell]]] = []
        columns: list[str] = []
        for device in devices:
            columns, part = table_cells([v for v in variants if v.device == device], backends)
            rows += [(v, [cells[0], (device, device), *cells[1:]]) for v, cells in part]
        return [columns[0], "device", *columns[1:]], rows
    base = baseline_of(variants)
    front = {id(v) for v in pareto_front(variants)}
    compat = {t: [compatibility(v, t) for v in variants] for t in ("edgetpu", "gpu")}
    shown = {t: any(c.source != "none" for c in compat[t]) for t in compat}
    columns = [
        "variant", "size", "gzip", "size ratio", "gzip ratio", "accuracy", "Δ acc (pts)",
        "sparsity", "95% CI", "vs baseline",
    ]  # fmt: skip
    columns += [name for t, name in (("edgetpu", "Edge TPU"), ("gpu", "GPU delegate")) if shown[t]]
    for backend in backends:
        columns += [f"{backend} p50 ms", f"{backend} p10-p90 ms", f"{backend} speedup"]
    base_latency = {backend: baseline_latency(variants, backend) for backend in backends}
    base_gzip = base.first("gzip_bytes") if base else None
    out = []
    order = sorted(
        range(len(variants)),
        key=lambda i: (
            variants[i].size_bytes is None,
            variants[i].size_bytes or 0,
            variants[i].label,
        ),
    )
    for i in order:
        v = variants[i]
        size, acc, gzipped, scored = v.size_bytes, v.accuracy, v.first("gzip_bytes"), v.scored
        size_ratio = base.size_bytes / size if base and base.size_bytes and size else None
        gzip_ratio = base_gzip / gzipped if base_gzip and gzipped else None
        delta = (
            100 * (acc - base.accuracy)
            if base and base.accuracy is not None and acc is not None
            else None
        )
        label = v.label + (" (baseline)" if v is base else "") + (" ★" if id(v) in front else "")
        cells: list[Cell] = [
            (label, v.label),
            (format_bytes(size), size),
            (format_bytes(gzipped), gzipped),
            (_ratio(size_ratio), size_ratio),
            (_ratio(gzip_ratio), gzip_ratio),
            (format_pct(acc), acc),
            ("-" if delta is None else f"{delta:+.2f}", delta),
            (format_pct(v.first("sparsity")), v.first("sparsity")),
            (format_ci(scored.accuracy_ci if scored else None), acc),
            _vs_baseline(v, base),
        ]
        for target in ("edgetpu", "gpu"):
            if shown[target]:
                c = compat[target][i]
                share = 1.0 if c.full else (c.mapped_ops or 0) / c.ops if c.ops else None
                cells.append((c.cell if v.format == "tflite" else "n/a", share))
        for backend, base_p50 in base_latency.items():
            record = v.measured(backend)
            p50 = v.p50(backend)
            ratio, same_window = speedup(record, base_p50) if record else (None, False)
            cells += [
                (_num(p50), p50),
                (format_spread(record) if record else "-", p50),
                (_ratio(ratio) + (f" {SIDE_BY_SIDE}" if same_window else ""), ratio),
            ]
        out.append((v, cells))
    return columns, out


def model_table(
    variants: Sequence[Variant], backends: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """Columns and rows (text) of one model's table, sorted by size, with deltas vs the baseline."""
    columns, rows = table_cells(variants, backends)
    return columns, [[text for text, _ in cells] for _, cells in rows]


def _vs_baseline(v: Variant, base: Variant | None) -> Cell:
    if base is None or v is base or v.scored is None or base.scored is None:
        return ("-", None)
    test = compare_accuracy(v.scored, base.scored)
    if test is None:
        return ("-", None)
    if test.method == "McNemar":
        return (test.describe().split(", ", 1)[1], test.p_value)
    return (f"{test.verdict} (CIs, no per-sample results)", None)


def cpus_by_device(records: Iterable[ResultRecord]) -> dict[str, str]:
    """Per device, the CPU and its instruction-set features that its latencies were measured on."""
    out: dict[str, str] = {}
    for record in records:
        env = record.environment or {}
        if not record.latency_ms or not env.get("cpu") or device_name(record) in out:
            continue
        features = env.get("cpu_features")
        text = str(env["cpu"])
        if features:
            text += f" ({', '.join(features)})"
        elif isinstance(features, list):
            text += " (no SIMD features reported)"
        out[device_name(record)] = text
    return out


# --- output files --------------------------------------------------------------------


def write_report(
    records: Sequence[ResultRecord],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "edgesmith report",
    budget: float | None = None,
) -> dict[str, Path]:
    """Write results.jsonl, results.csv, summary.json, report.md and a self-contained index.html.

    ``budget`` (accuracy points a recommended file may lose against the float baseline)
    defaults to the ``budget`` of the run's ``plan.json`` in ``out_dir``, else 1.

    Example:
        >>> paths = write_report(records, "reports/demo", budget=0.5)  # doctest: +SKIP
        >>> sorted(paths)  # doctest: +SKIP
        ['csv', 'html', 'jsonl', 'md', 'summary']
    """
    from edgesmith.report_html import render_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    budget = plan_budget(out) if budget is None else float(budget)
    recs = recommend(records, budget)
    lines = "".join(
        json.dumps({**r.to_dict(), "recommended_for": recommended_for(r, recs)}) + "\n"
        for r in records
    )
    summary = {
        "title": title,
        "budget_pts": budget,
        "records": len(records),
        "cpus": cpus_by_device(records),
        "recommendations": [r.to_dict() for r in recs],
    }
    return {
        "jsonl": write_text(out / "results.jsonl", lines),
        "csv": write_text(out / "results.csv", records_csv(records, recs)),
        "summary": write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n"),
        "md": write_text(out / "report.md", render_markdown(records, title=title, budget=budget)),
        "html": write_text(out / "index.html", render_page(records, title=title, budget=budget)),
    }


def plan_budget(run_dir: Path) -> float:
    """The ``budget`` of the plan a run folder was made with (1 without one)."""
    plan = run_dir / "plan.json"
    try:
        value = json.loads(plan.read_text(encoding="utf-8")).get("budget")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_BUDGET
    return float(value) if isinstance(value, (int, float)) else DEFAULT_BUDGET


def read_run(run_dir: str | os.PathLike[str]) -> list[ResultRecord]:
    """The records of a run folder (its ``results.jsonl``), checked line by line."""
    path = Path(run_dir) / "results.jsonl"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir}: no results.jsonl",
            expected="a folder written by edgesmith run or edgesmith report",
            fix="give the --out folder of a finished run",
        )
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            records.append(ResultRecord.from_dict(data))
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{path}:{number}: not a record ({exc})",
                expected="one JSON record per line",
                fix="re-run the plan to write the file again",
            ) from None
    return records


CSV_COLUMNS = (
    "model", "family", "task", "dataset", "split", "recipe", "format", "quant", "backend",
    "device", "threads", "file", "size_bytes", "gzip_bytes", "params", "nonzero_params", "sparsity",
    "accuracy", "accuracy_ci_low", "accuracy_ci_high", "samples", "parity_max_abs_diff",
    "parity_top1_agreement", "latency_p50_ms", "latency_mean_ms", "latency_p10_ms",
    "latency_p90_ms", "throughput_per_s", "peak_rss_mb", "speedup_vs_baseline",
    "speedup_same_window", "fully_accelerated", "edgetpu_mapping", "gpu_coverage", "cpu",
    "cpu_features", "recommended_for", "error",
)  # fmt: skip


def records_csv(
    records: Iterable[ResultRecord], recommendations: Sequence[Recommendation] | None = None
) -> str:
    """One CSV row per record (nested fields flattened to the columns people sort by)."""
    records = list(records)
    recs = recommend(records) if recommendations is None else recommendations
    per_model = group_variants(records)
    variant_of = {id(r): v for variants in per_model.values() for v in variants for r in v.records}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        row = record.to_dict()
        row["device"] = device_name(record)
        parity, latency = record.parity or {}, record.latency_ms or {}
        row["parity_max_abs_diff"] = parity.get("max_abs_diff")
        row["parity_top1_agreement"] = parity.get("top1_agreement")
        ci = record.accuracy_ci or [None, None]
        row["accuracy_ci_low"], row["accuracy_ci_high"] = ci
        for key in ("p50", "mean", "p10", "p90"):
            row[f"latency_{key}_ms"] = latency.get(key)
        variant = variant_of[id(record)]
        # The table's speedup column: over the float32 baseline of the same model, device and
        # backend; same_window says whether the two were timed side by side (``paired``).
        if record.latency_ms and record.error is None and record.backend:
            on_device = [v for v in per_model[variant.model] if v.device == variant.device]
            ratio, same_window = speedup(record, baseline_latency(on_device, record.backend))
            if ratio is not None:
                row["speedup_vs_baseline"] = round(ratio, 4)
                row["speedup_same_window"] = same_window
        if record.format == "tflite":
            row["edgetpu_mapping"] = compatibility(variant, "edgetpu").cell
            row["gpu_coverage"] = compatibility(variant, "gpu").cell
        env = record.environment or {}
        row["cpu"] = env.get("cpu")
        row["cpu_features"] = " ".join(env.get("cpu_features") or [])
        row["recommended_for"] = " ".join(recommended_for(record, recs))
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
    Accelerator compatibility is a table column (Edge TPU, GPU delegate), not a note.
    """
    failures: list[str] = []
    where_by_note: dict[str, dict[str, None]] = {}
    for r in records:
        if r.error:
            failures.append(f"{_where(r)}: {r.error}")
        for note in r.notes:
            # Records written before the ``compatibility`` field carried the mapping as a
            # note; it is a column now, so it is not listed again.
            if not is_analysis_note(note):
                where_by_note.setdefault(note, {})[_where(r, backend=False)] = None
    notes = []
    for note, where in where_by_note.items():
        places = list(where)
        shown = "; ".join(places[:4]) + (f"; and {len(places) - 4} more" if len(places) > 4 else "")
        notes.append(f"{note} [{shown}]")
    return list(dict.fromkeys(failures)), notes


SIDE_BY_SIDE = "⇆"  # marks a speedup measured side by side with float32 (one window)

LEGEND = (
    "Sizes are file bytes; size ratio, gzip ratio (DEFLATE-9 size of the float32 baseline over "
    "that of the variant) and speedup are relative to the float32 baseline (★ marks the "
    "accuracy-vs-size Pareto front). Accuracy carries its 95% Wilson interval; 'vs baseline' "
    "is McNemar's exact test on the same test samples (within noise: p >= 0.05). Latency is "
    "the p50 of the timed runs with their p10-p90 spread. Speedup: float32 p50 over the "
    f"variant's; {SIDE_BY_SIDE} marks a speedup measured side by side with float32 (the two "
    "files timed in alternating blocks in one process, in one window); one without it divides "
    "p50s of separate benchmarks, so drift of the machine between them enters the ratio. "
    "Edge TPU and GPU delegate: measured "
    "on the accelerator where it ran, else the offline edgetpu analysis / offline gpu "
    "analysis of the file (share of ops mapped, first op left on the CPU)."
)


def recommendation_rows(recs: Sequence[Recommendation]) -> list[list[str]]:
    """The recommendation table's text rows: goal, variant, numbers, why."""
    rows = []
    for r in recs:
        rows.append(
            [
                r.title,
                r.variant or "none",
                format_pct(r.accuracy) + (f" {format_ci(r.accuracy_ci)}" if r.accuracy_ci else ""),
                format_bytes(r.size_bytes),
                _num(r.latency_ms) + (f" ({r.backend}, {r.device})" if r.backend else ""),
                r.why,
            ]
        )
    return rows


RECOMMENDATION_COLUMNS = ["goal", "variant", "accuracy [95% CI]", "size", "p50 ms", "why"]


def render_markdown(
    records: Sequence[ResultRecord],
    *,
    title: str = "edgesmith report",
    budget: float = DEFAULT_BUDGET,
) -> str:
    """The report as Markdown: recommendations first, then one table per model."""
    from edgesmith.console import markdown_table

    backends = backends_in(records)
    recs = recommend(records, budget)
    parts = [f"# {title}\n"]
    parts.append(
        f"Accuracy budget: a recommended file loses at most {budget:g} pt of accuracy against "
        "the float baseline (plan setting `budget`).\n"
    )
    cpus = cpus_by_device(records)
    if cpus:
        parts.append(
            "Latencies measured on: " + "; ".join(f"{d}: {c}" for d, c in cpus.items()) + ".\n"
        )
    per_model = group_variants(records)
    for model in per_model:
        rows = recommendation_rows([r for r in recs if r.model == model])
        if rows:
            parts.append(
                f"## Recommendations: {model}\n\n" + markdown_table(RECOMMENDATION_COLUMNS, rows)
            )
    parts.append(LEGEND + "\n")
    for model, variants in per_model.items():
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


def render_html(
    records: Sequence[ResultRecord],
    *,
    title: str = "edgesmith report",
    budget: float = DEFAULT_BUDGET,
) -> str:
    """The self-contained interactive page (see :mod:`edgesmith.report_html`)."""
    from edgesmith.report_html import render_page

    return render_page(records, title=title, budget=budget)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
