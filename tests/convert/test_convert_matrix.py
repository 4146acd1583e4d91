"""Every family x format x quant mode converts, runs, and agrees with its Keras reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith.convert.config import DEFAULT_TOLERANCES, ConversionConfig
from edgesmith.convert.converter import convert_model
from edgesmith.core.records import ResultRecord
from edgesmith.core.tables import FORMAT_QUANT

CASES = [(fmt, quant) for fmt, modes in FORMAT_QUANT.items() for quant in modes]
FAST = {"calibration_samples": 64, "eval_samples": 96}


@pytest.mark.parametrize("family", ["cnn", "lstm", "transformer"])
@pytest.mark.parametrize(("fmt", "quant"), CASES, ids=[f"{f}-{q}" for f, q in CASES])
def test_conversion_keeps_parity_and_writes_the_record(family, fmt, quant, tiny_models, tmp_path):
    out = tmp_path / f"{family}-{quant}.{fmt}"
    config = ConversionConfig(format=fmt, quant=quant, **FAST)
    result = convert_model(tiny_models[family], out=out, config=config)

    assert out.is_file()
    data = json.loads((tmp_path / f"{out.name}.json").read_text())
    record = ResultRecord.from_dict(data)
    assert record == result.record
    assert (record.format, record.quant, record.family) == (fmt, quant, family)
    assert record.size_bytes == out.stat().st_size
    assert 0 < record.gzip_bytes < record.size_bytes
    assert record.params > 0 and 0 < record.nonzero_params <= record.params
    assert record.samples == FAST["eval_samples"]

    parity = record.parity
    tolerance = DEFAULT_TOLERANCES[quant]
    assert parity["ok"] and not parity["messages"]
    assert parity["top1_agreement"] >= tolerance.min_top1_agreement
    if tolerance.max_abs_diff is not None:
        assert parity["max_abs_diff"] <= tolerance.max_abs_diff
    # Accuracy of the converted file stays close to the Keras model's on the same samples.
    assert abs(record.accuracy - data["reference"]["accuracy"]) <= 0.05
    assert data["reference"]["accuracy"] > 0.5  # the tiny model learned something

    assert (
        ConversionConfig.from_dict(
            {k: v for k, v in data["conversion"].items() if k != "tolerance"}
        )
        == config
    )
    assert data["environment"]["versions"]["tensorflow"].startswith("2.21")
    assert record.steps[-1]["step"] == "convert"
    if config.needs_calibration:
        assert data["calibration"]["samples"] == FAST["calibration_samples"]
        assert "train split" in data["calibration"]["from"]
    else:
        assert data["calibration"] is None


@pytest.mark.parametrize("family", ["cnn", "lstm", "transformer"])
def test_full_int8_tflite_has_integer_inputs_outputs_and_fixed_batch(family, tiny_models, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "m.tflite"
    convert_model(tiny_models[family], out=out, config=ConversionConfig(quant="int8", **FAST))
    interpreter = Interpreter(model_path=str(out))
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    assert inp["shape"][0] == 1 and inp["shape_signature"][0] == 1
    if family == "lstm":  # default lstm_int8="float-gates": only gate/cell ops stay float
        from edgesmith.convert.tflite import LSTM_FLOAT_GATE_OPS
        from edgesmith.runtime.tflite_flatbuffer import read_graph

        graph = read_graph(out)
        float_ops = {op.name for op in graph.ops if graph.tensor(op.outputs[0]).dtype == "float32"}
        assert float_ops <= {*LSTM_FLOAT_GATE_OPS, "DEQUANTIZE"}, float_ops
        return
    float_tensors = [
        t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.float32
    ]
    assert not float_tensors, f"float tensors left in a full-int8 model: {float_tensors}"
