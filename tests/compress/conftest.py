"""Tiny trained models of the three families on the digits data set, shared by the compress tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from edgesmith.core.tables import FAMILIES

# Small but not trivial: every kernel has an input size that is a multiple of 4 (except
# the CNN's first conv, which reads one channel) so that 2:4 structure applies.
TINY = {
    "cnn": ("cnn", "image", {"width": 0.5, "depth": 1}),
    "lstm": ("lstm", "sequence", {"width": 0.5}),
    "transformer": ("transformer", "sequence", {"width": 0.5, "depth": 1, "heads": 2}),
}
EPOCHS = {"cnn": 4, "lstm": 15, "transformer": 6}  # each well above chance (> 0.7)


@dataclass
class Tiny:
    family: str
    model: Any
    data: Any
    builder: dict[str, Any]


def _subset(data: Any, n_train: int = 512) -> Any:
    """The digits splits with a smaller training split, so fine-tuning takes a second."""
    from edgesmith.zoo.datasets import DatasetSplits

    return DatasetSplits(
        **{**data.__dict__, "x_train": data.x_train[:n_train], "y_train": data.y_train[:n_train]}
    )


def build_tiny(family: str) -> Tiny:
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.datasets import load_dataset
    from edgesmith.zoo.registry import TrainConfig
    from edgesmith.zoo.tfkeras import set_seed
    from edgesmith.zoo.train import fit

    arch, layout, options = TINY[family]
    set_seed(0)
    data = _subset(load_dataset("digits").with_layout(layout))
    model = build_model(arch, input_shape=data.input_shape, num_classes=10, **options)
    fit(model, data, TrainConfig(epochs=EPOCHS[family], batch_size=32, learning_rate=5e-3))
    return Tiny(family, model, data, {"arch": arch, "layout": layout, **options})


@pytest.fixture(scope="session")
def tiny() -> dict[str, Tiny]:
    """One trained tiny model per family (digits, a few epochs), built once per session."""
    return {family: build_tiny(family) for family in FAMILIES}


@pytest.fixture(scope="session")
def token_tiny() -> Tiny:
    """A tiny Transformer over token ids: each digits pixel's grey level (0..16) is a token."""
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.datasets import DatasetSplits, load_dataset
    from edgesmith.zoo.registry import TrainConfig
    from edgesmith.zoo.tfkeras import set_seed
    from edgesmith.zoo.train import fit

    set_seed(0)
    digits = _subset(load_dataset("digits"))
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
