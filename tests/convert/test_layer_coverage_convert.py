"""Models holding every layer type users bring convert to TFLite and ONNX, float and int8,
and keep the parity the converter checks (keras.applications models go through every
technique in tests/edgesmith/test_keras_applications.py). The tiny models and their data come
from tests/compress/test_layer_coverage.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.convert import convert_keras
from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.parity import compare, predict_file
from tests.compress.test_layer_coverage import GROUPS, trained

MODES = [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8")]


# The recurrent groups, the slowest to convert, are in test_layer_coverage_convert_rnn.py so
# that two test workers share them out.
RECURRENT = tuple(g for g in GROUPS if "rnn" in g or "lstm" in g or "gru" in g)


@pytest.mark.slow
@pytest.mark.parametrize("group", [g for g in GROUPS if g not in RECURRENT])
@pytest.mark.parametrize(("fmt", "quant"), MODES, ids=[f"{f}-{q}" for f, q in MODES])
def test_every_layer_group_converts_with_parity(group, fmt, quant, tmp_path):
    check_conversion_parity(group, fmt, quant, tmp_path)


def check_conversion_parity(group, fmt, quant, tmp_path):
    """The group's trained model converts in (fmt, quant) and keeps the converter's parity."""
    model, data = trained(group)
    config = ConversionConfig(format=fmt, quant=quant)
    path = tmp_path / f"model.{fmt}"
    path.write_bytes(convert_keras(model, config, data.x_train))
    parity = compare(
        model.predict(data.x_test, verbose=0), predict_file(path, data.x_test), config.tolerance
    )
    assert parity["ok"], parity["messages"]


def test_gelu_converts_to_a_valid_onnx_graph(tmp_path):
    """tf2onnx writes gelu's erfc as an Erfc node, which no ONNX opset has."""
    import onnx

    from edgesmith.zoo.tfkeras import keras

    k = keras()
    inputs = k.Input((6,))
    model = k.Model(inputs, k.layers.Activation("gelu")(k.layers.Dense(4)(inputs)))
    blob = convert_keras(model, ConversionConfig(format="onnx"))
    ops = {node.op_type for node in onnx.load_from_string(blob).graph.node}
    assert "Erf" in ops and "Erfc" not in ops
    path = tmp_path / "gelu.onnx"
    path.write_bytes(blob)
    x = np.random.default_rng(0).normal(size=(8, 6)).astype(np.float32)
    np.testing.assert_allclose(predict_file(path, x), model.predict(x, verbose=0), atol=1e-5)
