"""Keras 3 layers with no tf-keras rebuild run wrapped when the user opted in."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from edgesmith.core.errors import ConfigError, ModelFileError
from edgesmith.zoo.keras3 import to_tf_keras
from edgesmith.zoo.keras3_wrap import is_wrapped
from edgesmith.zoo.tfkeras import keras, tf

LAYER_FILE = textwrap.dedent(
    """
    import keras


    class LearnedScale(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(
                shape=(input_shape[-1],), initializer="ones", name="scale"
            )

        def call(self, inputs):
            return inputs * self.scale
    """
)


@pytest.fixture(scope="module")
def scale_class(tmp_path_factory):
    from edgesmith.zoo.safe_load import load_custom_objects

    path = tmp_path_factory.mktemp("layers") / "my_layers.py"
    path.write_text(LAYER_FILE)
    return path, load_custom_objects(path)["LearnedScale"]


def _scale_model(cls):
    import keras as keras3

    inputs = keras3.Input((4,))
    h = keras3.layers.Dense(3, name="dense_in")(inputs)
    scale = cls(name="scale")
    h = scale(h)
    outputs = keras3.layers.Dense(2, activation="softmax", name="dense_out")(h)
    model = keras3.Model(inputs, outputs, name="scaled")
    scale.scale.assign(np.array([0.5, 1.5, -2.0], "float32"))
    return model


def _lambda_model():
    import keras as keras3

    inputs = keras3.Input((4,))
    h = keras3.layers.Dense(3, name="dense_in")(inputs)
    h = keras3.layers.Lambda(lambda t: t * 2.0, name="double")(h)
    return keras3.Model(inputs, keras3.layers.Dense(2, name="dense_out")(h), name="doubled")


def _x(n=16):
    return np.random.default_rng(0).normal(size=(n, 4)).astype("float32")


@pytest.mark.parametrize("which", ["scale", "lambda"])
def test_refused_without_the_flag(scale_class, which):
    model3 = _scale_model(scale_class[1]) if which == "scale" else _lambda_model()
    name = "scale" if which == "scale" else "double"
    with pytest.raises(ModelFileError, match=f"no tf-keras rebuild for layer {name}"):
        to_tf_keras(model3)


def test_custom_layer_wrapped_counts_and_trains_its_weight(scale_class):
    model3 = _scale_model(scale_class[1])
    model2, check = to_tf_keras(model3, check_x=_x(), atol=1e-5, wrap_unknown=True)
    assert check["passed"] and check["max_abs_diff"] <= 1e-5
    assert (
        "scale: LearnedScale wrapped (its own code runs; tfmot leaves it float)"
        in (check["rewrites"])
    )
    layer = model2.get_layer("scale")
    assert is_wrapped(layer)
    assert model2.count_params() == model3.count_params() == 4 * 3 + 3 + 3 + 3 * 2 + 2
    np.testing.assert_allclose(layer.get_weights()[0], [0.5, 1.5, -2.0])
    # set_weights reaches the Keras 3 variable the layer computes with.
    layer.set_weights([np.array([1.0, 1.0, 1.0], "float32")])
    np.testing.assert_allclose(layer.keras3_layer.scale.numpy(), [1.0, 1.0, 1.0])
    before = layer.get_weights()[0].copy()
    model2.compile(keras().optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    y = np.arange(16) % 2
    model2.fit(_x(), y, epochs=3, batch_size=8, verbose=0)
    assert np.abs(layer.get_weights()[0] - before).max() > 1e-4


def test_lambda_wrapped_has_no_weights():
    model3 = _lambda_model()
    model2, check = to_tf_keras(model3, check_x=_x(), wrap_unknown=True)
    assert check["passed"]
    assert "double: Lambda wrapped (its own code runs; tfmot leaves it float)" in check["rewrites"]
    assert model2.get_layer("double").weights == []
    assert model2.count_params() == model3.count_params()


def test_copy_gets_its_own_keras3_layer(scale_class):
    model2, _ = to_tf_keras(_scale_model(scale_class[1]), wrap_unknown=True)
    copy = keras().models.clone_model(model2)
    copy.set_weights(model2.get_weights())
    original, copied = model2.get_layer("scale"), copy.get_layer("scale")
    assert copied.keras3_layer is not original.keras3_layer
    np.testing.assert_allclose(copy(_x()).numpy(), model2(_x()).numpy(), atol=1e-6)
    copied.set_weights([np.zeros(3, "float32")])
    np.testing.assert_allclose(original.get_weights()[0], [0.5, 1.5, -2.0])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saving_a_wrapped_model_is_a_clear_error(tmp_path, suffix):
    model2, _ = to_tf_keras(_lambda_model(), wrap_unknown=True)
    with pytest.raises(ModelFileError, match="cannot be written as a tf-keras file"):
        model2.save(tmp_path / f"m{suffix}")


def _run_tflite(content, x):
    interpreter = tf().lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for sample in x:
        interpreter.set_tensor(inp["index"], sample[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(rows)


def test_tflite_and_onnx_of_a_wrapped_model_match(scale_class, tmp_path):
    from edgesmith.convert import convert_keras
    from edgesmith.convert.config import ConversionConfig

    model2, _ = to_tf_keras(_scale_model(scale_class[1]), wrap_unknown=True)
    x = _x(8)
    expected = model2(x).numpy()
    float_file = convert_keras(model2, ConversionConfig(format="tflite"))
    np.testing.assert_allclose(_run_tflite(float_file, x), expected, atol=1e-5)
    int8 = convert_keras(model2, ConversionConfig(format="tflite", quant="int8"), _x(64))
    interpreter = tf().lite.Interpreter(model_content=int8)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    ort = pytest.importorskip("onnxruntime")
    onnx_file = convert_keras(model2, ConversionConfig(format="onnx"))
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = np.concatenate([session.run(None, {name: s[None]})[0] for s in x])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_tfmot_plans(scale_class):
    from edgesmith.compress import prune, qat

    lambda2, _ = to_tf_keras(_lambda_model(), wrap_unknown=True)
    assert "double" in qat.plan(lambda2, qat.QATConfig()).targets  # output quantizer only
    scale2, _ = to_tf_keras(_scale_model(scale_class[1]), wrap_unknown=True)
    assert scale2.get_layer("scale").get_prunable_weights() == []
    assert "dense_in" in prune.plan(scale2, prune.PruneConfig()).targets
    with pytest.raises(ConfigError, match="exclude="):
        qat.plan(scale2, qat.QATConfig())
    assert "scale" in qat.plan(scale2, qat.QATConfig(exclude="^scale$")).left


def test_cli_converts_a_model_with_a_custom_layer(scale_class, tmp_path):
    from edgesmith.cli import main

    pyfile, cls = scale_class
    path = tmp_path / "scaled.keras"
    _scale_model(cls).save(path)
    out = tmp_path / "scaled.tflite"
    argv = ["convert", str(path), "--custom-objects", str(pyfile), "--format", "tflite"]
    code = main([*argv, "--out", str(out)])
    assert code == 0
    assert out.is_file() and out.stat().st_size > 0
