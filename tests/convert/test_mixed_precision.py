"""``--quant auto``: candidates, the selection rule, selective int8, the record's strategy."""

from __future__ import annotations

import json

import pytest

from edgesmith.cli import main
from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.quant_auto import select_candidate
from edgesmith.convert.quant_candidates import (
    Candidate,
    precision_summary,
    reference_ops_from_profile,
    selective_candidates,
    widened_float_ops,
)
from edgesmith.core.errors import ConfigError, EdgesmithError
from edgesmith.plan import Target

FAST = {"calibration_samples": 64, "eval_samples": 96}
LAYER_NORM_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SUB")


def _cand(name, quant, size, drop, ms, error=None):
    return Candidate(name, quant, "", content=b"x" * size, drop_pt=drop, latency_ms=ms, error=error)


def test_selection_takes_the_fastest_8bit_file_within_the_budget():
    cands = [
        _cand("float32", "none", 400, 0.0, 1.0),  # fastest, but 32-bit weights
        _cand("int8", "int8", 100, 0.1, 2.0),
        _cand("dynamic", "dynamic", 104, 0.4, 1.2),
        _cand("sel", "int8", 102, 0.9, 1.1),  # over the budget
        _cand("broken", "int8", 90, None, None, error="did not convert"),
    ]
    chosen, reason = select_candidate(cands, 0.5, "latency")
    assert chosen.name == "dynamic"
    assert "dynamic" in reason and "sel" not in reason.split("(")[-1]
    assert select_candidate(cands, 0.5, "size")[0].name == "int8"
    # A larger budget admits the selective file, which is then the fastest 8-bit one.
    assert select_candidate(cands, 1.0, "latency")[0].name == "sel"


def test_selection_falls_back_to_float_then_to_the_most_accurate():
    cands = [
        _cand("float32", "none", 400, 0.0, 1.0),
        _cand("fp16", "fp16", 200, 0.0, 0.9),
        _cand("int8", "int8", 100, 3.0, 2.0),
    ]
    chosen, reason = select_candidate(cands, 0.5, "latency")
    assert chosen.name == "fp16" and "no 8-bit file" in reason
    cands = [_cand("float32", "none", 400, 1.0, 1.0), _cand("int8", "int8", 100, 3.0, 0.5)]
    assert select_candidate(cands, 0.5, "latency")[0].name == "float32"
    with pytest.raises(EdgesmithError, match="no candidate"):
        select_candidate([_cand("int8", "int8", 100, None, None, error="x")], 0.5, "latency")


def test_profile_proposes_the_ops_that_ran_outside_the_kernel_library():
    profile = [
        {"op": "Fully Connected (NC, QS8, QC8W) GEMM", "delegate": "XNNPACK", "ms": 0.01},
        {"op": "SQUARED_DIFFERENCE", "delegate": None, "ms": 0.005},
        {"op": "SOFTMAX", "delegate": None, "ms": 0.001},
        {"op": "SQUARED_DIFFERENCE", "delegate": None, "ms": 0.004},
        {"op": "DEQUANTIZE", "delegate": None, "ms": 0.002},
    ]
    found = reference_ops_from_profile(profile)
    assert list(found) == ["SQUARED_DIFFERENCE", "SOFTMAX"]
    assert found["SQUARED_DIFFERENCE"] == pytest.approx(0.009)
    graph = ["FULLY_CONNECTED", "MEAN", "SQUARED_DIFFERENCE", "RESHAPE", "SOFTMAX", "ADD"]
    wide = widened_float_ops(graph, list(found))
    assert set(wide) == {"SQUARED_DIFFERENCE", "SOFTMAX", "MEAN", "ADD"}
    cands = selective_candidates(list(found), graph)
    assert [c.float_ops for c in cands] == [tuple(found), wide]
    assert all(c.quant == "int8" and c.weight_bits == 8 for c in cands)
    assert selective_candidates([], graph) == []


def test_auto_config_is_validated_and_leaves_other_records_unchanged():
    auto = ConversionConfig(quant="auto", budget=1.0, objective="size")
    assert ConversionConfig.from_dict(json.loads(json.dumps(auto.to_dict()))) == auto
    assert auto.needs_calibration and auto.tolerance.max_abs_diff is None
    plain = ConversionConfig(quant="int8").to_dict()
    assert not {"budget", "objective", "backend"} & set(plain)
    for bad, message in [
        ({"format": "onnx"}, "--format tflite"),
        ({"budget": -1.0}, "--budget"),
        ({"objective": "energy"}, "--objective"),
        ({"backend": "onnxruntime"}, "runs .tflite"),
        ({"sparse": True}, "--sparse"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ConversionConfig(quant="auto", **bad)
    assert str(Target.parse("tflite:auto")) == "tflite:auto"
    with pytest.raises(ConfigError, match="onnx:auto"):
        Target.parse("onnx:auto")


def test_cli_rejects_auto_for_onnx_before_loading_anything(tmp_path, capsys):
    code = main(
        [
            "convert",
            "cnn-digits",
            "--format",
            "onnx",
            "--quant",
            "auto",
            "--out",
            str(tmp_path / "m.onnx"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--quant auto" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def auto_result(tiny_models, tmp_path_factory):
    from edgesmith.convert.converter import convert_model

    out = tmp_path_factory.mktemp("auto") / "transformer-auto.tflite"
    config = ConversionConfig(quant="auto", **FAST)
    return out, convert_model(tiny_models["transformer"], out=out, config=config)


def test_auto_writes_the_fastest_measured_file_within_the_budget(auto_result):
    from edgesmith.convert.tflite import int8_report

    out, result = auto_result
    record, strategy = result.record, result.extra["strategy"]
    auto = strategy["auto"]
    assert record.quant == "auto" and record.parity["ok"]
    report = int8_report(out.read_bytes())  # a valid flatbuffer the reader accepts
    assert "FULLY_CONNECTED" in report["ops"]
    rows = {row["name"]: row for row in auto["candidates"]}
    assert {"float32", "int8", "dynamic", "fp16"} <= set(rows)
    measured = [r for r in rows.values() if "error" not in r]
    for row in measured:
        assert row["latency_ms"] > 0 and 0 <= row["accuracy"] <= 1 and row["size_bytes"] > 0
    chosen = rows[auto["chosen"]]
    assert chosen["size_bytes"] == out.stat().st_size
    assert chosen["drop_pt"] <= auto["budget_pt"]
    # The selection by the record's own numbers: the fastest 8-bit file within the budget.
    pool = [r for r in measured if r["weight_bits"] == 8 and r["drop_pt"] <= auto["budget_pt"]]
    assert pool and chosen["weight_bits"] == 8
    assert chosen["latency_ms"] == min(r["latency_ms"] for r in pool)
    assert chosen["size_bytes"] < rows["float32"]["size_bytes"]
    assert any(note.startswith("quant auto: chose") for note in record.notes)
    assert strategy["precision"]  # what computes in which precision in the chosen file
    assert auto["int8_profile"]["source"]


def test_selective_int8_keeps_layer_norm_float_and_weights_int8(tiny):
    from edgesmith.convert.tflite import to_tflite

    t = tiny["transformer"]
    float_ops = (*LAYER_NORM_OPS, "SOFTMAX", "BATCH_MATMUL")
    config = ConversionConfig(quant="int8", calibration_samples=32)
    result = to_tflite(
        t.model, "transformer", config, x_calibration=t.data.x_train, float_ops=float_ops
    )
    summary = precision_summary(result.content)
    assert "int8" in summary["weights"]["FULLY_CONNECTED"]
    assert "float32" not in summary["weights"]["FULLY_CONNECTED"]
    assert "int8" in summary["compute"]["FULLY_CONNECTED"]
    for op in LAYER_NORM_OPS:
        assert summary["compute"][op] == ["float32"], op
    assert result.strategy["float_ops"] == list(float_ops)
    full = precision_summary(
        to_tflite(t.model, "transformer", config, x_calibration=t.data.x_train).content
    )
    assert full["compute"]["MEAN"] == ["int8"]  # what the selective file changed
    with pytest.raises(ConfigError, match="float_ops"):
        to_tflite(t.model, "transformer", ConversionConfig(quant="dynamic"), float_ops=("MEAN",))
