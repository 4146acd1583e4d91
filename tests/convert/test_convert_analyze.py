"""Target analysis on small models built to hold exactly one Edge TPU problem each."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from edgesmith.cli import main
from edgesmith.convert.analyze import analyze


def _int8_tflite(path, layers, *, batch=1, shape=(8, 8, 1), fallback=False):
    """Convert Input -> layers -> Dense(4) to a full-int8 .tflite file at ``path``."""
    from edgesmith.zoo.tfkeras import keras, set_seed, tf

    k, t = keras(), tf()
    set_seed(0)
    inputs = k.Input(batch_shape=(batch, *shape))
    x = inputs
    for layer in layers:
        x = layer(x)
    x = k.layers.Flatten()(x)
    model = k.Model(inputs, k.layers.Dense(4)(x))
    spec = t.TensorSpec([batch, *shape], t.float32)
    serve = t.function(lambda v: model(v), input_signature=[spec]).get_concrete_function()
    converter = t.lite.TFLiteConverter.from_concrete_functions([serve], model)
    converter.optimizations = [t.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    calib_batch = 1 if batch is None else batch
    converter.representative_dataset = lambda: (
        [rng.random((calib_batch, *shape), np.float32)] for _ in range(8)
    )
    ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if fallback:  # let an op without an int8 kernel stay float between (de)quantize ops
        ops.append(t.lite.OpsSet.TFLITE_BUILTINS)
    converter.target_spec.supported_ops = ops
    converter.inference_input_type = t.int8
    converter.inference_output_type = t.int8
    path.write_bytes(converter.convert())
    return path


def _conv():
    from edgesmith.zoo.tfkeras import keras

    return keras().layers.Conv2D(4, 3, padding="same", activation="relu")


def _lambda(fn):
    from edgesmith.zoo.tfkeras import keras

    return keras().layers.Lambda(fn)


def test_clean_int8_model_maps_entirely(tmp_path):
    report = analyze(_int8_tflite(tmp_path / "ok.tflite", [_conv()]), "edgetpu")
    assert report["target"] == "edgetpu"
    assert report["first_fallback_op"] is None
    assert report["mapped_op_fraction"] == 1.0 and report["mapped_mac_fraction"] == 1.0
    assert all(op["maps"] and op["reason"] is None for op in report["ops"])
    params = 3 * 3 * 4 + 4 + 8 * 8 * 4 * 4 + 4  # conv kernel + bias, dense weights + bias
    assert report["parameters_fit_cache"]
    assert params <= report["parameter_bytes"] < 4 * params  # int8 weights, int32 biases


def test_float_op_is_the_first_fallback(tmp_path):
    from edgesmith.zoo.tfkeras import tf

    path = _int8_tflite(tmp_path / "f.tflite", [_conv(), _lambda(tf().math.sin)], fallback=True)
    report = analyze(path, "edgetpu")
    first = report["first_fallback_op"]
    names = [op["op"] for op in report["ops"]]
    assert names[0] == "CONV_2D" and report["ops"][0]["maps"]
    assert first["op"] == "DEQUANTIZE" and first["index"] == names.index("DEQUANTIZE")
    assert "float32" in first["reason"]
    sin = report["ops"][names.index("SIN")]
    assert not sin["maps"]
    assert 0 < report["mapped_op_fraction"] < 1


def test_dynamic_dimension_is_reported(tmp_path):
    report = analyze(_int8_tflite(tmp_path / "d.tflite", [_conv()], batch=None), "edgetpu")
    first = report["first_fallback_op"]
    assert first["index"] == 0 and first["op"] == "CONV_2D"
    assert "dynamic dimension" in first["reason"]
    assert report["mapped_op_fraction"] == 0.0


def test_four_dimensions_larger_than_one(tmp_path):
    report = analyze(_int8_tflite(tmp_path / "b.tflite", [_conv()], batch=2), "edgetpu")
    first = report["first_fallback_op"]
    assert first["index"] == 0 and first["op"] == "CONV_2D"
    assert "only the 3 innermost dimensions" in first["reason"]
    assert "[2, 8, 8" in first["reason"]


def test_unsupported_op_early_sends_everything_after_it_to_the_cpu(tmp_path):
    from edgesmith.zoo.tfkeras import tf

    path = _int8_tflite(tmp_path / "u.tflite", [_lambda(tf().math.abs), _conv()])
    report = analyze(path, "edgetpu")
    first = report["first_fallback_op"]
    assert (first["index"], first["op"]) == (0, "ABS")
    assert "not in the Edge TPU's supported operations" in first["reason"]
    conv = next(op for op in report["ops"] if op["op"] == "CONV_2D")
    assert not conv["maps"] and "after the first CPU op #0 (ABS)" in conv["reason"]
    assert report["mapped_op_fraction"] == 0.0 and report["mapped_mac_fraction"] == 0.0


def test_gpu_lists_ops_that_fall_back_to_the_cpu(tmp_path):
    from edgesmith.zoo.tfkeras import keras, tf

    k, t = keras(), tf()
    inputs = k.Input(batch_shape=(1, 8, 8, 1))
    x = k.layers.Conv2D(4, 3)(inputs)
    x = k.layers.Lambda(lambda v: t.cast(t.argmax(v, axis=-1), t.float32))(x)
    model = k.Model(inputs, x)
    path = tmp_path / "g.tflite"
    path.write_bytes(t.lite.TFLiteConverter.from_keras_model(model).convert())
    report = analyze(path, "gpu")
    ops = {op["op"]: op for op in report["ops"]}
    assert ops["CONV_2D"]["maps"]
    assert not ops["ARG_MAX"]["maps"] and "ARG_MAX" in ops["ARG_MAX"]["reason"]
    assert report["cpu_fallback_ops"][0]["op"] == "ARG_MAX"
    assert report["first_fallback_op"]["op"] == "ARG_MAX"
    assert "GPU delegate" in (report["analyzer"] or "GPU delegate")


def test_cli_analyze_json_contract_and_compiler_log(tmp_path, monkeypatch, capsys):
    compiler = tmp_path / "bin" / "edgetpu_compiler"
    compiler.parent.mkdir()
    compiler.write_text("#!/bin/sh\necho 'Edge TPU Compiler version 16.0 (fake for tests)'\n")
    compiler.chmod(compiler.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{compiler.parent}{os.pathsep}{os.environ['PATH']}")
    model = _int8_tflite(tmp_path / "ok.tflite", [_conv()])
    out = tmp_path / "report.json"
    assert main(["analyze", str(model), "--target", "edgetpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert {"target", "ops", "first_fallback_op", "mapped_op_fraction"} <= set(report)
    assert set(report["ops"][0]) >= {"index", "op", "maps", "reason"}
    assert report["compiler"]["available"] and "Edge TPU Compiler" in report["compiler"]["log"]


@pytest.mark.parametrize("content", [b"not a model", b""])
def test_analyze_rejects_a_file_that_is_not_tflite(tmp_path, content, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    assert main(["analyze", str(bad), "--target", "gpu"]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err


def test_a_buffer_shared_by_several_tensors_counts_once():
    from pathlib import Path

    from edgesmith.runtime.tflite_flatbuffer import Graph, Subgraph, Tensor

    def weight(index, buffer):
        return Tensor(index, f"w{index}", [8, 8], [8, 8], "int8", True, True, 64, buffer=buffer)

    # Compaction stores identical data once: the steps of an unrolled LSTM then hold
    # distinct kernel tensors that read one buffer.
    tensors = [weight(0, 1), weight(1, 1), weight(2, 2)]
    graph = Graph(Path("m.tflite"), [Subgraph(tensors, [], [], [])])
    assert graph.constant_bytes == 2 * 64


def test_an_onnx_file_is_told_to_convert_to_tflite_first(tmp_path, capsys):
    from edgesmith.cli import main

    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08\x12\x07tf2onnx" + bytes(64))
    assert main(["analyze", str(path), "--target", "edgetpu"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "--format tflite" in err
