"""Train zoo models deterministically and keep them in the model store.

Example:
    >>> from edgesmith.zoo.train import train_zoo_model
    >>> card = train_zoo_model("cnn-digits", epochs=2, store="/tmp/es-doc-store")  # doctest: +SKIP
    >>> card.accuracy > 0.5  # doctest: +SKIP
    True
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError
from edgesmith.core.metrics import classification_metrics
from edgesmith.core.records import ModelCard, command_line, library_versions
from edgesmith.zoo.datasets import DatasetSplits, load_dataset
from edgesmith.zoo.registry import ModelSpec, TrainConfig, get_spec
from edgesmith.zoo.store import ModelStore

TF_PACKAGES = (
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "numpy",
    "scikit-learn",
)


def load_spec_data(
    spec: ModelSpec,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    preprocessing: dict[str, Any] | None = None,
) -> DatasetSplits:
    """The data of ``spec``'s data set, shaped the way its model consumes it."""
    data = load_dataset(
        spec.dataset,
        data_dir=data_dir,
        preprocessing=preprocessing,
        options=spec.dataset_options,
    )
    return data.with_layout(spec.layout)


def build_for_data(spec: ModelSpec, data: DatasetSplits, **overrides: Any) -> Any:
    """An untrained model of ``spec`` sized for ``data`` (``overrides`` change width/depth)."""
    from edgesmith.zoo.builders import build_model

    options = {**spec.builder, **overrides}
    if spec.layout == "tokens":
        options.setdefault("vocab_size", len(data.preprocessing["vocabulary"]) + 2)
    return build_model(
        spec.arch,
        input_shape=data.input_shape,
        num_classes=len(data.class_names),
        name=spec.name.replace("-", "_"),
        **options,
    )


def fit(
    model: Any,
    data: DatasetSplits,
    config: TrainConfig,
    *,
    seed: int = 0,
    description: str = "training",
    loss: Any = None,
) -> dict[str, list[float]]:
    """Train ``model`` on ``data.train``; keep the weights of the best validation epoch.

    Returns the per-epoch history (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``).
    """
    from edgesmith.zoo.tfkeras import keras, set_seed, tf

    k, t = keras(), tf()
    set_seed(seed)
    steps = int(np.ceil(len(data.y_train) / config.batch_size))
    schedule = k.optimizers.schedules.CosineDecay(config.learning_rate, steps * config.epochs)
    if config.weight_decay:
        optimizer = k.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    else:
        optimizer = k.optimizers.Adam(schedule)
    model.compile(
        optimizer=optimizer,
        loss=loss or k.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    train = t.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    train = train.shuffle(len(data.y_train), seed=seed, reshuffle_each_iteration=True)
    if config.augment == "shift":
        train = train.map(_random_shift(t, seed), num_parallel_calls=1, deterministic=True)
    elif config.augment is not None:
        raise ConfigError(f"augment={config.augment!r}", expected="None or 'shift'")
    train = train.batch(config.batch_size).prefetch(2)
    best = _keep_best_callback(k)
    history = model.fit(
        train,
        validation_data=(data.x_val, data.y_val),
        epochs=config.epochs,
        verbose=0,
        callbacks=[best, _progress_callback(k, config.epochs, description)],
    )
    best.restore(model)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs for ``x`` in inference mode, as NumPy."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def evaluate_model(model: Any, data: DatasetSplits, split: str = "test") -> dict[str, Any]:
    """Accuracy (and spam F1 for two-class tasks) of ``model`` on one split of ``data``."""
    x, y = data.split(split)
    metrics = classification_metrics(y, predict(model, x), data.class_names)
    return {**metrics, "samples": len(y), "split": split}


def train_zoo_model(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    store: ModelStore | str | os.PathLike[str] | None = None,
    retrain: bool = False,
    seed: int = 0,
) -> ModelCard:
    """Train zoo model ``name`` (or reuse the stored copy) and return its card.

    The same ``seed`` and data give the same weights. Progress is shown while training.
    """
    spec = get_spec(name)
    store = store if isinstance(store, ModelStore) else ModelStore(store)
    if store.has(name) and not retrain:
        return store.card(name)
    config = spec.train if epochs is None else replace(spec.train, epochs=epochs)
    if config.epochs < 1:
        raise ConfigError(f"epochs={config.epochs}", expected="at least 1")
    data = load_spec_data(spec, data_dir=data_dir)
    from edgesmith.zoo.tfkeras import set_seed

    set_seed(seed)
    model = build_for_data(spec, data)
    started = time.perf_counter()
    fit(model, data, config, seed=seed, description=name)
    seconds = time.perf_counter() - started
    result = evaluate_model(model, data, "test")
    card = ModelCard(
        name=name,
        family=spec.family,
        task=spec.task,
        dataset=spec.dataset,
        accuracy=result["accuracy"],
        metric={k: v for k, v in result.items() if k not in ("samples", "split")},
        split=data.sizes,
        seed=seed,
        epochs=config.epochs,
        params=int(model.count_params()),
        input_shape=list(data.input_shape),
        layout=spec.layout,
        classes=list(data.class_names),
        train_seconds=round(seconds, 2),
        versions=library_versions(*TF_PACKAGES),
        command=command_line(),
        builder={"arch": spec.arch, **spec.builder, "train": asdict(config)},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    store.save(model, card, data.preprocessing)
    return card


def _random_shift(t: Any, seed: int, pixels: int = 2) -> Any:
    """Translate an image by up to ``pixels`` in each direction (zero fill)."""

    def shift(x: Any, y: Any) -> tuple[Any, Any]:
        h, w = x.shape[0], x.shape[1]
        padded = t.pad(x, [[pixels, pixels], [pixels, pixels], [0, 0]])
        return t.image.random_crop(padded, (h, w, x.shape[2]), seed=seed), y

    return shift


def _progress_callback(k: Any, epochs: int, description: str) -> Any:
    from edgesmith.console import progress_bar

    class RichProgress(k.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.bar = progress_bar()
            self.bar.start()
            self.task = self.bar.add_task(description, total=epochs, status="")

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            status = " ".join(
                f"{key}={logs[key]:.3f}" for key in ("loss", "val_accuracy") if key in logs
            )
            self.bar.update(self.task, advance=1, status=status)

        def on_train_end(self, logs: Any = None) -> None:
            self.bar.stop()

    return RichProgress()


def _keep_best_callback(k: Any) -> Any:
    """A callback that remembers the weights of the epoch with the best validation accuracy."""

    class KeepBest(k.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best = -1.0
            self.weights: list[np.ndarray] | None = None

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            score = float((logs or {}).get("val_accuracy", -1.0))
            if score > self.best:
                self.best, self.weights = score, self.model.get_weights()

        def restore(self, model: Any) -> None:
            if self.weights is not None:
                model.set_weights(self.weights)

    return KeepBest()
