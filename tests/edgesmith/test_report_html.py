"""The interactive page: self-contained, plots with hover labels, filters, answers first."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from edgesmith.core.records import ResultRecord, pack_outcomes
from edgesmith.report import write_report

N = 270


def _rec(model, recipe, fmt, quant, size, hits, backend, p50, **kw):
    correct = np.zeros(N, bool)
    correct[:hits] = True
    return ResultRecord(
        model=model, family=model.split("-")[0], recipe=recipe, format=fmt, quant=quant,
        size_bytes=size, accuracy=hits / N, samples=N, split="test", backend=backend,
        correct=pack_outcomes(correct), device={"name": "local"},
        latency_ms={"p10": 0.9 * p50, "p50": p50, "p90": 1.1 * p50},
        environment={"cpu": "Test CPU 9000", "cpu_features": ["avx2", "fma"]}, **kw,
    )  # fmt: skip


PROFILE = [{"op": "CONV_2D", "delegate": "XNNPACK", "ms": 0.5, "share": 0.8, "count": 2},
           {"op": "SOFTMAX", "delegate": "", "ms": 0.1, "share": 0.2, "count": 1}]  # fmt: skip
RECORDS = [
    _rec("cnn-digits", "baseline", "tflite", "none", 80_000, 267, "litert", 2.0),
    _rec("cnn-digits", "baseline", "tflite", "int8", 20_000, 266, "litert", 1.0,
         op_profile_by_type=PROFILE, notes=["offline edgetpu analysis: 7 of 7 ops map"]),
    _rec("cnn-digits", "baseline", "onnx", "none", 79_000, 267, "onnxruntime", 3.0),
    _rec("lstm-digits", "baseline", "tflite", "none", 60_000, 250, "litert", 4.0),
    _rec("lstm-digits", "prune80", "tflite", "int8", 9_000, 240, "litert", 3.0),
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, write_report(RECORDS, out, title="t", budget=1.0)


def _figures(page: str) -> list[dict]:
    found = re.findall(
        r"<script type='application/json' class='figure'[^>]*>(.*?)</script>", page, re.S
    )
    return [json.loads(spec.replace("<\\/", "</")) for spec in found]


def test_page_is_self_contained(report):
    _, paths = report
    page = paths["html"].read_text()
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*href=[\"']?(https?:)?//", page)
    assert 'src="http' not in page and "cdn." not in page.split("<script>", 1)[0]
    assert "Plotly" in page and len(page) > 1_000_000  # the library itself is embedded


def test_plots_carry_hover_labels_fronts_and_profiles(report):
    _, paths = report
    size, latency, profile = _figures(paths["html"].read_text())
    points = [t for t in size["data"] if t.get("mode") == "markers"]
    assert {t["name"] for t in points} == {"cnn-digits", "lstm-digits"}
    cnn = next(t for t in points if t["name"] == "cnn-digits")
    assert "customdata[5]" in cnn["hovertemplate"] and "95% CI" in cnn["hovertemplate"]
    labels = [cd[5] for cd in cnn["customdata"]]
    assert "baseline / tflite int8" in labels and len(labels) == 3
    int8 = cnn["customdata"][labels.index("baseline / tflite int8")]
    assert int8[12] == "100%" and "within noise" in int8[11]
    fronts = [t for t in size["data"] if "Pareto front" in t["name"]]
    assert fronts and all(t["text"] for t in fronts)
    assert any("Test CPU 9000" in cd[12] for t in latency["data"] for cd in t["customdata"])
    assert {t["name"] for t in profile["data"]} == {"CONV_2D", "SOFTMAX"}
    assert profile["layout"]["barmode"] == "stack"


def test_recommendations_come_first_and_match_summary(report):
    out, paths = report
    page = paths["html"].read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget_pts"] == 1.0
    assert page.index("id='recommendations'") < page.index("class='plot'")
    for rec in summary["recommendations"]:
        assert set(rec) >= {"model", "goal", "variant", "accuracy", "size_bytes", "latency_ms",
                            "backend", "device", "why"}  # fmt: skip
    smallest = {
        r["model"]: r["variant"] for r in summary["recommendations"] if r["goal"] == "smallest"
    }
    # cnn int8 loses 1 of 267 samples: within budget; lstm prune80 loses 3.7 pt: not.
    assert smallest == {
        "cnn-digits": "baseline / tflite int8",
        "lstm-digits": "baseline / tflite none",
    }
    assert (
        "data-goal='smallest' data-model='cnn-digits' data-variant='baseline / tflite int8'" in page
    )
    assert "Test CPU 9000 (avx2, fma)" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_page_works_offline_in_a_browser(report):
    sync_api = pytest.importorskip("playwright.sync_api")
    out, paths = report
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(offline=True, viewport={"width": 1300, "height": 1000})
        context.route(re.compile(r"^https?://"), lambda route: route.abort())
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(paths["html"].as_uri())
        page.wait_for_selector("#plot-accuracy-size .main-svg")
        points = "#plot-accuracy-size .scatterlayer .trace:first-child .point"
        assert page.locator(points).count() == 3
        page.locator("#plot-accuracy-size").scroll_into_view_if_needed()
        box = page.locator(points).first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2 - 20, box["y"] + box["height"] / 2 - 20)
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
        page.wait_for_selector("#plot-accuracy-size .hoverlayer .hovertext", state="attached")
        hover = page.locator("#plot-accuracy-size .hoverlayer").text_content()
        assert "baseline / " in hover and "cnn-digits" in hover and "95% CI" in hover
        before = page.locator("#plot-accuracy-size .scatterlayer .point").count()
        page.select_option("select[data-filter='model']", "lstm-digits")
        page.wait_for_timeout(300)
        after = page.locator("#plot-accuracy-size .scatterlayer .point").count()
        assert 0 < after < before
        assert page.locator("table.results tbody tr:visible").count() == 2
        page.select_option("select[data-filter='model']", "")
        page.locator("table.results").first.locator("th", has_text="accuracy").first.click()
        page.screenshot(path=str(out / "screenshot.png"), full_page=True)
        browser.close()
    assert errors == []
    assert (out / "screenshot.png").stat().st_size > 10_000
