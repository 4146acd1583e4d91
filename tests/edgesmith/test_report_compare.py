"""``edgesmith report RUN_DIR RUN_DIR --out DIR``: runs side by side, deltas under the noise rules."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from edgesmith.cli import main
from edgesmith.core.errors import ConfigError
from edgesmith.core.records import ResultRecord, pack_outcomes
from edgesmith.report import write_report

N = 300


def _rec(quant, hits, p50, device="local", cpu="Host CPU"):
    correct = np.zeros(N, bool)
    correct[hits] = True
    return ResultRecord(
        model="m", family="cnn", recipe="baseline", format="tflite", quant=quant,
        size_bytes=1000, accuracy=float(correct.mean()), samples=N, split="test",
        correct=pack_outcomes(correct), backend="litert", device={"name": device},
        latency_ms={"p10": 0.95 * p50, "p50": p50, "p90": 1.05 * p50},
        environment={"cpu": cpu, "cpu_features": ["neon"] if device != "local" else ["avx2"]},
    )  # fmt: skip


@pytest.fixture()
def runs(tmp_path):
    host = [_rec("none", np.arange(290), 1.0), _rec("int8", np.arange(289), 0.5)]
    # The board: the float file is 10x slower; int8 loses 20 samples there (a real drop).
    pi = [
        _rec("none", np.arange(290), 10.0, "pi4", "Cortex-A72"),
        _rec("int8", np.arange(269), 0.51, "pi4", "Cortex-A72"),
    ]
    write_report(host, tmp_path / "host")
    write_report(pi, tmp_path / "pi")
    return tmp_path


def test_compare_two_runs_through_the_cli(runs, capsys):
    out = runs / "cmp"
    assert main(["report", str(runs / "host"), str(runs / "pi"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"] == ["host", "pi"]
    rows = {(r["quant"]): r["sources"]["pi"] for r in summary["comparisons"]}
    assert rows["none"]["latency_verdict"] == "slower" and rows["none"]["latency_ratio"] == 10.0
    assert rows["none"]["accuracy_verdict"] == "within noise"
    assert rows["int8"]["latency_verdict"] == "within noise"  # 0.51 vs 0.5 ms, spreads overlap
    assert rows["int8"]["accuracy_verdict"] == "worse"  # 20 samples lost, McNemar
    assert {r["run"] for r in summary["recommendations"]} == {"host", "pi"}
    table = list(csv.DictReader((out / "comparison.csv").open()))
    assert len(table) == 4 and {t["source"] for t in table} == {"host", "pi"}
    md = (out / "report.md").read_text()
    assert "Cortex-A72 (neon)" in md and "Host CPU (avx2)" in md
    page = (out / "index.html").read_text()
    assert "within noise" in page and 'src="http' not in page
    assert not re.search(r"<script[^>]*\bsrc=", page)  # plotly.js is embedded, not fetched
    assert "<div class='plot' id='plot-compare'>" in page
    figure = json.loads(re.search(r"data-target='plot-compare'>(.*?)</script>", page)[1])
    points = [t for t in figure["data"] if t.get("mode") == "markers"]
    assert [t["name"] for t in points] == ["host (reference)", "pi"]
    pi_int8 = next(cd for cd in points[1]["customdata"] if cd[0] == "baseline / tflite int8")
    assert pi_int8[3] == "pi" and pi_int8[4] == "pi4" and pi_int8[5] == "0.51"
    assert "worse" in pi_int8[8] and pi_int8[9] == "1.02x time, within noise"
    # each file is joined across the two runs: two files, two lines
    assert sum(t.get("mode") == "lines" for t in figure["data"]) == 2
    assert "index.html" in capsys.readouterr().out


def test_one_run_is_rendered_again_with_a_new_budget(runs):
    out = runs / "again"
    assert main(["report", str(runs / "host"), "--out", str(out), "--budget", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    smallest = next(r for r in summary["recommendations"] if r["goal"] == "smallest")
    assert summary["budget_pts"] == 0 and smallest["quant"] == "none"


def test_bad_inputs_are_one_line_errors(runs, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no results.jsonl" in capsys.readouterr().err
    (runs / "host" / "results.jsonl").write_text("{not json\n")
    with pytest.raises(ConfigError, match=r"results\.jsonl:1"):
        from edgesmith.report import read_run

        read_run(runs / "host")
    one = runs / "pi"
    assert main(["report", str(one), "--compare", "--out", str(tmp_path / "c")]) == 2
