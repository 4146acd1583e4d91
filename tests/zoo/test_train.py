"""Training: deterministic under a seed, clearly above chance in a few epochs, stored once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith.core.errors import StoreError
from edgesmith.zoo.store import ModelStore
from edgesmith.zoo.train import train_zoo_model
from tests.conftest import FAMILY_MODELS


@pytest.mark.parametrize("family", FAMILY_MODELS)
def test_few_epochs_reach_well_above_chance(family, tiny_store):
    card = ModelStore(tiny_store).card(FAMILY_MODELS[family])
    assert card.family == family
    assert card.accuracy > 0.5, f"{card.name}: {card.accuracy:.3f} after {card.epochs} epochs"
    assert card.split == {"train": 1257, "val": 270, "test": 270}
    assert card.params > 0 and card.versions["tensorflow"].startswith("2.21")


def test_card_and_folder_layout(tiny_store):
    folder = ModelStore(tiny_store).path("cnn-digits")
    assert sorted(p.name for p in folder.iterdir()) == [
        "card.json",
        "model.keras",
        "preprocessing.json",
    ]
    card = json.loads((folder / "card.json").read_text())
    for key in ("name", "family", "task", "dataset", "split", "seed", "epochs", "params"):
        assert key in card
    assert card["metric"]["accuracy"] == card["accuracy"]


@pytest.mark.slow
def test_same_seed_gives_same_weights(tmp_path):
    stores = [ModelStore(tmp_path / str(i)) for i in range(2)]
    for store in stores:
        train_zoo_model("cnn-digits", epochs=1, store=store)
    a, b = (store.load("cnn-digits").model.get_weights() for store in stores)
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.slow
def test_second_train_reuses_the_stored_model(tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    first = train_zoo_model("cnn-digits", epochs=1, store=store)
    import edgesmith.zoo.train as train

    def no_training(*args, **kwargs):
        raise AssertionError("a stored model must not be trained again")

    monkeypatch.setattr(train, "fit", no_training)
    assert train_zoo_model("cnn-digits", epochs=1, store=store) == first
    with pytest.raises(AssertionError, match="must not be trained"):
        train_zoo_model("cnn-digits", epochs=1, store=store, retrain=True)
    assert store.card("cnn-digits") == first  # a failed retrain leaves the old copy intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".edgesmith-tmp")]


def test_missing_model_in_store_says_how_to_train_it(tmp_path):
    with pytest.raises(StoreError, match="edgesmith zoo train lstm-kws"):
        ModelStore(tmp_path).card("lstm-kws")


@pytest.mark.slow
def test_training_reports_through_the_progress_callback_and_prints_nothing(tmp_path, capsys):
    train_zoo_model("cnn-digits", epochs=1, store=tmp_path / "quiet")
    events = []
    train_zoo_model("cnn-digits", epochs=2, store=tmp_path / "seen", progress=events.append)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert [(e.task, e.done, e.total) for e in events] == [
        ("cnn-digits", 0, 2),
        ("cnn-digits", 1, 2),
        ("cnn-digits", 2, 2),
    ]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(events[-1].fields)


@pytest.mark.slow
def test_the_training_loop_restores_the_best_validation_epoch():
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.datasets import load_dataset
    from edgesmith.zoo.tfkeras import set_seed
    from edgesmith.zoo.train import evaluate_model, train_loop

    data = load_dataset("digits").with_layout("image")
    set_seed(0)
    model = build_model("cnn", input_shape=data.input_shape, num_classes=10, width=0.25, depth=1)
    history = train_loop(model, data, epochs=4, learning_rate=5e-3, batch_size=64, keep_best_from=1)
    scores, losses = history["val_accuracy"], history["val_loss"]
    # From epoch 1 on, the best accuracy; of equals, the lowest validation loss.
    best = max(range(1, len(scores)), key=lambda e: (scores[e], -losses[e]))
    assert history["kept_epoch"] == [best]
    assert evaluate_model(model, data, "val")["accuracy"] == pytest.approx(scores[best], abs=1e-6)
    assert train_loop(model, data, epochs=0, learning_rate=1e-3, batch_size=64) == {}


def test_train_loop_traces_its_training_step_once():
    """Optimizer slots and metric trackers exist before fit: no second trace to create them."""
    from edgesmith.zoo.datasets import DatasetSplits
    from edgesmith.zoo.tfkeras import keras
    from edgesmith.zoo.train import train_loop

    k = keras()
    inputs = k.Input((6,))
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(inputs))
    traces = []
    step = model.train_step

    def counted(data):
        traces.append(1)  # the body runs once per trace, not per batch
        return step(data)

    model.train_step = counted
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 3, size=40)
    data = DatasetSplits(
        "toy", "classification", x, y, x[:8], y[:8], x[:8], y[:8], ("a", "b", "c"), {}
    )
    history = train_loop(model, data, epochs=2, learning_rate=1e-2, batch_size=8, task="train")
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    assert len(traces) == 1


def test_equally_accurate_epochs_are_split_by_validation_loss():
    from edgesmith.zoo.tfkeras import keras
    from edgesmith.zoo.train import _keep_best

    keep = _keep_best(keras(), 1)

    class Model:
        weights = 0

        def get_weights(self):
            return self.weights

    keep.set_model(Model())
    logs = [(0.99, 0.01), (0.95, 0.2), (0.99, 0.3), (0.99, 0.1), (0.99, 0.2), (0.98, 0.01)]
    for epoch, (accuracy, loss) in enumerate(logs):
        keep.model.weights = epoch
        keep.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
    # Epoch 0 is before the first counted; of the 0.99 epochs, 3 has the lowest loss.
    assert keep.epoch == 3 and keep.weights == 3
