"""The fine-tuning loop every step uses: Adam with cosine decay, a progress bar, deterministic.

Unlike zoo training it keeps the weights of the *last* epoch: pruning schedules and
quantizer ranges must end where the step's budget ends, not at an earlier epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgesmith.zoo.datasets import DatasetSplits


def finetune(
    model: Any,
    data: DatasetSplits,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    description: str,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
    loss: Any = None,
    metrics: Sequence[Any] = ("accuracy",),
    y_train: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    x_train: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    keep_best_from: int | None = None,
    clipnorm: float | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` for ``epochs`` on ``data.train`` and return the per-epoch history.

    ``x_*``/``y_*`` replace the data set's arrays (distillation packs teacher logits into
    the targets). With ``keep_best_from=E`` the weights of the epoch with the best
    validation accuracy among epochs ``E..`` (0-based) are restored at the end: a pruning
    schedule must have reached its target by then. ``clipnorm`` caps each gradient's norm
    (recurrent students trained from scratch need it). With ``epochs=0`` nothing is trained
    and the history is empty.
    """
    if epochs < 1:
        return {}
    from edgesmith.zoo.tfkeras import keras, set_seed, tf

    k, t = keras(), tf()
    set_seed(seed)
    x_train = data.x_train if x_train is None else x_train
    y_train = data.y_train if y_train is None else y_train
    x_val = data.x_val if x_val is None else x_val
    y_val = data.y_val if y_val is None else y_val
    steps = int(np.ceil(len(y_train) / batch_size))
    schedule = k.optimizers.schedules.CosineDecay(learning_rate, steps * epochs, alpha=0.05)
    model.compile(
        optimizer=k.optimizers.Adam(schedule, clipnorm=clipnorm),
        loss=loss or k.losses.SparseCategoricalCrossentropy(),
        metrics=list(metrics),
    )
    train = t.data.Dataset.from_tensor_slices((x_train, y_train))
    train = train.shuffle(len(y_train), seed=seed, reshuffle_each_iteration=True)
    train = train.batch(batch_size).prefetch(2)
    extra = [progress_callback(steps * epochs, description)]
    best = _keep_best(k, keep_best_from) if keep_best_from is not None and len(y_val) else None
    history = model.fit(
        train,
        validation_data=(x_val, y_val) if len(y_val) else None,
        epochs=epochs,
        verbose=0,
        callbacks=[*callbacks, *extra, *([best] if best else [])],
    )
    result = {key: [float(v) for v in values] for key, values in history.history.items()}
    if best is not None and best.weights is not None:
        model.set_weights(best.weights)
        result["kept_epoch"] = [float(best.epoch)]
    return result


def _keep_best(k: Any, first_epoch: int) -> Any:
    """Remembers the weights of the best validation epoch from ``first_epoch`` on."""

    class KeepBest(k.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best = -1.0
            self.epoch = -1
            self.weights: list[np.ndarray] | None = None

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            score = float((logs or {}).get("val_accuracy", -1.0))
            if epoch >= first_epoch and score > self.best:
                self.best, self.epoch, self.weights = score, epoch, self.model.get_weights()

    return KeepBest()


def progress_callback(total_steps: int, description: str) -> Any:
    """A Keras callback drawing one rich progress bar over every batch of the fine-tuning."""
    from edgesmith.console import progress_bar
    from edgesmith.zoo.tfkeras import keras

    class RichProgress(keras().callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.bar = progress_bar()
            self.bar.start()
            self.task = self.bar.add_task(description, total=total_steps, status="")

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.bar.update(self.task, advance=1)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            status = " ".join(
                f"{key}={logs[key]:.3f}" for key in ("loss", "val_accuracy") if key in logs
            )
            self.bar.update(self.task, status=status)

        def on_train_end(self, logs: Any = None) -> None:
            self.bar.stop()

    return RichProgress()


def tensorboard_callbacks(logdir: str | None, name: str) -> list[Any]:
    """A TensorBoard callback writing to ``logdir/name`` (none when ``logdir`` is None)."""
    if not logdir:
        return []
    from pathlib import Path

    from edgesmith.zoo.tfkeras import keras

    return [keras().callbacks.TensorBoard(log_dir=str(Path(logdir) / name), profile_batch=0)]


def keep_zeros(model: Any, *, skip: set[str]) -> list[Any]:
    """A callback that zeroes again, after each batch, the kernel weights that were zero.

    For the layers a step does not wrap (``skip`` names those it does): without it,
    fine-tuning would regrow the zeros an earlier pruning step left in them.
    """
    from edgesmith.compress.layers import inner_layer, kernels, model_layers
    from edgesmith.zoo.tfkeras import keras

    tracked = []
    for layer in model_layers(model):
        if layer.name in skip or inner_layer(layer).name in skip:
            continue
        for _name, variable in kernels(layer):
            values = np.asarray(variable.numpy())
            if np.any(values == 0):
                tracked.append((variable, (values != 0).astype(values.dtype)))
    if not tracked:
        return []

    class KeepZeros(keras().callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            for variable, mask in tracked:
                variable.assign(variable * mask)

    return [KeepZeros()]
