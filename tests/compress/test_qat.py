"""QAT on every family: fake-quant ops inside, full-int8 TFLite out, accuracy kept, saved and loaded."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.compress import prune, qat
from edgesmith.compress.measure import weight_summary
from edgesmith.convert import convert_keras
from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.parity import predict_file
from edgesmith.convert.tflite import int8_report
from edgesmith.core.errors import ConfigError
from edgesmith.core.metrics import accuracy
from tests.compress.conftest import FAMILIES, custom_layer_model

# Layers tfmot's default scheme refuses and edgesmith's quantize configs cover.
OWN_CONFIGS = {
    "cnn": set(),
    "lstm": {"lstm0"},
    "transformer": {"positions", "block0_ln1", "block0_attention", "final_ln"},
}


def _fake_quant_ops(model):
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    spec = t.TensorSpec([1, *model.input_shape[1:]], t.float32)
    graph = t.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    ops = list(graph.get_operations())
    for function in graph._functions.values():  # ops inside nested functions (the LSTM's)
        ops.extend(function.graph.get_operations() if hasattr(function, "graph") else [])
    return [op for op in ops if op.type.startswith("FakeQuantWithMinMaxVars")]


def _full_int8(model, x_train):
    """The full-int8 .tflite ``edgesmith convert --quant int8`` writes for ``model``."""
    return convert_keras(model, ConversionConfig(quant="int8"), x_train, qat=True)


def _tflite_predict(blob, x, folder):
    """Float outputs of the .tflite ``blob`` for ``x`` on LiteRT (the runtime's runner)."""
    path = folder / "model.tflite"
    path.write_bytes(blob)
    return predict_file(path, x)


@pytest.fixture(scope="module")
def qat_results(tiny):
    return {f: qat.run(tiny[f].model, tiny[f].data, qat.QATConfig(epochs=1)) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_qat_model_holds_fake_quant_ops(family, qat_results):
    result = qat_results[family]
    model = result.model
    wrapped = {
        layer.layer.name: type(layer.quantize_config).__name__
        for layer in model.layers
        if type(layer).__name__ == "QuantizeWrapperV2"
    }
    assert "logits" in wrapped
    for name in OWN_CONFIGS[family]:
        assert wrapped.get(name) == "EdgesmithQuantizeConfig", name
    assert len(_fake_quant_ops(model)) >= 3
    assert result.history["loss"]


@pytest.mark.parametrize("family", FAMILIES)
def test_qat_model_converts_to_full_int8_tflite_and_keeps_its_accuracy(
    family, tiny, qat_results, tmp_path
):
    case, model = tiny[family], qat_results[family].model
    blob = _full_int8(model, case.data.x_train)
    report = int8_report(blob)
    assert report["input_type"] == "INT8" and report["output_type"] == "INT8"
    assert report["float_ops"] == []
    if family == "lstm":  # unrolled: int8 gates, no WHILE loop carrying a float state
        assert {"FULLY_CONNECTED", "LOGISTIC", "TANH", "MUL"} <= set(report["ops"])
        assert "WHILE" not in report["ops"]
    x, y = case.data.x_test, case.data.y_test
    keras_accuracy = accuracy(y, model.predict(x, verbose=0))
    int8_accuracy = accuracy(y, _tflite_predict(blob, x, tmp_path))
    values = f"int8 {int8_accuracy:.3f}, QAT Keras {keras_accuracy:.3f}"
    assert int8_accuracy > 0.5, values  # well above chance (0.1)
    # The converter used the learned ranges, so int8 computes what QAT simulated; the
    # LSTM's int8 LOGISTIC/TANH tables round a little differently over its time steps.
    assert abs(int8_accuracy - keras_accuracy) <= (0.05 if family == "lstm" else 0.03), values


@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_qat_model_round_trips_through_the_saved_file(family, tiny, qat_results, tmp_path):
    from edgesmith.zoo.store import load_keras_model

    model = qat_results[family].model
    path = tmp_path / "model.keras"
    qat.save_qat_model(model, path)
    loaded = load_keras_model(path, qat=True)
    x = tiny[family].data.x_test[:16]
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-5)


def test_token_ids_are_not_quantized(token_tiny):
    """An Embedding's integer ids pass unquantized; the table itself is fake-quantized."""
    case = token_tiny
    result = qat.run(case.model, case.data, qat.QATConfig(epochs=1))
    model = result.model
    gate = next(layer for layer in model.layers if type(layer).__name__ == "QuantizeLayer")
    assert gate.quantizer is None and len(gate.weights) == 1  # only its step counter
    embed = model.get_layer("quant_embed")
    assert embed.quantize_config.get_config()["weights"] == ["embeddings"]
    x, y = case.data.x_test, case.data.y_test
    assert accuracy(y, model.predict(x, verbose=0)) > 0.5
    report = int8_report(_full_int8(model, case.data.x_train))
    assert report["output_type"] == "INT8"
    assert set(report["float_ops"]) <= {"CAST"}  # float token ids cast to int32 for GATHER


def test_qat_after_pruning_preserves_the_sparsity(tiny):
    case = tiny["lstm"]  # tfmot's PQAT covers the Dense layer, a projection the LSTM
    pruned = prune.run(case.model, case.data, prune.PruneConfig(sparsity=0.6, epochs=1)).model
    result = qat.run(pruned, case.data, qat.QATConfig(epochs=1))
    assert result.details["preserve"] == "sparsity"
    assert weight_summary(result.model)["sparsity"] == pytest.approx(0.6, abs=0.01)


def test_qat_after_clustering_keeps_the_clusters_and_round_trips(tiny, tmp_path):
    from edgesmith.compress import cluster
    from edgesmith.zoo.store import load_keras_model

    case = tiny["cnn"]
    clustered = cluster.run(case.model, case.data, cluster.ClusterConfig(clusters=8, epochs=1))
    result = qat.run(clustered.model, case.data, qat.QATConfig(epochs=1))
    assert result.details["preserve"] == "clusters"
    layers = weight_summary(result.model)["layers"]
    for name in clustered.clustered:
        # tfmot's CQAT trains the centroids of each output channel of a convolution.
        assert layers[name]["unique_weights_per_channel"] <= 8, name
    # tfmot's cluster-preserving wrappers do not load from a file; the step's model does.
    path = tmp_path / "model.keras"
    qat.save_qat_model(result.model, path)
    loaded = load_keras_model(path, qat=True)
    x = case.data.x_test[:16]
    np.testing.assert_allclose(
        result.model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-5
    )


def test_calibration_sets_ranges_from_data(tiny):
    """tfmot starts activation ranges at [-6, 6]; calibration replaces them with measured ones."""
    case = tiny["cnn"]
    result = qat.run(case.model, case.data, qat.QATConfig(epochs=0))
    ranges = {
        v.name: float(v.numpy())
        for layer in result.model.layers
        for v in layer.weights
        if v.name.endswith(("post_activation_max:0", "quantize_layer_max:0"))
    }
    assert ranges and all(value != 6.0 for value in ranges.values())
    assert result.details["calibrated_accuracy"] > 0.5


def test_unsupported_custom_layer_fails_with_a_clear_message(tiny):
    with pytest.raises(ConfigError) as info:
        qat.run(custom_layer_model(), tiny["lstm"].data, qat.QATConfig())
    assert "qat: cannot handle layer(s) 'my_scale' (Scale)" in str(info.value)
    assert "exclude=" in str(info.value)


def test_a_qat_model_cannot_be_quantized_twice(qat_results, tiny):
    with pytest.raises(ConfigError, match="already quantization-aware"):
        qat.run(qat_results["cnn"].model, tiny["cnn"].data, qat.QATConfig())


@pytest.mark.parametrize("return_sequences", [False, True])
def test_quantized_lstm_computes_the_keras_lstm_up_to_int8_rounding(return_sequences):
    from edgesmith.compress.qat_lstm import calibrate, float_intermediates, quantized_twin
    from edgesmith.zoo.tfkeras import keras, set_seed

    k = keras()
    set_seed(0)
    lstm = k.layers.LSTM(8, return_sequences=return_sequences)
    k.Model(inputs := k.Input((6, 3)), lstm(inputs))  # gives the layer its input shape
    x = np.random.default_rng(0).normal(size=(16, 6, 3)).astype(np.float32)
    expected = np.asarray(lstm(x))
    twin = quantized_twin(lstm)
    hidden = float_intermediates(twin, x)["hidden"]
    # The float replay (used to calibrate) spans exactly the hidden states Keras computes.
    every_step = k.layers.LSTM(8, return_sequences=True)
    k.Model(inputs := k.Input((6, 3)), every_step(inputs))
    every_step.set_weights(lstm.get_weights())
    states = np.asarray(every_step(x))
    assert hidden == pytest.approx((states.min(), states.max()), abs=1e-5)
    calibrate(twin, [x])
    got = np.asarray(twin(x, training=False))
    assert got.shape == expected.shape
    # One int8 step of the hidden state's range, plus what rounding the gates adds.
    step = (hidden[1] - hidden[0]) / 255
    assert np.abs(got - expected).max() < 6 * step
    assert np.abs(got - expected).max() > 0  # it does round


def test_quantized_lstm_refuses_what_it_cannot_reproduce():
    from edgesmith.compress.qat_lstm import check_convertible
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    layer = k.layers.LSTM(4, go_backwards=True, recurrent_dropout=0.1, name="rnn")
    k.Model(inputs := k.Input((5, 2)), layer(inputs))
    with pytest.raises(ConfigError, match=r"'rnn' has go_backwards=True, recurrent_dropout=0.1"):
        check_convertible(layer)


@pytest.fixture(scope="module")
def dscnn(tiny):
    """A small depthwise-separable CNN (BatchNormalization after every convolution)."""
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.registry import TrainConfig
    from edgesmith.zoo.tfkeras import set_seed
    from edgesmith.zoo.train import fit

    set_seed(0)
    data = tiny["cnn"].data
    model = build_model(
        "dscnn", input_shape=data.x_train.shape[1:], num_classes=10, width=0.25, depth=1
    )
    fit(model, data, TrainConfig(epochs=1, batch_size=32, learning_rate=3e-3))
    return model, data


@pytest.mark.parametrize("freeze", [True, False])
def test_batch_norm_statistics_stay_fixed_only_when_frozen(dscnn, freeze):
    """Frozen (the default): training sees the moving statistics the ranges were calibrated on."""
    from edgesmith.compress.layer_plan import inner_layer

    model, data = dscnn
    before = {
        layer.name: layer.moving_mean.numpy().copy()
        for layer in model.layers
        if type(layer).__name__ == "BatchNormalization"
    }
    config = qat.QATConfig(epochs=1, freeze_batch_norm=freeze, keep_best=False)
    result = qat.run(model, data, config)
    after = {
        inner_layer(layer).name: inner_layer(layer).moving_mean.numpy()
        for layer in result.model.layers
        if type(inner_layer(layer)).__name__ == "BatchNormalization"
    }
    assert len(before) == 3 and after.keys() == before.keys()
    unchanged = all(np.array_equal(before[name], after[name]) for name in before)
    assert unchanged is freeze
    # Frozen only while fine-tuning: the saved QAT model's layers are trainable again.
    assert all(inner_layer(layer).trainable for layer in result.model.layers)
