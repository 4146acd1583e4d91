"""Bad model files: a clear error naming the file and the problem, exit 2, never a crash."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from edgesmith.cli import main
from edgesmith.core.errors import EdgesmithError, ModelFileError
from edgesmith.runtime.modelfile import inspect_model
from tests.runtime.conftest import edgesmith


def _bad_files(folder, good_tflite, good_onnx):
    """(path, what the error must say) for each kind of bad input the issue lists."""
    data = good_tflite.read_bytes()
    onnx = good_onnx.read_bytes()
    cases = {
        "missing.tflite": (None, "file not found"),
        "empty.tflite": (b"", "empty file"),
        "head.tflite": (data[:16], "truncated or corrupt TFLite"),
        "third.tflite": (data[: len(data) // 3], "truncated or corrupt TFLite"),
        "tail.tflite": (data[:-64], "truncated or corrupt TFLite"),
        "random.tflite": (np.random.default_rng(0).bytes(4096), "not a TFLite flatbuffer"),
        "random.onnx": (np.random.default_rng(1).bytes(4096), "corrupt ONNX"),
        "random.bin": (
            np.random.default_rng(2).bytes(4096),
            "neither a TFLite flatbuffer nor an ONNX",
        ),
        "renamed.tflite": (onnx, "rename it to renamed.onnx"),
        "renamed.onnx": (data, "rename it to renamed.tflite"),
        "cut.onnx": (onnx[: len(onnx) // 2], "truncated or corrupt ONNX"),
    }
    out = []
    for name, (blob, message) in cases.items():
        path = folder / name
        if blob is not None:
            path.write_bytes(blob)
        out.append((path, message))
    folder_case = folder / "saved_model"
    folder_case.mkdir()
    out.append((folder_case, "is a folder"))
    return out


def test_every_kind_of_bad_file_is_one_clear_line_and_exit_2(digits_models, tmp_path, capsys):
    for path, message in _bad_files(tmp_path, digits_models["f32"], digits_models["onnx"]):
        with pytest.raises(ModelFileError) as info:
            inspect_model(path)
        assert message in str(info.value) and str(path) in str(info.value)
        assert main(["bench", str(path), "--runs", "1", "--warmup", "0"]) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        assert str(path) in err and message in err and "Traceback" not in err


def test_bad_file_through_the_installed_command(digits_models, tmp_path):
    """The console entry point, in its own process: exit 2, no traceback, file named."""
    bad = tmp_path / "model.tflite"
    bad.write_bytes(digits_models["onnx"].read_bytes())
    result = edgesmith("bench", str(bad))
    assert result.returncode == 2
    assert "an ONNX model" in result.stderr and "rename it to model.onnx" in result.stderr
    assert "Traceback" not in result.stderr


def test_truncation_anywhere_is_caught_before_any_loader(digits_models):
    """Every cut of a real file is refused by the pure-Python verifier, with its size."""
    data = digits_models["int8"].read_bytes()
    tmp = digits_models["int8"].with_name("cut.tflite")
    for size in range(8, len(data), 61):
        tmp.write_bytes(data[:size])
        with pytest.raises(ModelFileError, match="truncated or corrupt TFLite"):
            inspect_model(tmp)


def test_valid_files_are_described(digits_models):
    info = inspect_model(digits_models["int8"])
    assert info.format == "tflite" and info.size_bytes == os.path.getsize(digits_models["int8"])
    (tensor,) = info.inputs
    assert tensor.shape_signature == (-1, 8, 8, 1) and tensor.dtype == "int8"
    assert tensor.scale == pytest.approx(1 / 255, rel=1e-3) and tensor.zero_point == -128
    assert info.op_counts["CONV_2D"] == 1 and info.ops >= 3
    assert inspect_model(digits_models["f16"]).float16_weights
    onnx = inspect_model(digits_models["onnx"])
    assert onnx.format == "onnx" and [t.name for t in onnx.inputs] == ["image"]
    assert onnx.inputs[0].shape_signature == (-1, 8, 8, 1) and onnx.inputs[0].dtype == "float32"
    assert inspect_model(digits_models["f16in_onnx"]).inputs[0].dtype == "float16"


def test_files_that_pass_the_checks_but_break_the_loader_never_crash_the_caller(
    digits_models, tmp_path
):
    """Bytes flipped inside the tables: the verifier or the worker process takes the blow.

    Whatever the native loader does with such a file (reject it, misread it, or crash),
    the calling process gets a record or an EdgesmithError, never a signal.
    """
    from edgesmith.runtime.bench import bench_file

    data = bytearray(digits_models["f32"].read_bytes())
    rng = np.random.default_rng(7)
    loaded = 0
    for trial in range(40):
        corrupt = bytearray(data)
        for position in rng.integers(8, 2048, size=6):  # the tables sit before the weights
            corrupt[position] = int(rng.integers(0, 256))
        path = tmp_path / f"flipped{trial}.tflite"
        path.write_bytes(bytes(corrupt))
        try:
            inspect_model(path)
        except ModelFileError:
            continue
        loaded += 1
        try:
            records = bench_file(path, ["litert"], runs=2, warmup=0)
        except EdgesmithError:
            continue
        assert len(records) == 1  # a result or a backend error, reported, in one piece
        if loaded >= 8:
            break
    assert loaded >= 3  # some corruptions must have reached the native loader


def test_a_copy_of_a_good_file_under_another_suffix_still_runs(digits_models, tmp_path):
    """The format comes from the content; only a suffix that claims the other format is refused."""
    copy = tmp_path / "model.bin"
    shutil.copy(digits_models["f32"], copy)
    assert inspect_model(copy).format == "tflite"
