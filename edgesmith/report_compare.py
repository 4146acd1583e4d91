"""Several runs or devices side by side: per variant the deltas, under the report's noise rules.

A *source* is one run folder on one device (a run measured on two devices gives two). The
first source is the reference; every other source's row for the same file and backend
(model x recipe x format x quant x backend) shows its accuracy change, tested with
McNemar where both records carry per-sample outcomes of the same samples (else the Wilson
intervals), and its p50 latency ratio, called within noise where the p10-p90 spreads
overlap. The page plots accuracy against latency with a trace per source, each file's
points joined across sources (plotly, embedded as in the run report).

Example:
    >>> paths = compare_runs(["reports/host", "reports/pi"], "reports/host-vs-pi")  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['csv', 'html', 'md', 'summary']
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError
from edgesmith.core.fileio import write_text
from edgesmith.core.formatting import format_pct
from edgesmith.core.records import ResultRecord
from edgesmith.report_model import device_name
from edgesmith.report_stats import compare_accuracy, format_spread, latency_verdict

KEY_FIELDS = ("model", "recipe", "format", "quant", "backend")


def sources_of(runs: Sequence[tuple[str, Sequence[ResultRecord]]]) -> dict[str, list[ResultRecord]]:
    """Records per source (``run`` or ``run @ device`` when a run has several devices)."""
    out: dict[str, list[ResultRecord]] = {}
    for label, records in runs:
        devices = list(dict.fromkeys(device_name(r) for r in records))
        for device in devices:
            name = label if len(devices) == 1 else f"{label} @ {device}"
            out[name] = [r for r in records if device_name(r) == device]
    return out


def _key(record: ResultRecord) -> tuple[str, ...]:
    return tuple(str(getattr(record, f) or "-") for f in KEY_FIELDS)


def comparisons(sources: dict[str, list[ResultRecord]]) -> list[dict[str, Any]]:
    """One row per file x backend present in the reference, with each other source's deltas."""
    names = list(sources)
    if len(names) < 2:
        raise ConfigError(
            f"{len(names)} run/device to compare",
            expected="two or more runs, or one run measured on several devices",
            fix="give several RUN_DIRs to edgesmith report",
        )
    index = {
        name: {_key(r): r for r in recs if r.error is None and r.latency_ms}
        for name, recs in sources.items()
    }
    reference = names[0]
    rows = []
    for key, ref in index[reference].items():
        row: dict[str, Any] = dict(zip(KEY_FIELDS, key, strict=True))
        row["sources"] = {reference: _numbers(ref)}
        for name in names[1:]:
            other = index[name].get(key)
            if other is None:
                row["sources"][name] = None
                continue
            entry = _numbers(other)
            test = compare_accuracy(other, ref)
            entry["accuracy_delta_pts"] = None if test is None else round(test.delta_pts, 4)
            entry["accuracy_verdict"] = None if test is None else test.verdict
            entry["accuracy_test"] = None if test is None else test.describe()
            p_ref, p_other = _p50(ref), _p50(other)
            entry["latency_ratio"] = round(p_other / p_ref, 4) if p_ref and p_other else None
            entry["latency_verdict"] = latency_verdict(other, ref)
            row["sources"][name] = entry
        rows.append(row)
    return rows


def _p50(record: ResultRecord) -> float | None:
    return (record.latency_ms or {}).get("p50")


def _numbers(record: ResultRecord) -> dict[str, Any]:
    env = record.environment or {}
    return {
        "accuracy": record.accuracy,
        "accuracy_ci": record.accuracy_ci,
        "samples": record.samples,
        "size_bytes": record.size_bytes,
        "latency_p50_ms": _p50(record),
        "latency_spread_ms": format_spread(record),
        "device": device_name(record),
        "cpu": env.get("cpu"),
        "cpu_features": env.get("cpu_features"),
    }


def compare_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "edgesmith comparison",
    budget: float | None = None,
) -> dict[str, Path]:
    """Write comparison.csv, summary.json, report.md and index.html for ``run_dirs`` into ``out_dir``.

    Each run's own recommendations (under its plan's budget, or ``budget``) go into
    ``summary.json`` beside the comparisons.
    """
    from edgesmith.report import plan_budget, read_run
    from edgesmith.report_recommend import recommend

    labels = _labels([Path(d) for d in run_dirs])
    runs = [(label, read_run(d)) for label, d in zip(labels, run_dirs, strict=True)]
    sources = sources_of(runs)
    rows = comparisons(sources)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recommendations = []
    for (label, records), d in zip(runs, run_dirs, strict=True):
        chosen = plan_budget(Path(d)) if budget is None else budget
        recommendations += [{"run": label, **r.to_dict()} for r in recommend(records, chosen)]
    summary = {
        "title": title,
        "reference": next(iter(sources)),
        "sources": list(sources),
        "runs": {label: str(d) for label, d in zip(labels, run_dirs, strict=True)},
        "comparisons": rows,
        "recommendations": recommendations,
    }
    md = render_comparison_markdown(rows, list(sources), title)
    return {
        "csv": write_text(out / "comparison.csv", comparison_csv(rows, list(sources))),
        "summary": write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n"),
        "md": write_text(out / "report.md", md),
        "html": write_text(out / "index.html", render_comparison_html(rows, list(sources), title)),
    }


def _labels(dirs: Sequence[Path]) -> list[str]:
    """Short unique names for run folders: the folder name, its parent's when names repeat."""
    names = [d.resolve().name or str(d) for d in dirs]
    if len(set(names)) < len(names):
        names = [f"{d.resolve().parent.name}/{d.resolve().name}" for d in dirs]
    return [f"{n} ({i + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _cells(entry: dict[str, Any] | None, reference: bool) -> list[str]:
    if entry is None:
        return ["not measured"] + ([] if reference else ["-", "-"])
    acc = format_pct(entry["accuracy"])
    p50 = entry["latency_p50_ms"]
    latency = "-" if p50 is None else f"{p50:.3g} ms ({entry['latency_spread_ms']})"
    main = f"{acc}, {latency}"
    if reference:
        return [main]
    ratio = entry.get("latency_ratio")
    lat = "-" if ratio is None else f"{ratio:.2f}x time, {entry['latency_verdict']}"
    return [main, entry.get("accuracy_test") or "-", lat]


def _table(rows: list[dict[str, Any]], names: list[str]) -> tuple[list[str], list[list[str]]]:
    columns = ["model", "variant", "backend", f"{names[0]} (reference)"]
    for name in names[1:]:
        columns += [name, f"Δ accuracy ({name})", f"latency vs reference ({name})"]
    table = []
    for row in rows:
        cells = [row["model"], f"{row['recipe']} / {row['format']} {row['quant']}", row["backend"]]
        cells += _cells(row["sources"][names[0]], True)
        for name in names[1:]:
            cells += _cells(row["sources"][name], False)
        table.append(cells)
    return columns, table


def render_comparison_markdown(rows: list[dict[str, Any]], names: list[str], title: str) -> str:
    """The comparison as one Markdown table, with the CPUs each source ran on."""
    from edgesmith.console import markdown_table

    parts = [f"# {title}\n", f"Reference: {names[0]}. " + _RULES + "\n"]
    parts.append("".join(f"- {line}\n" for line in _cpu_lines(rows, names)))
    columns, table = _table(rows, names)
    parts.append(markdown_table(columns, table))
    return "\n".join(parts)


_RULES = (
    "Accuracy changes are McNemar's exact test on the same test samples where both records "
    "carry per-sample outcomes (else whether the 95% Wilson intervals overlap); latency is "
    "within noise where the p10-p90 spreads overlap."
)


def _cpu_lines(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    lines = []
    for name in names:
        entry = next((r["sources"][name] for r in rows if r["sources"].get(name)), None)
        if entry and entry.get("cpu"):
            features = ", ".join(entry.get("cpu_features") or [])
            lines.append(
                f"{name}: {entry['device']}, {entry['cpu']}"
                + (f" ({features})" if features else "")
            )
    return lines


def comparison_csv(rows: list[dict[str, Any]], names: list[str]) -> str:
    """One CSV row per file x backend x source, with the deltas against the reference."""
    fields = [*KEY_FIELDS, "source", "device", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
              "size_bytes", "latency_p50_ms", "accuracy_delta_pts", "accuracy_verdict",
              "latency_ratio", "latency_verdict", "cpu"]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        for name in names:
            entry = row["sources"].get(name)
            if entry is None:
                continue
            ci = entry.get("accuracy_ci") or [None, None]
            writer.writerow(
                {**{f: row[f] for f in KEY_FIELDS}, **entry, "source": name,
                 "accuracy_ci_low": ci[0], "accuracy_ci_high": ci[1]}
            )  # fmt: skip
    return buffer.getvalue()


def render_comparison_html(rows: list[dict[str, Any]], names: list[str], title: str) -> str:
    """A self-contained page: the rules, the CPUs, the plot and one sortable table.

    The plotting library is embedded, as in the run report: nothing is fetched.
    """
    from edgesmith.report_html import _PAGE, _SCRIPT, _plotly_js, figure_html

    columns, table = _table(rows, names)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body_rows = "".join(
        "<tr>" + "".join(
            f"<td data-v='{html.escape(json.dumps(c))}'>{html.escape(c)}</td>" for c in r
        ) + "</tr>"
        for r in table
    )  # fmt: skip
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='legend'>Reference: <b>{html.escape(names[0])}</b>. {html.escape(_RULES)}</p>",
        "<ul class='cpu'>"
        + "".join(f"<li>{html.escape(x)}</li>" for x in _cpu_lines(rows, names))
        + "</ul>",
    ]
    figure = comparison_figure(rows, names)
    if figure is not None:
        body.append(figure_html("compare", _FIGURE_TITLE, figure))
    body.append(
        f"<table class='sortable comparison'><thead><tr>{head}</tr></thead>"
        f"<tbody>{body_rows}</tbody></table>"
    )
    return _PAGE.format(
        title=html.escape(title), plotly=_plotly_js(), script=_SCRIPT, body="\n".join(body)
    )


_FIGURE_TITLE = "Accuracy vs latency per run (grey lines join the same file and backend)"

_HOVER = (
    "<b>%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<br>run %{customdata[3]}"
    " on %{customdata[4]}<br>p50 %{customdata[5]} ms (%{customdata[6]})<br>accuracy"
    " %{customdata[7]}<br>vs reference: %{customdata[8]}; latency %{customdata[9]}"
)


def comparison_figure(rows: list[dict[str, Any]], names: list[str]) -> Any | None:
    """Accuracy against p50 latency, a trace per run (None: no point has both numbers).

    Each file x backend is a point per run, joined by a grey line, so a change between
    runs shows as the direction the line goes; hovering a point gives its numbers and its
    verdicts against the reference.
    """
    import plotly.graph_objects as go

    from edgesmith.report_html import _LAYOUT, _color

    def plotted(entry: dict[str, Any] | None) -> bool:
        return bool(entry and entry["latency_p50_ms"] and entry["accuracy"] is not None)

    fig = go.Figure()
    for row in rows:
        entries = [row["sources"].get(n) for n in names]
        points = [e for e in entries if plotted(e)]
        if len(points) > 1:
            fig.add_trace(
                go.Scatter(
                    x=[e["latency_p50_ms"] for e in points],
                    y=[100 * e["accuracy"] for e in points],
                    mode="lines",
                    line={"color": "#bbb", "width": 1},
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
    for n, name in enumerate(names):
        points = [(row, row["sources"].get(name)) for row in rows]
        points = [(row, e) for row, e in points if plotted(e)]
        if not points:
            continue
        fig.add_trace(
            go.Scatter(
                x=[e["latency_p50_ms"] for _, e in points],
                y=[100 * e["accuracy"] for _, e in points],
                mode="markers",
                name=name + (" (reference)" if n == 0 else ""),
                marker={"size": 9, "color": _color(n)},
                customdata=[_point(row, e, name, n == 0) for row, e in points],
                hovertemplate=_HOVER + "<extra></extra>",
            )
        )
    if not fig.data:
        return None
    fig.update_layout(
        xaxis={"type": "log", "title": {"text": "latency p50 (ms, log scale)"}},
        yaxis={"title": {"text": "accuracy (%)"}},
        **_LAYOUT,
    )
    return fig


def _point(row: dict[str, Any], entry: dict[str, Any], name: str, reference: bool) -> list[str]:
    """A point's hover fields: variant, backend, model, run, device, latency, accuracy, deltas."""
    ratio = entry.get("latency_ratio")
    if reference:
        accuracy_vs, latency_vs = "this is the reference", "-"
    else:
        accuracy_vs = entry.get("accuracy_test") or "-"
        latency_vs = "-" if ratio is None else f"{ratio:.2f}x time, {entry['latency_verdict']}"
    ci = entry.get("accuracy_ci")
    accuracy = format_pct(entry["accuracy"]) + (
        f" [{format_pct(ci[0])}, {format_pct(ci[1])}]" if ci else ""
    )
    return [
        f"{row['recipe']} / {row['format']} {row['quant']}",
        str(row["backend"]),
        str(row["model"]),
        name,
        str(entry.get("device") or "-"),
        f"{entry['latency_p50_ms']:.3g}",
        str(entry.get("latency_spread_ms") or "-"),
        accuracy,
        accuracy_vs,
        latency_vs,
    ]
