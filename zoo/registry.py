"""The zoo's catalogue: every model, its family, data set, builder settings and budget.

This module imports no TensorFlow, so listing the zoo is instant.

Example:
    >>> from edgesmith.zoo.registry import get_spec
    >>> spec = get_spec("lstm-kws")
    >>> spec.family, spec.dataset
    ('lstm', 'fsdd')
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from edgesmith.core.errors import UnknownNameError

# Keras layer classes that make a model recurrent (the ``lstm`` family), by class name.
RECURRENT_LAYERS = frozenset({"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional"})


@dataclass(frozen=True)
class TrainConfig:
    """The training budget of one zoo model."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    augment: str | None = None  # "shift" for small random image translations


@dataclass(frozen=True)
class ModelSpec:
    """How to build, feed and train one zoo model."""

    name: str
    family: str  # cnn | lstm | transformer
    arch: str  # builder name in edgesmith.zoo.builders
    task: str
    dataset: str
    layout: str  # image | sequence | tokens
    description: str
    builder: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    metric: str = "accuracy"  # the extra metric in the card: accuracy | spam_f1


_KWS_FEATURES = {"features": "mfcc", "n_mfcc": 10}

SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "cnn-digits",
        "cnn",
        "cnn",
        "image-classification",
        "digits",
        "image",
        "Small CNN on scikit-learn's 8x8 digits (the embedded default).",
        builder={"width": 0.5, "depth": 1},
        train=TrainConfig(epochs=40, batch_size=32),
    ),
    ModelSpec(
        "lstm-digits",
        "lstm",
        "lstm",
        "image-classification",
        "digits",
        "sequence",
        "LSTM reading the 8x8 digits row by row.",
        train=TrainConfig(epochs=60, batch_size=32, learning_rate=1e-2),
    ),
    ModelSpec(
        "transformer-digits",
        "transformer",
        "transformer",
        "image-classification",
        "digits",
        "sequence",
        "Transformer with one token per row of the 8x8 digits.",
        builder={"width": 1.0, "depth": 2, "heads": 4},
        train=TrainConfig(epochs=60, batch_size=32, learning_rate=2e-3),
    ),
    ModelSpec(
        "cnn-mnist",
        "cnn",
        "cnn",
        "image-classification",
        "mnist",
        "image",
        "LeNet-class CNN on MNIST 28x28.",
        builder={"width": 1.0, "depth": 2},
        train=TrainConfig(epochs=15, batch_size=64, learning_rate=1e-3, augment="shift"),
    ),
    ModelSpec(
        "dscnn-kws",
        "cnn",
        "dscnn",
        "keyword-spotting",
        "fsdd",
        "image",
        "Depthwise-separable CNN (MLPerf Tiny KWS shape) on FSDD MFCC frames.",
        builder={"width": 1.0, "depth": 4},
        dataset_options=_KWS_FEATURES,
        train=TrainConfig(epochs=30, batch_size=32, learning_rate=3e-3),
    ),
    ModelSpec(
        "lstm-kws",
        "lstm",
        "lstm",
        "keyword-spotting",
        "fsdd",
        "sequence",
        "LSTM over FSDD MFCC frames.",
        builder={"width": 2.0, "depth": 1},
        dataset_options=_KWS_FEATURES,
        train=TrainConfig(epochs=40, batch_size=32, learning_rate=3e-3),
    ),
    ModelSpec(
        "transformer-kws",
        "transformer",
        "transformer",
        "keyword-spotting",
        "fsdd",
        "sequence",
        "Keyword-transformer style encoder, one token per FSDD MFCC frame.",
        builder={"width": 1.0, "depth": 2, "heads": 4},
        dataset_options=_KWS_FEATURES,
        train=TrainConfig(epochs=40, batch_size=32, learning_rate=2e-3),
    ),
    ModelSpec(
        "transformer-sms",
        "transformer",
        "transformer",
        "text-classification",
        "sms-spam",
        "tokens",
        "Transformer text classifier on the SMS Spam Collection.",
        builder={"width": 1.0, "depth": 1, "heads": 4},
        train=TrainConfig(epochs=10, batch_size=32, learning_rate=1e-3),
        metric="spam_f1",
    ),
)


def list_specs() -> list[ModelSpec]:
    """Every zoo model, in catalogue order."""
    return list(SPECS)


def model_names() -> list[str]:
    return [spec.name for spec in SPECS]


def get_spec(name: str) -> ModelSpec:
    """The spec of zoo model ``name``; an unknown name lists the known ones."""
    for spec in SPECS:
        if spec.name == name:
            return spec
    close = difflib.get_close_matches(name, model_names(), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "see `edgesmith zoo list`"
    raise UnknownNameError(
        f"unknown model {name!r}", expected=f"one of {', '.join(model_names())}", fix=hint
    )
