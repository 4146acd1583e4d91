"""``edgesmith run`` with devices: a row per device, the same accuracy, faults kept per device."""

from __future__ import annotations

import pytest
import yaml

from edgesmith.core.errors import ConfigError
from edgesmith.plan import Plan, load_plan
from edgesmith.plan_runner import records_from_jsonl, run_plan
from edgesmith.report import group_variants, model_table

PLAN = {
    "models": ["cnn-digits"],
    "targets": ["tflite:none", "onnx:none"],
    "backends": ["litert", "onnxruntime"],
    "bench": {"runs": 3, "warmup": 1},
    "parity_samples": 20,
    "calibration_samples": 20,
}


def _loop(board) -> dict:
    return {
        "name": board.name,
        "ssh": board.ssh,
        "python": board.python,
        "ssh_config": board.ssh_config,
        "work_dir": board.work_dir,
    }


def test_plan_devices_parse_and_round_trip(tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(
        yaml.safe_dump(
            {
                "models": ["cnn-digits"],
                "devices": ["local", {"name": "pi4", "ssh": "pi@raspberrypi.local:2222",
                                      "python": "/home/pi/venv/bin/python",
                                      "ssh_config": "pi.conf"}],
            }
        )
    )  # fmt: skip
    plan = load_plan(plan_file)
    local, pi = plan.devices
    assert local.is_local and (pi.user, pi.host, pi.port) == ("pi", "raspberrypi.local", 2222)
    assert pi.ssh_config == str(tmp_path / "pi.conf")  # relative to the plan file
    assert Plan.from_dict(plan.to_dict()) == plan
    for bad in (
        {"devices": []},
        {"devices": ["local", "local"]},
        {"devices": [{"name": "pi4"}]},
        {"devices": [{"name": "pi4", "ssh": "pi@host", "password": "x"}]},
        {"devices": ["ssh://pi@host:99999"]},
    ):
        with pytest.raises(ConfigError):
            Plan.from_dict({"models": ["cnn-digits"], **bad})


def test_run_measures_every_variant_on_every_device(board, tiny_store, tmp_path):
    down = {"name": "down", "ssh": "127.0.0.1:1", "python": board.python}
    plan = Plan.from_dict({**PLAN, "devices": ["local", _loop(board), down]})
    out = tmp_path / "run"
    summary = run_plan(plan, out=out, store=tiny_store)
    by_device: dict[str, list] = {}
    for record in summary.records:
        by_device.setdefault(record.device["name"], []).append(record)
    assert set(by_device) == {"local", "loop", "down"}
    assert len(by_device["local"]) == len(by_device["loop"]) == 2
    for record in by_device["local"] + by_device["loop"]:
        assert record.error is None, record.error
    # The unreachable device fails with one line per variant; the others went on.
    for record in by_device["down"]:
        assert record.error.startswith("device down: unreachable"), record.error
    # The same file and eval set give the same accuracy on the board as here.
    here = {(r.format, r.backend): r.accuracy for r in by_device["local"]}
    there = {(r.format, r.backend): r.accuracy for r in by_device["loop"]}
    assert here == there and all(0.5 < a <= 1 for a in here.values())
    assert all(r.device["edgesmith"] and r.device["cores"] for r in by_device["loop"])
    # The report: a device column, a row per variant and device.
    report = (out / "report.md").read_text()
    assert "| device |" in report.replace("|device|", "| device |")
    variants = group_variants(summary.records)["cnn-digits"]
    columns, rows = model_table(variants, ["litert", "onnxruntime"])
    assert columns[1] == "device"
    shown = sorted((row[0].split(" (")[0].rstrip(" ★"), row[1]) for row in rows)
    expected = [(f"baseline / {f} none", d) for f in ("tflite", "onnx") for d in ("local", "loop")]
    assert shown == sorted(
        [*expected, *((f"baseline / {f} none", "down") for f in ("tflite", "onnx"))]
    )
    local_rows = [row for row in rows if row[1] in ("local", "loop")]
    assert all(
        row[columns.index("litert p50 ms")] != "-" for row in local_rows if "tflite" in row[0]
    )
    assert [r.device for r in records_from_jsonl(out / "results.jsonl")] == [
        r.device for r in summary.records
    ]
    # Nothing of the failed device is in the cache; a second run measures only it again.
    again = run_plan(plan, out=out, store=tiny_store)
    assert again.computed == {}
    assert [r.accuracy for r in again.records] == [r.accuracy for r in summary.records]
