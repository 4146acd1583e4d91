"""A user's model and data opened like a zoo model: live objects, arrays, tf.data, files."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.core.errors import ConfigError, DataError, ModelFileError
from edgesmith.zoo.user_model import (
    content_hash,
    detect_family,
    import_model,
    is_user_model,
    open_model_and_data,
)


def _keras3_model(kind: str = "softmax"):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu")(inputs)
    if kind == "sigmoid":
        outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    else:
        outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mine")


def _arrays(n: int = 90, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 6)).astype(np.float32) + y[:, None]
    return x, y.astype(np.int64)


def test_a_live_keras3_model_and_arrays_become_a_stored_model_with_a_card():
    stored, data = open_model_and_data(_keras3_model(), data=_arrays())
    card = stored.card
    assert type(stored.model).__module__.startswith("tf_keras")
    assert card.name == "mine" and card.family == "cnn" and card.task == "classification"
    assert card.source["keras3"] is True and card.source["rebuild"]["passed"] is True
    assert card.source["output"] == "softmax"
    assert card.accuracy is not None and card.split == data.sizes
    assert card.classes == ["0", "1", "2"]
    x = data.x_test[:5]
    # The tf-keras rebuild computes what the Keras 3 model computes.
    assert np.allclose(stored.model(x).numpy(), _keras3_model()(x), atol=1e-5)


def test_a_tf_data_dataset_is_data_too():
    import tensorflow as tf

    x, y = _arrays()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    stored, data = open_model_and_data(_keras3_model(), data=dataset)
    assert sum(data.sizes.values()) == len(y)
    assert stored.card.dataset == data.name


def test_a_binary_sigmoid_model_reports_binary_classification():
    x, y = _arrays(classes=2)
    stored, _ = open_model_and_data(_keras3_model("sigmoid"), data=(x, y))
    assert stored.card.task == "binary-classification"
    assert stored.card.source["output"] == "sigmoid"
    assert stored.card.classes == ["0", "1"]


def test_labels_beyond_the_models_classes_are_refused():
    x, y = _arrays(classes=5)
    with pytest.raises(DataError, match="label"):
        open_model_and_data(_keras3_model(), data=(x, y))


def test_a_model_file_needs_data_unless_told_otherwise(tmp_path):
    path = tmp_path / "mine.keras"
    _keras3_model().save(path)
    with pytest.raises(ConfigError, match="--data"):
        open_model_and_data(path)
    stored, data = open_model_and_data(path, require_data=False)
    assert data is None and stored.card.accuracy is None
    assert stored.card.source["sha256"] == content_hash(path)


def test_import_model_writes_a_folder_the_zoo_loaders_read(tmp_path):
    from edgesmith.zoo.evaluate import data_for, open_model

    path = tmp_path / "mine.keras"
    _keras3_model().save(path)
    x, y = _arrays()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    folder = import_model(path, out=tmp_path / "store" / "imported", data=tmp_path / "data.npz")
    stored = open_model(folder)
    again = data_for(stored)  # the data file is found again through the stored preprocessing
    _, first = open_model_and_data(path, data=tmp_path / "data.npz")
    assert np.array_equal(again.x_test, first.x_test)
    assert np.array_equal(again.y_train, first.y_train)
    direct, _ = open_model_and_data(path, data=tmp_path / "data.npz")
    assert stored.card.accuracy == pytest.approx(direct.card.accuracy)


def test_missing_files_and_zoo_names_are_told_apart(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        open_model_and_data(str(tmp_path / "typo.keras"))
    assert not is_user_model("cnn-digits")
    assert is_user_model(_keras3_model())


def test_family_follows_the_layers():
    import keras

    inputs = keras.Input((5, 4))
    x = keras.layers.Bidirectional(keras.layers.GRU(4))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    assert detect_family(model) == "lstm"
    a = keras.layers.MultiHeadAttention(2, 4)(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(a)))
    assert detect_family(model) == "transformer"


@pytest.mark.parametrize("as_file", [False, True])
def test_the_card_keeps_the_learning_rate_the_model_was_compiled_with(tmp_path, as_file):
    import keras

    model = _keras3_model()
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss="sparse_categorical_crossentropy")
    if as_file:
        model.save(tmp_path / "mine.keras")
        model = tmp_path / "mine.keras"
    stored, _ = open_model_and_data(model, data=_arrays())
    assert stored.card.builder["train"]["learning_rate"] == pytest.approx(5e-3)
    plain, _ = open_model_and_data(_keras3_model(), data=_arrays())
    assert plain.card.builder == {}
