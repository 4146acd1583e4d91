"""Models holding every layer type users bring convert to TFLite and ONNX, float and int8,
and keep the parity the converter checks; keras.applications models go through every
technique. The tiny models and their data come from tests/compress/test_layer_coverage.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.convert import convert_keras
from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.parity import compare, predict_file
from tests.compress.test_layer_coverage import GROUPS, trained

MODES = [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8")]


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize(("fmt", "quant"), MODES, ids=[f"{f}-{q}" for f, q in MODES])
def test_every_layer_group_converts_with_parity(group, fmt, quant, tmp_path):
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


APPLICATIONS = ("MobileNetV2", "MobileNetV3Small", "EfficientNetB0")


def _application(name):
    from edgesmith.zoo.datasets import DatasetSplits
    from edgesmith.zoo.tfkeras import keras, set_seed

    set_seed(0)
    model = getattr(keras().applications, name)(weights=None, input_shape=(32, 32, 3), classes=10)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(96, 32, 32, 3)).astype(np.float32)
    y = (x[..., 0].mean(axis=(1, 2)) > 127.5).astype(np.int64)
    data = DatasetSplits(
        name="synthetic",
        task="classification",
        x_train=x[:64],
        y_train=y[:64],
        x_val=x[64:80],
        y_val=y[64:80],
        x_test=x[80:],
        y_test=y[80:],
        class_names=tuple(str(c) for c in range(10)),
        preprocessing={},
    )
    return model, data


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    # Minutes each: run with -m heavy. MobileNetV3Small goes through every stage in
    # benchmarks/user_models.py as a Keras 3 model; tests/zoo/test_keras3.py rebuilds it.
    [pytest.param(n, marks=pytest.mark.heavy) for n in APPLICATIONS],
)
def test_keras_applications_go_through_every_technique_and_format(name, tmp_path):
    from edgesmith.compress import cluster, prune, qat
    from edgesmith.convert.tflite import int8_report

    model, data = _application(name)
    pruned = prune.run(model, data, prune.PruneConfig(sparsity=0.5, epochs=1))
    assert pruned.details["plan"]["targets"]
    clustered = cluster.run(model, data, cluster.ClusterConfig(clusters=16, epochs=1))
    assert clustered.clustered
    qat_model = qat.run(model, data, qat.QATConfig(epochs=1, calibration_samples=32)).model
    report = int8_report(
        convert_keras(
            qat_model,
            ConversionConfig(quant="int8", calibration_samples=32),
            data.x_train,
            qat=True,
        )
    )
    assert report["float_ops"] == [] and report["output_type"] == "INT8"
    for fmt, quant in MODES:
        config = ConversionConfig(format=fmt, quant=quant, calibration_samples=32)
        path = tmp_path / f"{name}-{quant}.{fmt}"
        path.write_bytes(convert_keras(model, config, data.x_train))
        assert np.all(np.isfinite(predict_file(path, data.x_test[:4])))
