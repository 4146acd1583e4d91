"""The quantization debugger: per-layer error ranked worst first, on a model with one bad layer.

The model is a tiny Dense classifier trained on synthetic clusters. Its ``spiky`` layer is
made hard to quantize on purpose: one unit multiplies an input feature by 1000, and that
feature is positive only in a few calibration (training) samples, so the calibrated range
of ``spiky``'s output is thousands wide while the test samples use a sliver of it. The
unit's weight into the output layer is zero, so the float model does not depend on it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith.cli import main
from edgesmith.convert.quant_debug import quant_error
from edgesmith.core.errors import ModelFileError

FEATURES, CLASSES = 16, 4
FAST = {"top": 2, "samples": 40, "eval_samples": 120}
KEYS = {"name", "op", "snr_db", "cosine", "max_abs", "acc_if_float"}


def _clusters(rng: np.random.Generator, n: int, centers: np.ndarray) -> tuple[np.ndarray, ...]:
    y = rng.integers(0, CLASSES, n)
    x = centers[y] + rng.normal(0, 0.4, (n, FEATURES))
    x[:, -1] = rng.uniform(-1, 0, n)  # the spike feature: never positive in normal data
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def spiky(tmp_path_factory):
    """(folder, keras file, npz data, int8 .tflite, float .tflite) of the model with a bad layer."""
    from edgesmith.convert import convert_keras
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    k.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("quant-debug")
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1.5, (CLASSES, FEATURES))
    x_train, y_train = _clusters(rng, 600, centers)
    x_test, y_test = _clusters(rng, 200, centers)
    x_train[:4, -1] = 5.0  # the outliers: only the calibration data has them
    inputs = k.Input((FEATURES,))
    hidden = k.layers.Dense(16, activation="relu", name="hidden")(inputs)
    spike = k.layers.Dense(16, activation="relu", name="spiky")(hidden)
    model = k.Model(inputs, k.layers.Dense(CLASSES, activation="softmax", name="out")(spike))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    # hidden's unit 0 passes the spike feature on (0 on normal data, 5 on the outliers)...
    hidden_w, hidden_b = model.get_layer("hidden").get_weights()
    hidden_w[-1], hidden_w[:, 0], hidden_b[0] = 0.0, 0.0, 0.0
    hidden_w[-1, 0] = 1.0
    model.get_layer("hidden").set_weights([hidden_w, hidden_b])
    # ...spiky's unit 0 multiplies it by 1000, and the output layer ignores that unit.
    spiky_w, spiky_b = model.get_layer("spiky").get_weights()
    spiky_w[:, 0], spiky_w[0, 0], spiky_b[0] = 0.0, 1000.0, 0.0
    model.get_layer("spiky").set_weights([spiky_w, spiky_b])
    out_w, out_b = model.get_layer("out").get_weights()
    out_w[0] = 0.0
    model.get_layer("out").set_weights([out_w, out_b])
    keras_file = folder / "spiky.keras"
    model.save(keras_file)
    data = folder / "data.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    np.savez(folder / "eval.npz", x=x_test, y=y_test)
    int8 = folder / "spiky-int8.tflite"
    int8.write_bytes(convert_keras(model, ConversionConfig(quant="int8"), x_train))
    f32 = folder / "spiky-f32.tflite"
    f32.write_bytes(convert_keras(model, ConversionConfig(quant="none")))
    return folder, keras_file, data, int8, f32


@pytest.fixture(scope="module")
def keras_report(spiky):
    _, keras_file, data, int8, _ = spiky
    events = []
    report = quant_error(int8, str(keras_file), data=str(data), progress=events.append, **FAST)
    return report, events


def _layer(report, word):
    return next(layer for layer in report["layers"] if word in layer["name"])


def test_layers_have_the_contract_keys_ranked_worst_first(keras_report):
    report, events = keras_report
    layers = report["layers"]
    assert layers and all(set(layer) >= KEYS for layer in layers)
    snrs = [layer["snr_db"] for layer in layers]
    assert snrs == sorted(snrs) and all(np.isfinite(snrs))
    assert all(-1.0 <= layer["cosine"] <= 1.0 and layer["max_abs"] >= 0 for layer in layers)
    assert {layer["op"] for layer in layers} >= {"FULLY_CONNECTED"}
    assert any(event.total == FAST["top"] for event in events)  # progress per re-quantization


def test_the_outlier_layer_has_the_lowest_snr(keras_report):
    report, _ = keras_report
    spiky, hidden = _layer(report, "spiky"), _layer(report, "hidden")
    assert spiky["snr_db"] < hidden["snr_db"] - 10
    assert report["layers"][0]["name"] == spiky["name"]
    assert spiky["max_abs"] > hidden["max_abs"]


def test_acc_if_float_for_the_worst_layers_only(keras_report):
    report, _ = keras_report
    layers = report["layers"]
    measured = [layer["acc_if_float"] for layer in layers[: FAST["top"]]]
    assert all(acc is not None for acc in measured)
    assert all(layer["acc_if_float"] is None for layer in layers[FAST["top"] :])
    # Keeping a layer in float never costs more than noise against all-int8.
    noise = 2 / report["eval_samples"]
    assert measured[0] >= report["requantized_accuracy"] - noise
    # The bad layer costs accuracy in int8: FILE and the debugger's own int8 agree on it.
    assert report["int8_accuracy"] < report["float_accuracy"] - 0.1
    assert abs(report["int8_accuracy"] - report["requantized_accuracy"]) <= 0.05


def test_float_tflite_reference_matches_tensors_by_position(spiky):
    folder, _, _, int8, f32 = spiky
    report = quant_error(int8, f32, data=str(folder / "eval.npz"), samples=40)
    assert report["method"] == "tensor-compare"
    layers = report["layers"]
    assert len(layers) >= 3 and all(set(layer) >= KEYS for layer in layers)
    assert all(layer["acc_if_float"] is None for layer in layers)
    snrs = [layer["snr_db"] for layer in layers]
    assert snrs == sorted(snrs) and all(np.isfinite(snrs))
    assert layers[0]["op"] == "FULLY_CONNECTED" and layers[-1]["snr_db"] > layers[0]["snr_db"]


def test_cli_writes_the_json_report(spiky, tmp_path, capsys):
    _, keras_file, data, int8, _ = spiky
    out = tmp_path / "qe.json"
    args = ["analyze", str(int8), "--quant-error", "--reference", str(keras_file)]
    options = ["--data", str(data), "--top", "1", "--samples", "20", "--eval-samples", "60"]
    assert main([*args, *options, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["layers"][0]) >= KEYS and report["layers"][0]["acc_if_float"] is not None
    assert report["layers"][1]["acc_if_float"] is None
    assert "worst" in capsys.readouterr().err


def test_float_file_given_as_the_quantized_one_is_refused(spiky, capsys):
    _, keras_file, data, _, f32 = spiky
    with pytest.raises(ModelFileError, match="a float model"):
        quant_error(f32, str(keras_file), data=str(data))
    args = ["analyze", str(f32), "--quant-error", "--reference", str(keras_file)]
    assert main([*args, "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert str(f32) in err and "Traceback" not in err


def test_reference_that_does_not_match_is_refused(spiky, tmp_path):
    from edgesmith.convert import convert_keras
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.zoo.tfkeras import keras

    folder, _, _, int8, _ = spiky
    k = keras()
    inputs = k.Input((FEATURES // 2,))
    other = k.Model(inputs, k.layers.Dense(CLASSES, activation="softmax")(inputs))
    other_file = tmp_path / "other.keras"
    other.save(other_file)
    with pytest.raises(ModelFileError, match="do not match"):
        quant_error(int8, str(other_file))
    other_f32 = tmp_path / "other.tflite"
    other_f32.write_bytes(convert_keras(other, ConversionConfig(quant="none")))
    with pytest.raises(ModelFileError, match="does not match"):
        quant_error(int8, other_f32, data=str(folder / "eval.npz"))
    with pytest.raises(ModelFileError, match="a quantized model"):
        quant_error(int8, int8, data=str(folder / "eval.npz"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([], "without --target or --quant-error"),
        (["--quant-error"], "--quant-error without --reference"),
    ],
)
def test_analyze_says_which_mode_is_missing(spiky, options, message, capsys):
    int8 = spiky[3]
    assert main(["analyze", str(int8), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.fixture(scope="module")
def scores_model(tmp_path_factory):
    """(keras file, npz data, int8 .tflite) of a model whose BATCH_MATMUL takes two activations.

    ``scores`` is query @ key^T (adj_y); key comes out of a relu, so its int8 zero point is
    -128, far from 0: a kernel that drops an input's zero point shows up in its error.
    """
    from edgesmith.convert import convert_keras
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.convert.source import load_source
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    k.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (260, 8, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, len(x))
    inputs = k.Input((8, FEATURES))
    query = k.layers.Dense(FEATURES, name="query")(inputs)
    key = k.layers.Dense(FEATURES, activation="relu", name="key")(inputs)
    scores = k.layers.Dot(axes=2, name="scores")([query, key])
    outputs = k.layers.Dense(CLASSES, activation="softmax")(k.layers.Flatten()(scores))
    model = k.Model(inputs, outputs)
    folder = tmp_path_factory.mktemp("quant-debug-matmul")
    keras_file = folder / "scores.keras"
    model.save(keras_file)
    data = folder / "data.npz"
    np.savez(data, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    # Calibrated on the samples quant_error re-calibrates on (the train split less the
    # validation share), so the file and the debugger's re-quantization are one model.
    x_calibration = load_source(str(keras_file), data=str(data)).x_calibration
    int8 = folder / "scores-int8.tflite"
    int8.write_bytes(convert_keras(model, ConversionConfig(quant="int8"), x_calibration))
    return keras_file, data, int8


def _single_op_snr(int8, x: np.ndarray) -> float:
    """SNR (dB) of the file's BATCH_MATMUL against numpy's matmul of its own dequantized inputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(int8),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    (op,) = [op for op in interpreter._get_ops_details() if op["op_name"] == "BATCH_MATMUL"]

    def value(index):
        scale, zero = interpreter._get_tensor_details(index, 0)["quantization"]
        return (interpreter.get_tensor(index).astype(np.float64) - zero) * scale

    detail = interpreter.get_input_details()[0]
    scale, zero = detail["quantization"]
    signal = noise = 0.0
    for sample in x:
        quantized = np.clip(np.round(sample[None] / scale + zero), -128, 127)
        interpreter.set_tensor(detail["index"], quantized.astype(np.int8))
        interpreter.invoke()
        query, key = (value(i) for i in op["inputs"])
        exact = query @ np.swapaxes(key, -1, -2)  # the model's query @ key^T
        signal += float(np.sum(exact**2))
        noise += float(np.sum((exact - value(op["outputs"][0])) ** 2))
    return 10 * np.log10(signal / noise)


def test_matmul_error_is_the_ops_own_as_litert_computes_it(scores_model):
    keras_file, data, int8 = scores_model
    samples = 20
    report = quant_error(int8, str(keras_file), data=str(data), top=0, samples=samples)
    (matmul,) = [layer for layer in report["layers"] if layer["op"] == "BATCH_MATMUL"]
    x_test = np.load(data)["x_test"][:samples]
    assert matmul["snr_db"] == pytest.approx(_single_op_snr(int8, x_test), abs=0.5)
