"""The convert CLI contract, clear errors for impossible requests, bare files, compress outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith.cli import main
from edgesmith.convert.config import ConversionConfig
from edgesmith.core.errors import ConfigError

FAST = ["--eval-samples", "64", "--calibration-samples", "64"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--format", "onnx", "--quant", "int16x8"], "16-bit activations with 8-bit weights"),
        (["--format", "tflite", "--calibration-samples", "0"], "at least 1"),
        (["--format", "onnx", "--opset", "3"], "opset"),
        (["--format", "onnx", "--sparse"], "--format tflite"),
    ],
)
def test_impossible_requests_fail_before_loading_anything(options, message, tmp_path, capsys):
    code = main(["convert", "cnn-digits", *options, "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_config_round_trips_and_rejects_unknown_keys():
    config = ConversionConfig(format="onnx", quant="int8", opset=13, batch_size=None)
    assert ConversionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown_key"):
        ConversionConfig.from_dict({**config.to_dict(), "unknown_key": 1})
    with pytest.raises(ConfigError, match="--quant int4"):
        ConversionConfig(quant="int4")


def test_cli_convert_json_contract(tiny_models, tmp_path, capsys):
    out, record_path = tmp_path / "cnn.tflite", tmp_path / "records" / "cnn.json"
    args = ["convert", str(tiny_models["cnn"]), "--format", "tflite", "--quant", "int8"]
    assert main([*args, "--out", str(out), "--json", str(record_path), *FAST]) == 0
    record = json.loads(record_path.read_text())
    for key in ("format", "quant", "size_bytes", "gzip_bytes", "accuracy", "parity"):
        assert key in record
    assert {"max_abs_diff", "top1_agreement"} <= set(record["parity"])
    assert record["file"] == str(out) and out.is_file()
    assert not (tmp_path / "cnn.tflite.json").exists()  # --json chose the place
    assert "parity" in capsys.readouterr().err


def test_wrong_suffix_is_refused(tiny_models, tmp_path, capsys):
    args = [
        "convert",
        str(tiny_models["cnn"]),
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "m.tflite"),
    ]
    assert main(args) == 2
    assert "ending in .onnx" in capsys.readouterr().err


def test_parity_failure_exits_3_and_writes_no_model(tiny_models, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    args = ["convert", str(tiny_models["cnn"]), "--format", "tflite", "--quant", "int8"]
    code = main(
        [*args, "--out", str(out), *FAST, "--max-abs-diff", "0", "--max-mean-abs-diff", "0"]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert "output 0: max abs difference" in err and "nothing was written" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".edgesmith-tmp")]
    record = json.loads((tmp_path / "m.tflite.json").read_text())
    assert record["parity"]["ok"] is False and record["error"].startswith("parity check failed")


@pytest.fixture
def bare_keras_file(tiny_models, tmp_path):
    """The tiny CNN as a lone .keras file (no card, no data) plus exported data files."""
    from edgesmith.zoo.evaluate import data_for, open_model

    stored = open_model(tiny_models["cnn"])
    path = tmp_path / "lone.keras"
    stored.model.save(path)
    data = data_for(stored)
    np.savez(tmp_path / "train.npz", x=data.x_train[:64])
    np.savez(tmp_path / "test.npz", x=data.x_test[:64], y=data.y_test[:64])
    return path


def test_int8_of_a_bare_file_needs_calibration_data(bare_keras_file, capsys):
    out = bare_keras_file.with_suffix(".tflite")
    args = ["convert", str(bare_keras_file), "--format", "tflite", "--quant", "int8"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no calibration data" in err and "--calibration FILE.npz" in err
    assert not out.exists()


def test_bare_file_with_calibration_and_eval_files(bare_keras_file, capsys):
    folder = bare_keras_file.parent
    out = folder / "lone.tflite"
    args = ["convert", str(bare_keras_file), "--format", "tflite", "--quant", "int8"]
    extra = ["--calibration", str(folder / "train.npz"), "--eval", str(folder / "test.npz")]
    assert main([*args, "--out", str(out), *extra]) == 0
    record = json.loads((folder / "lone.tflite.json").read_text())
    assert record["family"] == "cnn" and record["samples"] == 64
    assert record["accuracy"] is not None and record["parity"]["ok"]
    assert record["calibration"]["from"].endswith("train.npz")


def test_bare_file_without_data_checks_parity_on_random_inputs(bare_keras_file):
    from edgesmith.convert.converter import convert_model

    out = bare_keras_file.with_suffix(".onnx")
    result = convert_model(bare_keras_file, out=out, config=ConversionConfig(format="onnx"))
    assert result.record.accuracy is None and result.record.parity["ok"]
    assert any("random inputs" in note for note in result.record.notes)


def test_calibration_file_of_the_wrong_shape_is_refused(bare_keras_file, capsys):
    bad = bare_keras_file.parent / "bad.npz"
    np.savez(bad, x=np.zeros((4, 3, 3), np.float32))
    args = ["convert", str(bare_keras_file), "--format", "onnx", "--quant", "int8"]
    assert (
        main([*args, "--out", str(bare_keras_file.with_suffix(".onnx")), "--calibration", str(bad)])
        == 2
    )
    assert "samples of shape (3, 3)" in capsys.readouterr().err
