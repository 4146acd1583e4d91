"""A user's Keras 3 model and .npz through every command: convert, compress, bench and run.

The models are small Keras 3 models of each family trained for a few epochs on the
embedded digits (8x8), saved as .keras files next to an .npz of the data, exactly as a
user would bring them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith.cli import main

pytestmark = pytest.mark.slow

FAMILIES = ("cnn", "lstm", "transformer")


def _build(family: str):
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    if family == "cnn":
        inputs = keras.Input((8, 8, 1))
        x = layers.Rescaling(1 / 16)(inputs)
        x = layers.Conv2D(16, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.SeparableConv2D(16, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
    elif family == "lstm":
        inputs = keras.Input((8, 8))
        x = layers.Rescaling(1 / 16)(inputs)
        x = layers.Bidirectional(layers.GRU(12))(x)
    else:
        inputs = keras.Input((8, 8))
        x = layers.Rescaling(1 / 16)(inputs)
        x = layers.Dense(16)(x)
        a = layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
        x = layers.LayerNormalization()(layers.Add()([x, a]))
        x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"my-{family}")


@pytest.fixture(scope="module", params=FAMILIES)
def user_files(request, tmp_path_factory):
    """(family, model.keras, data.npz) for a Keras 3 model trained briefly on digits."""
    import keras
    from sklearn.datasets import load_digits

    family = request.param
    folder = tmp_path_factory.mktemp(f"user-{family}")
    digits = load_digits()
    x = digits.images.astype(np.float32)
    if family == "cnn":
        x = x[..., np.newaxis]
    y = digits.target.astype(np.int64)
    model = _build(family)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", x=x, y=y)
    return family, folder / "model.keras", folder / "data.npz"


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_convert_a_keras3_model_with_its_data(user_files, tmp_path, capsys):
    family, model, data = user_files
    out = tmp_path / "my.tflite"
    argv = ["convert", str(model), "--data", str(data), "--format", "tflite", "--quant", "int8"]
    assert main([*argv, "--out", str(out), "--json", str(tmp_path / "r.json")]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert out.is_file()
    assert record["family"] == family
    assert record["accuracy"] is not None
    # int8 from real calibration data stays close to the Keras model on the same samples.
    assert abs(record["accuracy"] - record["reference"]["accuracy"]) < 0.05
    assert any("Keras 3 model rebuilt" in note for note in record["notes"])

    # bench measures accuracy on the same data's test split, with no TensorFlow.
    bench = ["bench", str(out), "--data", str(data), "--backend", "litert", "--runs", "3"]
    assert main([*bench, "--json", "-"]) == 0
    measured = _json_out(capsys)
    assert measured["accuracy"] == pytest.approx(record["accuracy"], abs=1e-9)


def test_compress_a_keras3_model_then_convert_the_folder(user_files, tmp_path):
    _, model, data = user_files
    out = tmp_path / "pruned"
    recipe = "prune:sparsity=0.5,epochs=1"
    argv = ["compress", str(model), "--data", str(data), "--recipe", recipe, "--out", str(out)]
    assert main(argv) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["sparsity"] == pytest.approx(0.5, abs=0.05)
    source = card["parent"]["source"]
    assert source["keras3"] is True and source["rebuild"]["passed"] is True
    assert source["rebuild"]["max_abs_diff"] <= 1e-5
    # The folder remembers its data: convert needs no --data to calibrate and evaluate.
    target = tmp_path / "pruned.onnx"
    argv = ["convert", str(out), "--format", "onnx", "--quant", "int8", "--out", str(target)]
    assert main([*argv, "--json", str(tmp_path / "c.json")]) == 0
    record = json.loads((tmp_path / "c.json").read_text())
    assert record["accuracy"] is not None and record["split"] == "test"


def test_a_plan_runs_a_user_model_next_to_nothing_else(user_files, tmp_path):
    family, model, data = user_files
    if family != "cnn":
        pytest.skip("one family is enough for the plan runner's wiring")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "models:\n"
        f"  mine: {{file: {model}, data: {data}}}\n"
        "targets: ['tflite:none']\n"
        "backends: [litert]\n"
        "bench: {runs: 3, warmup: 1}\n"
    )
    out = tmp_path / "report"
    assert main(["run", "--plan", str(plan), "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert records and all(r["model"] == "mine" and not r.get("error") for r in records)
    assert records[0]["accuracy"] is not None
    assert (out / "index.html").is_file()
    # Nothing is recomputed on a second run: the import is keyed by the files' content.
    stages = sorted(p.name for p in (out / "stages" / "import").iterdir())
    assert main(["run", "--plan", str(plan), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "stages" / "import").iterdir()) == stages


def test_a_model_file_without_data_cannot_be_compressed(user_files, tmp_path, capsys):
    _, model, _ = user_files
    argv = ["compress", str(model), "--recipe", "prune", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_lambda_in_a_model_file_is_refused_by_the_cli(tmp_path, capsys):
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0, name="sneaky")(inputs)
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "evil.keras")
    argv = ["convert", str(tmp_path / "evil.keras"), "--format", "tflite"]
    assert main([*argv, "--out", str(tmp_path / "e.tflite")]) == 2
    err = capsys.readouterr().err
    assert "sneaky" in err and "Lambda" in err and "--trust-model" in err
    assert not (tmp_path / "e.tflite").exists()


def test_data_that_does_not_fit_the_model_is_one_clear_error(user_files, tmp_path, capsys):
    _, model, _ = user_files
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((40, 5, 5), np.float32), y=np.zeros(40, np.int64))
    argv = ["convert", str(model), "--data", str(bad), "--format", "tflite"]
    assert main([*argv, "--out", str(tmp_path / "m.tflite")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


def test_out_of_range_labels_are_refused(user_files, tmp_path, capsys):
    _, model, data = user_files
    arrays = dict(np.load(data))
    arrays["y"] = arrays["y"] + 5  # classes 5..14 for a 10-class model
    bad = tmp_path / "labels.npz"
    np.savez(bad, **arrays)
    argv = ["compress", str(model), "--data", str(bad), "--recipe", "prune"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert str(bad) in capsys.readouterr().err


def test_the_python_api_takes_a_live_model_and_arrays(tmp_path):
    """compress_model and convert_model with a keras.Model object and (x, y) arrays."""
    import keras
    from sklearn.datasets import load_digits

    from edgesmith.compress.recipe_runner import compress_model
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.convert.converter import convert_model

    digits = load_digits()
    x, y = digits.images.astype(np.float32)[..., np.newaxis], digits.target
    model = _build("cnn")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    card = compress_model(model, "prune:sparsity=0.5,epochs=1", out=tmp_path / "p", data=(x, y))
    assert card.sparsity == pytest.approx(0.5, abs=0.05)
    assert card.parent["source"]["file"] == "(in memory)"
    # In-memory data cannot be found again from the folder: it is given again, same split.
    result = convert_model(
        tmp_path / "p",
        out=tmp_path / "p.tflite",
        config=ConversionConfig(format="tflite", quant="int8"),
        data=(x, y),
    )
    assert result.record.accuracy is not None
    assert result.record.samples == card.split["test"]


def test_an_exported_savedmodel_converts_and_benches_but_does_not_compress(tmp_path, capsys):
    """keras.Model.export writes graphs, no Keras model: convert and bench, not compress."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.images.astype(np.float32)[..., np.newaxis], digits.target
    np.savez(tmp_path / "data.npz", x=x, y=y)
    import keras

    model = _build("cnn")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    model.export(str(tmp_path / "exported"), verbose=False)
    for quant in ("none", "int8"):
        out = tmp_path / f"e-{quant}.tflite"
        argv = ["convert", str(tmp_path / "exported"), "--data", str(tmp_path / "data.npz")]
        argv += ["--format", "tflite", "--quant", quant, "--out", str(out)]
        assert main([*argv, "--json", str(tmp_path / f"{quant}.json")]) == 0, quant
        record = json.loads((tmp_path / f"{quant}.json").read_text())
        assert record["parity"]["ok"] and record["params"] == model.count_params()
        assert any("graphs only" in note for note in record["notes"])
    onnx = ["convert", str(tmp_path / "exported"), "--format", "onnx", "--out"]
    assert main([*onnx, str(tmp_path / "e.onnx")]) == 0
    capsys.readouterr()
    bench = ["bench", str(tmp_path / "e-int8.tflite"), "--data", str(tmp_path / "data.npz")]
    assert main([*bench, "--backend", "litert", "--runs", "3", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(
        record["accuracy"], abs=1e-9
    )
    argv = ["compress", str(tmp_path / "exported"), "--data", str(tmp_path / "data.npz")]
    assert main([*argv, "--recipe", "prune", "--out", str(tmp_path / "c")]) == 2
    assert "no Keras model" in capsys.readouterr().err
