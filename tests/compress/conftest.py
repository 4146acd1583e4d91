"""Fixtures of the compress tests beyond the shared tiny models (tests/tiny_models.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.tiny_models import FAMILIES, Tiny

__all__ = ["FAMILIES", "custom_layer_model"]


@pytest.fixture(scope="session")
def token_tiny() -> Tiny:
    """A tiny Transformer over token ids: each digits pixel's grey level (0..16) is a token."""
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.datasets import DatasetSplits, load_dataset
    from edgesmith.zoo.registry import TrainConfig
    from edgesmith.zoo.tfkeras import set_seed
    from edgesmith.zoo.train import fit

    set_seed(0)
    digits = load_dataset("digits")
    digits = DatasetSplits(
        **{**digits.__dict__, "x_train": digits.x_train[:512], "y_train": digits.y_train[:512]}
    )
    arrays = {
        f"x_{s}": np.rint(
            getattr(digits, f"x_{s}").reshape(len(getattr(digits, f"x_{s}")), -1) * 16
        )
        for s in ("train", "val", "test")
    }
    preprocessing = {**digits.preprocessing, "vocabulary": [str(i) for i in range(17)]}
    data = DatasetSplits(**{**digits.__dict__, **arrays, "preprocessing": preprocessing})
    options = {"width": 1.0, "depth": 1, "heads": 2, "vocab_size": 17}
    model = build_model("transformer", input_shape=(64,), num_classes=10, **options)
    fit(model, data, TrainConfig(epochs=12, batch_size=32, learning_rate=3e-3))
    return Tiny("transformer", model, data, {"arch": "transformer", "layout": "tokens", **options})


def custom_layer_model() -> Any:
    """A model with a custom layer holding a weight that no technique knows."""
    from edgesmith.zoo.tfkeras import keras

    k = keras()

    class Scale(k.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.scale = self.add_weight(name="scale", shape=(int(input_shape[-1]),))

        def call(self, inputs: Any) -> Any:
            return inputs * self.scale

    inputs = k.Input((8, 8))
    x = k.layers.Flatten()(inputs)
    x = Scale(name="my_scale")(x)
    x = k.layers.Dense(16, activation="relu", name="hidden")(x)
    logits = k.layers.Dense(10, name="logits")(x)
    return k.Model(inputs, k.layers.Softmax(name="probs")(logits))
