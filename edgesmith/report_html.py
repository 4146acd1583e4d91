"""The interactive report page: one HTML file that works offline.

Plots are plotly figures (built with ``plotly.graph_objects``) whose JavaScript library is
embedded in the page, so the file opens with no network. Every point carries its hover
label (variant, recipe, format, the numbers and their intervals); the Pareto fronts are
drawn and labelled; filters (family, model, format, backend, device) apply to the plots
and the tables at once; table columns sort on a click. The page's own script only filters
and sorts: every number in it comes from the records.

Example:
    >>> page = render_page(records, title="demo", budget=1.0)  # doctest: +SKIP
    >>> 'src="http' in page  # doctest: +SKIP
    False
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from edgesmith.core.formatting import format_bytes, format_pct
from edgesmith.core.records import ResultRecord
from edgesmith.report_model import Variant, baseline_of, compatibility, group_variants
from edgesmith.report_recommend import Recommendation, recommend
from edgesmith.report_stats import format_ci, format_spread, latency_spread, spread_label

# customdata[0:5] of every plotted point: what the filters look at, in this order.
FILTERS = ("family", "model", "format", "backend", "device")


def render_page(
    records: Sequence[ResultRecord], *, title: str = "edgesmith report", budget: float = 1.0
) -> str:
    """The whole page: answers, plots, tables, failures and notes."""
    from edgesmith.report import (
        LEGEND,
        RECOMMENDATION_COLUMNS,
        backends_in,
        cpus_by_device,
        failures_and_notes,
        recommendation_rows,
        table_cells,
    )

    backends = backends_in(records)
    per_model = group_variants(records)
    recs = recommend(records, budget)
    cpus = cpus_by_device(records)
    body = [f"<h1>{html.escape(title)}</h1>", _filters(records)]
    body.append("<section id='recommendations'><h2>Which file to ship</h2>")
    body.append(
        f"<p class='budget'>Accuracy budget: <b>{budget:g} pt</b> against the float baseline "
        "(plan setting <code>budget</code>). Differences the test set cannot resolve are "
        "called <i>within noise</i>, never better or worse.</p>"
    )
    for model in per_model:
        mine = [r for r in recs if r.model == model]
        rows = recommendation_rows(mine)
        body.append(f"<h3 data-model='{html.escape(model)}'>{html.escape(model)}</h3>")
        body.append(_answers_table(RECOMMENDATION_COLUMNS, rows, mine))
    body.append("</section>")
    if cpus:
        body.append(
            "<p class='cpu'>Latencies measured on "
            + "; ".join(f"<b>{html.escape(d)}</b>: {html.escape(c)}" for d, c in cpus.items())
            + "</p>"
        )
    figures = {"accuracy-size": accuracy_size_figure(per_model)}
    if backends:
        figures["accuracy-latency"] = accuracy_latency_figure(per_model, cpus)
    profile = op_profile_figure(records)
    if profile is not None:
        figures["op-profile"] = profile
    titles = {
        "accuracy-size": "Accuracy vs size (dashed: Pareto front per model)",
        "accuracy-latency": "Accuracy vs latency (p50, bars: p10-p90)",
        "op-profile": "Where time goes: per op type (bench --profile)",
    }
    body += [figure_html(key, titles[key], figure) for key, figure in figures.items()]
    body.append(f"<h2>All variants</h2><p class='legend'>{html.escape(LEGEND)}</p>")
    for model, variants in per_model.items():
        base = baseline_of(variants)
        heading = f"{model} ({variants[0].family})"
        if base and base.accuracy is not None:
            heading += f" — float baseline accuracy {format_pct(base.accuracy)}"
        columns, rows = table_cells(variants, backends)
        body.append(f"<h3 data-model='{html.escape(model)}'>{html.escape(heading)}</h3>")
        devices = list(dict.fromkeys(v.device for v in variants))
        where = [f"{d}: {cpus[d]}" for d in devices if d in cpus]
        if where:
            body.append(f"<p class='cpu'>Latencies on {html.escape('; '.join(where))}</p>")
        body.append(_results_table(columns, rows))
    failures, notes = failures_and_notes(records)
    for heading, items in (("Failures", failures), ("Notes", notes)):
        if items:
            body.append(f"<h2>{heading}</h2><ul class='notes'>")
            body += [f"<li>{html.escape(n)}</li>" for n in items]
            body.append("</ul>")
    return _PAGE.format(
        title=html.escape(title), plotly=_plotly_js(), script=_SCRIPT, body="\n".join(body)
    )


def figure_html(key: str, title: str, figure: Any) -> str:
    """A plot's heading, its div and its figure as JSON, which the page script draws.

    A page showing it embeds :func:`_plotly_js` and runs ``_SCRIPT`` (see :func:`render_page`).
    """
    spec = figure.to_json().replace("</", "<\\/")
    return (
        f"<h2>{html.escape(title)}</h2><div class='plot' id='plot-{key}'></div>\n"
        f"<script type='application/json' class='figure' data-target='plot-{key}'>{spec}</script>"
    )


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().replace("</script", "<\\/script")


# --- figures ---------------------------------------------------------------------------------

_HOVER_FILE = (
    "<b>%{customdata[5]}</b><br>%{customdata[1]} (%{customdata[0]})<br>recipe %{customdata[6]},"
    " %{customdata[2]} %{customdata[7]}<br>size %{customdata[8]}<br>accuracy %{customdata[9]}"
    " 95% CI %{customdata[10]}<br>vs baseline: %{customdata[11]}<br>Edge TPU %{customdata[12]},"
    " GPU %{customdata[13]}"
)


def _file_point(v: Variant, base: Variant | None) -> list[Any]:
    from edgesmith.report import _vs_baseline

    scored = v.scored
    backends = sorted({r.backend for r in v.records if r.backend and r.latency_ms})
    return [
        v.family, v.model, v.format, "|".join(backends), v.device,
        v.label, v.recipe, v.quant, format_bytes(v.size_bytes), format_pct(v.accuracy),
        format_ci(scored.accuracy_ci if scored else None), _vs_baseline(v, base)[0],
        *(
            (compatibility(v, "edgetpu").cell, compatibility(v, "gpu").cell)
            if v.format == "tflite"
            else ("n/a", "n/a")
        ),
    ]  # fmt: skip


def _errors(points: Sequence[tuple[float, float, float]]) -> dict[str, Any]:
    """Asymmetric error bars from (value, low, high) triples."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [high - value for value, _, high in points],
        "arrayminus": [value - low for value, low, _ in points],
        "thickness": 1,
        "width": 2,
    }


def accuracy_size_figure(per_model: dict[str, list[Variant]]) -> Any:
    """Accuracy (with its 95% CI) against file size, a trace per model, fronts labelled."""
    import plotly.graph_objects as go

    from edgesmith.report_model import pareto_front

    fig = go.Figure()
    for n, (model, variants) in enumerate(per_model.items()):
        color = _color(n)
        base = baseline_of(variants)
        first_device = variants[0].device
        points = [
            v
            for v in variants
            if v.size_bytes and v.accuracy is not None and v.device == first_device
        ]
        if not points:
            continue
        cis = [((v.scored.accuracy_ci if v.scored else None) or [v.accuracy] * 2) for v in points]
        fig.add_trace(
            go.Scatter(
                x=[v.size_bytes / 1024 for v in points],
                y=[100 * v.accuracy for v in points],
                error_y=_errors(
                    [
                        (100 * v.accuracy, 100 * ci[0], 100 * ci[1])
                        for v, ci in zip(points, cis, strict=True)
                    ]
                ),
                mode="markers",
                name=model,
                legendgroup=model,
                customdata=[_file_point(v, base) for v in points],
                hovertemplate=_HOVER_FILE + "<extra></extra>",
                marker={
                    "size": 9,
                    "color": color,
                    "symbol": [_SYMBOLS.get(v.format, "diamond") for v in points],
                },
            )
        )
        front = pareto_front(points)
        fig.add_trace(
            go.Scatter(
                x=[v.size_bytes / 1024 for v in front],
                y=[100 * v.accuracy for v in front],
                mode="lines+text",
                text=[f"{v.recipe} {v.format} {v.quant}" for v in front],
                textposition="top center",
                textfont={"size": 10},
                line={"dash": "dash", "width": 1, "color": color},
                name=f"{model}: Pareto front",
                legendgroup=model,
                customdata=[_file_point(v, base) for v in front],
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        xaxis={"type": "log", "title": {"text": "model file size (KiB, log scale)"}},
        yaxis={"title": {"text": "accuracy (%)"}},
        **_LAYOUT,
    )
    return fig


_SYMBOLS = {"tflite": "circle", "onnx": "square"}


def _color(n: int) -> str:
    """The n-th model's colour, shared by its points and its front."""
    from plotly.colors import qualitative

    return qualitative.Plotly[n % len(qualitative.Plotly)]


_LAYOUT: dict[str, Any] = {
    "height": 460,
    "margin": {"l": 60, "r": 20, "t": 20, "b": 50},
    "hovermode": "closest",
    "legend": {"orientation": "h", "y": -0.18},
    "template": "plotly_white",
}

_HOVER_RUN = (
    "<b>%{customdata[5]}</b> on %{customdata[3]} (%{customdata[4]})<br>%{customdata[1]}"
    " (%{customdata[0]})<br>p50 %{customdata[6]} ms, %{customdata[7]} %{customdata[8]} ms"
    "<br>accuracy %{customdata[9]} 95% CI %{customdata[10]}<br>size %{customdata[11]}"
    "<br>CPU %{customdata[12]}"
)


def accuracy_latency_figure(per_model: dict[str, list[Variant]], cpus: dict[str, str]) -> Any:
    """Accuracy against p50 latency (p10-p90 bars), a point per file x backend x device."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for n, (model, variants) in enumerate(per_model.items()):
        color = _color(n)
        points: list[tuple[Variant, ResultRecord]] = [
            (v, r)
            for v in variants
            for r in v.records
            if r.latency_ms
            and r.error is None
            and r.latency_ms.get("p50")
            and v.accuracy is not None
        ]
        if not points:
            continue
        data = []
        for v, r in points:
            scored = v.scored
            data.append(
                [
                    v.family, v.model, v.format, r.backend, v.device, v.label,
                    f"{r.latency_ms['p50']:.3g}", spread_label(r), format_spread(r),
                    format_pct(v.accuracy), format_ci(scored.accuracy_ci if scored else None),
                    format_bytes(v.size_bytes), cpus.get(v.device, "-"),
                ]
            )  # fmt: skip
        spreads = [latency_spread(r) or (r.latency_ms["p50"],) * 2 for _, r in points]
        fig.add_trace(
            go.Scatter(
                x=[r.latency_ms["p50"] for _, r in points],
                y=[100 * v.accuracy for v, _ in points],
                error_x=_errors(
                    [
                        (r.latency_ms["p50"], s[0], s[1])
                        for (_, r), s in zip(points, spreads, strict=True)
                    ]
                ),
                mode="markers",
                name=model,
                legendgroup=model,
                customdata=data,
                hovertemplate=_HOVER_RUN + "<extra></extra>",
                marker={
                    "size": 9,
                    "color": color,
                    "symbol": [_SYMBOLS.get(v.format, "diamond") for v, _ in points],
                },
            )
        )
        front = _latency_front(points)
        fig.add_trace(
            go.Scatter(
                x=[r.latency_ms["p50"] for _, r in front],
                y=[100 * v.accuracy for v, _ in front],
                mode="lines+text",
                text=[f"{v.recipe} {v.format} {v.quant} ({r.backend})" for v, r in front],
                textposition="top center",
                textfont={"size": 10},
                line={"dash": "dash", "width": 1, "color": color},
                name=f"{model}: Pareto front",
                legendgroup=model,
                customdata=[data[points.index(p)] for p in front],
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        xaxis={"type": "log", "title": {"text": "latency p50 (ms, batch 1, log scale)"}},
        yaxis={"title": {"text": "accuracy (%)"}},
        **_LAYOUT,
    )
    return fig


def _latency_front(
    points: Sequence[tuple[Variant, ResultRecord]],
) -> list[tuple[Variant, ResultRecord]]:
    """Points no other is both faster (p50) and more accurate than, by latency."""

    def beats(a: tuple[Variant, ResultRecord], b: tuple[Variant, ResultRecord]) -> bool:
        la, lb = a[1].latency_ms["p50"], b[1].latency_ms["p50"]
        return (
            la <= lb
            and a[0].accuracy >= b[0].accuracy
            and (la < lb or a[0].accuracy > b[0].accuracy)
        )

    front = [p for p in points if not any(beats(q, p) for q in points)]
    return sorted(front, key=lambda p: p[1].latency_ms["p50"])


def op_profile_figure(records: Sequence[ResultRecord]) -> Any | None:
    """Stacked bars of time per op type, a bar per profiled file x backend (None: no profiles)."""
    import plotly.graph_objects as go

    from edgesmith.report_model import device_name

    profiled = [r for r in records if r.op_profile_by_type and r.error is None]
    if not profiled:
        return None
    bars = [
        f"{r.model} / {r.recipe} / {r.format} {r.quant} / {r.backend} ({device_name(r)})"
        for r in profiled
    ]
    ops = list(
        dict.fromkeys(str(e.get("op")) for r in profiled for e in r.op_profile_by_type or [])
    )
    fig = go.Figure()
    for op in ops:
        ms, shares, meta = [], [], []
        for r, bar in zip(profiled, bars, strict=True):
            entries = [e for e in r.op_profile_by_type or [] if str(e.get("op")) == op]
            ms.append(sum(float(e.get("ms") or 0) for e in entries))
            shares.append(sum(float(e.get("share") or 0) for e in entries))
            delegates = ", ".join(
                sorted({str(e.get("delegate")) for e in entries if e.get("delegate")})
            )
            meta.append(
                [r.family, r.model, r.format, r.backend, device_name(r), bar, op, delegates or "-"]
            )
        fig.add_trace(
            go.Bar(
                x=bars,
                y=ms,
                name=op,
                customdata=[[*m, f"{100 * s:.1f}%"] for m, s in zip(meta, shares, strict=True)],
                hovertemplate="<b>%{customdata[6]}</b> (%{customdata[7]})<br>%{customdata[5]}"
                "<br>%{y:.4g} ms, %{customdata[8]} of the run<extra></extra>",
            )
        )
    layout = {**_LAYOUT, "height": 620, "legend": {"orientation": "v"}}
    fig.update_layout(
        barmode="stack",
        xaxis={"title": {"text": ""}, "automargin": True, "tickangle": -35},
        yaxis={"title": {"text": "ms per inference (profiled)"}},
        **layout,
    )
    return fig


# --- tables and controls ---------------------------------------------------------------------


def _filters(records: Sequence[ResultRecord]) -> str:
    from edgesmith.report_model import device_name

    values: dict[str, list[str]] = {
        "family": [r.family or "?" for r in records],
        "model": [r.model or "?" for r in records],
        "format": [r.format or "keras" for r in records],
        "backend": [r.backend for r in records if r.backend and r.latency_ms],
        "device": [device_name(r) for r in records],
    }
    selects = []
    for name in FILTERS:
        options = "".join(
            f"<option value='{html.escape(v)}'>{html.escape(v)}</option>"
            for v in dict.fromkeys(values[name])
        )
        selects.append(
            f"<label>{name} <select data-filter='{name}'><option value=''>all</option>"
            f"{options}</select></label>"
        )
    return "<div id='filters'>Show: " + " ".join(selects) + "</div>"


def _answers_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], recs: Sequence[Recommendation]
) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row, rec in zip(rows, recs, strict=True):
        attrs = (
            f" data-goal='{rec.goal}' data-model='{html.escape(rec.model)}'"
            f" data-variant='{html.escape(rec.variant or '')}'"
            f" data-format='{html.escape(rec.format or '')}'"
            f" data-backends='{html.escape(rec.backend or '')}'"
            f" data-device='{html.escape(rec.device or '')}'"
        )
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr class='answer'{attrs}>{cells}</tr>")
    return f"<table class='answers'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _results_table(columns: Sequence[str], rows: Sequence[tuple[Variant, list[Any]]]) -> str:
    head = "".join(f"<th title='click to sort'>{html.escape(c)}</th>" for c in columns)
    body = []
    for v, cells in rows:
        backends = "|".join(sorted({r.backend for r in v.records if r.backend and r.latency_ms}))
        attrs = (
            f" data-family='{html.escape(v.family)}' data-model='{html.escape(v.model)}'"
            f" data-format='{html.escape(v.format)}' data-backends='{html.escape(backends)}'"
            f" data-device='{html.escape(v.device)}'"
        )
        tds = "".join(
            f"<td data-v='{html.escape(json.dumps(value))}'>{html.escape(str(text))}</td>"
            for text, value in cells
        )
        body.append(f"<tr{attrs}>{tds}</tr>")
    return (
        f"<table class='results sortable'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
td {{ white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; white-space: nowrap; }}
th {{ background: #f3f3f3; cursor: pointer; }}
table.answers td:last-child {{ white-space: normal; text-align: left; min-width: 20rem; max-width: 34rem; }}
table.answers td:nth-child(2) {{ font-weight: 600; }}
#recommendations {{ background: #f6f9ff; border: 1px solid #c9d8f0; padding: 0.5rem 1rem; }}
#filters {{ position: sticky; top: 0; background: #fff; padding: 0.5rem 0; z-index: 10; }}
#filters label {{ margin-right: 1rem; }}
.plot {{ width: 100%; max-width: 1100px; }}
.cpu, .legend, .budget {{ font-size: 0.85rem; color: #444; max-width: 70rem; }}
</style>
<script>{plotly}</script>
</head>
<body>
{body}
<script>{script}</script>
</body></html>
"""

# Filters and sorting only; the figures and the numbers come from the records.
_SCRIPT = """
(function () {
  const FIELDS = ["family", "model", "format", "backend", "device"];
  const figures = [];
  document.querySelectorAll("script.figure").forEach(function (node) {
    const spec = JSON.parse(node.textContent);
    const div = document.getElementById(node.dataset.target);
    figures.push({div: div, spec: spec});
    Plotly.newPlot(div, spec.data, spec.layout, {displaylogo: false, responsive: true});
  });
  function chosen() {
    const out = {};
    document.querySelectorAll("#filters select").forEach(function (s) { out[s.dataset.filter] = s.value; });
    return out;
  }
  function keeps(values, want) {
    return FIELDS.every(function (field, i) {
      const w = want[field];
      if (!w) return true;
      return String(values[i] || "").split("|").indexOf(w) >= 0;
    });
  }
  function pick(array, mask) { return array.filter(function (_, i) { return mask[i]; }); }
  function filtered(trace, want) {
    if (!trace.customdata) return trace;
    const mask = trace.customdata.map(function (cd) { return keeps(cd, want); });
    const out = Object.assign({}, trace);
    ["x", "y", "text", "customdata"].forEach(function (k) {
      if (Array.isArray(trace[k])) out[k] = pick(trace[k], mask);
    });
    if (trace.marker && Array.isArray(trace.marker.symbol)) {
      out.marker = Object.assign({}, trace.marker, {symbol: pick(trace.marker.symbol, mask)});
    }
    ["error_x", "error_y"].forEach(function (k) {
      if (trace[k] && trace[k].array) {
        out[k] = Object.assign({}, trace[k], {array: pick(trace[k].array, mask),
                                              arrayminus: pick(trace[k].arrayminus, mask)});
      }
    });
    return out;
  }
  function rowKeeps(row, want) {
    return keeps([row.dataset.family, row.dataset.model, row.dataset.format,
                  row.dataset.backends, row.dataset.device], want);
  }
  function apply() {
    const want = chosen();
    figures.forEach(function (f) {
      Plotly.react(f.div, f.spec.data.map(function (t) { return filtered(t, want); }), f.spec.layout);
    });
    document.querySelectorAll("table.results tbody tr").forEach(function (row) {
      row.style.display = rowKeeps(row, want) ? "" : "none";
    });
    document.querySelectorAll("#recommendations [data-model]").forEach(function (el) {
      el.style.display = !want.model || el.dataset.model === want.model ? "" : "none";
    });
  }
  document.querySelectorAll("#filters select").forEach(function (s) { s.addEventListener("change", apply); });
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        const up = th.dataset.order !== "asc";
        th.dataset.order = up ? "asc" : "desc";
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        function key(row) { return JSON.parse(row.cells[column].dataset.v || "null"); }
        rows.sort(function (a, b) {
          const x = key(a), y = key(b);
          if (x === null || y === null) return (x === null) - (y === null);
          const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return up ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""
