"""The automatic fine-tuning budget: where its numbers come from, and when it stops."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.compress import prune
from edgesmith.compress.finetune import (
    AUTO_EPOCHS,
    AUTO_STEPS,
    SETTLE,
    recovery_stop,
    resolve_budget,
)
from edgesmith.compress.step import StepContext
from edgesmith.zoo.datasets import DatasetSplits

TRAINED = {"arch": "cnn", "train": {"epochs": 40, "learning_rate": 0.002, "batch_size": 32}}


def test_given_numbers_are_used_as_they_are():
    budget = resolve_budget(3, 0.01, train_samples=5000, batch_size=32, builder=TRAINED)
    assert (budget.epochs, budget.learning_rate, budget.automatic) == (3, 0.01, False)


def test_an_open_budget_follows_the_models_own_training():
    budget = resolve_budget(None, None, train_samples=5000, batch_size=32, builder=TRAINED)
    assert budget.automatic
    assert (budget.epochs, budget.learning_rate) == (40, 0.002)
    assert "training" in budget.source


@pytest.mark.parametrize("samples", [50, 1_000, 8_000, 200_000])
def test_an_unknown_history_caps_by_optimizer_steps_within_bounds(samples):
    budget = resolve_budget(None, None, train_samples=samples, batch_size=32, builder=None)
    steps_per_epoch = -(-samples // 32)
    expected = min(AUTO_EPOCHS[1], max(AUTO_EPOCHS[0], -(-AUTO_STEPS // steps_per_epoch)))
    assert budget.epochs == expected
    assert AUTO_EPOCHS[0] <= budget.epochs <= AUTO_EPOCHS[1]


def _toy(seed=0):
    from edgesmith.zoo.tfkeras import keras, set_seed

    k = keras()
    set_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    x[:, :2] += 0.5 * (2 * y[:, None] - 1)  # a margin: no validation sample is a coin toss
    data = DatasetSplits("toy", "t", x[:240], y[:240], x[240:320], y[240:320], x[320:], y[320:],
                         ("0", "1"), {})  # fmt: skip
    inputs = k.Input((8,))
    hidden = k.layers.Dense(32, activation="relu", name="hidden")(inputs)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax", name="logits")(hidden))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:240], y[:240], epochs=30, batch_size=32, verbose=0)
    return model, data


def test_a_callback_without_hope_of_recovery_stops_on_a_plateau():
    model, data = _toy()
    stop = recovery_stop(2.0, first_epoch=0, cap=12)  # a reference no model reaches
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
              epochs=12, verbose=0, callbacks=[stop])  # fmt: skip
    outcome = stop.outcome()
    assert outcome["stopped"] == "plateau"
    assert outcome["epochs"] < 12


def test_a_callback_ignores_epochs_before_its_first():
    model, data = _toy()
    stop = recovery_stop(0.0, first_epoch=3, cap=12)  # recovered at once, but not before 3
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
              epochs=12, verbose=0, callbacks=[stop])  # fmt: skip
    assert stop.outcome() == {"epochs": 4, "stopped": "recovered", "reference_val_accuracy": 0.0}


def test_pruning_with_an_open_budget_stops_when_recovered_and_says_so():
    model, data = _toy()
    context = StepContext(builder={"train": {"epochs": 30, "learning_rate": 0.003}})
    result = prune.run(model, data, prune.PruneConfig(sparsity=0.3), context)
    budget = result.details["budget"]
    assert budget["automatic"] and budget["cap"] == 30 and budget["learning_rate"] == 0.003
    assert budget["stopped"] == "recovered"
    assert budget["epochs"] == len(result.history["loss"]) < 30
    # Not before the learning rate has come down: at least SETTLE of the cap trained.
    assert budget["epochs"] >= int(30 * SETTLE) + 1
    assert budget["reference_val_accuracy"] > 0.8
    best = max(result.history["val_accuracy"][: budget["epochs"]])
    assert best >= budget["reference_val_accuracy"] - 1 / len(data.y_val)


def test_a_step_that_diverged_is_named_not_saved():
    from edgesmith.compress.recipe_runner import _check_finite
    from edgesmith.core.errors import ConfigError

    model, _ = _toy()
    _check_finite(model, prune.PruneConfig(sparsity=0.5), {"loss": [0.5]})  # finite: passes
    kernel = model.get_layer("hidden").kernel
    kernel.assign(np.full(kernel.shape, np.nan, dtype=np.float32))
    with pytest.raises(ConfigError, match=r"diverged, layer 'hidden'.*learning_rate"):
        _check_finite(model, prune.PruneConfig(sparsity=0.5), {"loss": [0.5, float("nan")]})
