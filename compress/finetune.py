"""What compression adds to the zoo's training loop (:func:`edgesmith.zoo.train.train_loop`).

Every step fine-tunes through that loop (seeded, cosine decay, keep-best). Compression
differs only in the numbers below and in these callbacks: TensorBoard logs, and
:func:`keep_zeros`, which keeps an earlier pruning step's zeros in the layers a step does
not wrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Compression fine-tuning decays the learning rate to this share of its start (zoo
# training decays it to zero).
DECAY_FLOOR = 0.05


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
    from edgesmith.compress.layer_plan import inner_layer, kernels, model_layers
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
