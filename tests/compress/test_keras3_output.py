"""A Keras 3 model compressed gives a Keras 3 result beside the tf-keras one (not after QAT)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edgesmith.compress.recipe_runner import (
    KERAS3_FILE,
    KERAS3_QAT_NOTE,
    from_keras3,
    keras3_twin,
)
from edgesmith.core.errors import ModelFileError
from edgesmith.core.records import CompressionCard, ModelCard

SAMPLES = 384


def _keras3() -> Any:
    from edgesmith.zoo.tfkeras import keras

    keras()  # TensorFlow first, with tf.keras = Keras 2
    import keras as keras3

    keras3.utils.set_random_seed(0)
    return keras3


def _model(family: str) -> Any:
    k = _keras3()
    layers = k.layers
    if family == "cnn":
        inputs = k.Input((8, 8, 1))
        x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
        x = layers.BatchNormalization(name="bn")(x)
        x = layers.ReLU(name="relu")(x)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        inputs = k.Input((6, 8))
        x = layers.Dense(16, name="embed")(inputs)
        a = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attn")(x, x)
        x = layers.LayerNormalization(name="norm")(layers.Add(name="residual")([x, a]))
        x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(3, activation="softmax", name="head")(x)
    return k.Model(inputs, outputs, name=f"k3-{family}")


def _learnable_data(family: str) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs labelled by a fixed projection: a task a small model learns quickly."""
    rng = np.random.default_rng(0)
    shape = (8, 8, 1) if family == "cnn" else (6, 8)
    x = rng.standard_normal((SAMPLES, *shape)).astype(np.float32)
    projection = rng.standard_normal((int(np.prod(shape)), 3))
    y = np.argmax(x.reshape(SAMPLES, -1) @ projection, axis=1).astype(np.int64)
    return x, y


@pytest.fixture(scope="module", params=("cnn", "transformer"))
def keras3_files(request, tmp_path_factory):
    """(family, model.keras written by Keras 3, data.npz with x and y)."""
    family = request.param
    k = _keras3()
    folder = tmp_path_factory.mktemp(f"k3-{family}")
    x, y = _learnable_data(family)
    model = _model(family)
    model.compile(k.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", x=x, y=y)
    return family, folder / "model.keras", folder / "data.npz"


def _kernel_zero_share(model3: Any) -> float:
    kernels = [w for w in model3.weights if w.path.endswith("kernel")]
    values = np.concatenate([np.asarray(w).ravel() for w in kernels])
    return float(np.mean(values == 0))


@pytest.mark.slow
def test_pruned_keras3_model_gets_a_keras3_result(keras3_files, tmp_path):
    import keras

    from edgesmith.compress.recipe_runner import compress_model
    from edgesmith.zoo.keras3_back import keras3_custom_objects
    from edgesmith.zoo.store import load_keras_model

    family, path, data = keras3_files
    out = tmp_path / "pruned"
    card = compress_model(path, "prune:sparsity=0.5,epochs=1", out=out, data=data)

    assert card.keras3_file == KERAS3_FILE and card.keras3_note == ""
    assert json.loads((out / "card.json").read_text())["keras3_file"] == KERAS3_FILE
    model3 = keras.saving.load_model(
        out / KERAS3_FILE, custom_objects=keras3_custom_objects(), compile=False
    )
    assert type(model3).__module__.startswith("keras.")  # Keras 3, not tf-keras
    if family == "transformer":  # the attention went back to one Keras 3 layer
        assert "MultiHeadAttention" in [type(layer).__name__ for layer in model3.layers]
    tf_model = load_keras_model(out / "model.keras")
    x = np.load(data)["x"][:32]
    got = np.asarray(model3(x, training=False))
    want = np.asarray(tf_model(x, training=False))
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-5
    assert _kernel_zero_share(model3) == pytest.approx(0.5, abs=0.05)


@pytest.mark.slow
def test_qat_result_stays_tf_keras_and_the_card_says_why(keras3_files, tmp_path):
    from edgesmith.compress.recipe_runner import compress_model

    family, path, data = keras3_files
    if family != "cnn":
        pytest.skip("one family shows the QAT rule")
    out = tmp_path / "qat"
    card = compress_model(path, "qat:epochs=1", out=out, data=data)
    assert card.qat
    assert not (out / KERAS3_FILE).exists()
    assert card.keras3_file == ""
    assert card.keras3_note == KERAS3_QAT_NOTE
    written = json.loads((out / "card.json").read_text())
    assert written["keras3_note"] == KERAS3_QAT_NOTE


# --- the rules, without training ---------------------------------------------------------


def _card(source: dict[str, Any], *, qat: bool = False, depth: int = 1) -> CompressionCard:
    parent = ModelCard(name="m", family="cnn", task="t", dataset="d", source=source).to_dict()
    for _ in range(depth - 1):  # a compress of a compress output: the source is further up
        parent = CompressionCard(
            name="m-prune", family="cnn", task="t", dataset="d", recipe="prune", parent=parent
        ).to_dict()
    return CompressionCard(
        name="m-x", family="cnn", task="t", dataset="d", recipe="x", qat=qat, parent=parent
    )


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_keras3_origin_is_found_up_the_parent_chain(depth):
    assert from_keras3(_card({"keras3": True}, depth=depth))
    assert not from_keras3(_card({"format": "h5"}, depth=depth))
    assert not from_keras3(_card({}, depth=depth))


def test_a_model_that_never_was_keras3_gets_no_file_and_no_note():
    model, card = keras3_twin(object(), _card({}))
    assert model is None and card.keras3_file == "" and card.keras3_note == ""


def test_qat_is_noted_without_any_conversion(monkeypatch):
    import edgesmith.zoo.keras3 as k3

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a QAT model must not be converted")

    monkeypatch.setattr(k3, "to_keras3", fail)
    model, card = keras3_twin(object(), _card({"keras3": True}, qat=True))
    assert model is None and card.keras3_file == "" and card.keras3_note == KERAS3_QAT_NOTE


def test_a_layer_without_keras3_form_is_a_note_not_a_failure(monkeypatch):
    import edgesmith.zoo.keras3 as k3

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ModelFileError("layer odd (OddLayer) has no Keras 3 counterpart here")

    monkeypatch.setattr(k3, "to_keras3", refuse)
    model, card = keras3_twin(object(), _card({"keras3": True}, depth=2))
    assert model is None and card.keras3_file == ""
    assert "odd (OddLayer)" in card.keras3_note
