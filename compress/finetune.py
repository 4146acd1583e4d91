"""What compression adds to the zoo's training loop (:func:`edgesmith.zoo.train.train_loop`).

Every step fine-tunes through that loop (seeded, cosine decay, keep-best). Compression
differs only in the numbers below and in these callbacks: TensorBoard logs, and
:func:`keep_zeros`, which keeps an earlier pruning step's zeros in the layers a step does
not wrap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


# -- the automatic budget ---------------------------------------------------------------
#
# A user does not know how long a compressed model needs to recover: the zoo's plans hold
# 40-60 epochs at the learning rate each model was trained with, found by hand, and the
# old default of 2 epochs at 1e-3 left cnn-digits at 93.7% (98.9% before) after 80%
# pruning. With ``epochs``/``learning_rate`` left open, a step fine-tunes at the rate the
# input model was trained with, for at most as many epochs as its training took (or, for a
# model of unknown history, enough epochs for ``AUTO_STEPS`` optimizer steps), and stops
# early once validation accuracy is back within ``RECOVER_WITHIN`` of the input model's,
# or has not improved for a quarter of the cap.

AUTO_LEARNING_RATE = 1e-3  # for a model whose training learning rate is unknown
AUTO_STEPS = 2400  # optimizer steps in the cap of a model whose training budget is unknown
AUTO_EPOCHS = (4, 60)  # bounds of the cap
RECOVER_WITHIN = 0.005  # validation accuracy back within half a point counts as recovered
# Share of a pruning fine-tuning's cap trained before it may stop (recovered or on a
# plateau). Stopped earlier, the learning rate is still near its start: a recovered epoch
# on a few hundred validation samples is partly luck, and a plateau at that rate says
# little. Measured on the real zoo models with every setting automatic, 80% unstructured:
# stopping at the first recovered epoch left transformer-kws 1.33 pt down on test after 6
# of 40 epochs, and a plateau stop left dscnn-kws 2.67 pt down after 16 of 30.
SETTLE = 0.5


@dataclass(frozen=True)
class Budget:
    """The fine-tuning budget a step runs with, and where each number came from.

    Example:
        >>> budget = resolve_budget(None, None, train_samples=1200, batch_size=32, builder={})
        >>> budget.epochs, budget.learning_rate, budget.automatic
        (60, 0.001, True)
        >>> resolve_budget(3, 1e-2, train_samples=1200, batch_size=32, builder={}).epochs
        3
    """

    epochs: int  # the horizon of the learning-rate schedule (the cap when automatic)
    learning_rate: float
    automatic: bool  # stop early on recovery or plateau
    source: str  # where the numbers came from, for the card

    def to_dict(self) -> dict[str, Any]:
        return {
            "cap" if self.automatic else "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "automatic": self.automatic,
            "source": self.source,
        }


def step_budget(config: Any, data: Any, context: Any) -> Budget:
    """:func:`resolve_budget` for a step's config (its ``epochs``, ``learning_rate`` and
    ``batch_size``), its data and its :class:`~edgesmith.compress.step.StepContext`."""
    return resolve_budget(
        config.epochs,
        config.learning_rate,
        train_samples=len(data.y_train),
        batch_size=config.batch_size or context.batch_size,
        builder=context.builder,
    )


def resolve_budget(
    epochs: int | None,
    learning_rate: float | None,
    *,
    train_samples: int,
    batch_size: int,
    builder: Mapping[str, Any] | None,
) -> Budget:
    """The budget for a step whose config gives ``epochs``/``learning_rate`` (None: automatic).

    ``builder`` is the input model's card builder: its ``train`` settings, where known,
    say how the model was trained.
    """
    trained = dict((builder or {}).get("train") or {})
    sources = []
    if learning_rate is None:
        if trained.get("learning_rate"):
            learning_rate = float(trained["learning_rate"])
            sources.append("learning rate of the model's training")
        else:
            learning_rate = AUTO_LEARNING_RATE
            sources.append(f"learning rate {AUTO_LEARNING_RATE:g} (training rate unknown)")
    if epochs is not None:
        return Budget(int(epochs), float(learning_rate), False, "; ".join(sources) or "given")
    low, high = AUTO_EPOCHS
    if trained.get("epochs"):
        cap = int(trained["epochs"])
        sources.append("at most the model's training epochs")
    else:
        steps_per_epoch = max(1, int(np.ceil(train_samples / batch_size)))
        cap = int(np.ceil(AUTO_STEPS / steps_per_epoch))
        sources.append(f"at most {AUTO_STEPS} steps (training budget unknown)")
    cap = min(high, max(low, cap))
    sources.append("until validation accuracy recovers or stops improving")
    return Budget(cap, float(learning_rate), True, "; ".join(sources))


def recovery_stop(
    reference: float | None, *, first_epoch: int, cap: int, val_samples: int = 0
) -> Any:
    """A callback ending an automatic fine-tuning early; it records why it stopped.

    From epoch ``first_epoch`` (0-based; the first one whose weights count), training stops
    once the validation accuracy is within :data:`RECOVER_WITHIN` of ``reference`` (the
    input model's; within one sample on a validation set of under 200), or when it has not improved for a quarter of ``cap`` epochs. After
    ``fit``, ``callback.outcome()`` gives ``{"epochs", "stopped", "reference_val_accuracy"}``.
    """
    from edgesmith.zoo.tfkeras import keras

    patience = max(3, cap // 4)
    # One sample of a small validation set is more than half a point, and noise.
    within = max(RECOVER_WITHIN, 1.0 / val_samples if val_samples else 0.0) + 1e-9

    class RecoveryStop(keras().callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_epoch, self.epochs, self.stopped = -1.0, -1, 0, "cap"

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epochs = epoch + 1
            score = (logs or {}).get("val_accuracy")
            if score is None or epoch < first_epoch:
                return
            score = float(score)
            if score > self.best:
                self.best, self.best_epoch = score, epoch
            if reference is not None and score >= reference - within:
                self.stopped, self.model.stop_training = "recovered", True
            elif epoch - self.best_epoch >= patience:
                self.stopped, self.model.stop_training = "plateau", True

        def outcome(self) -> dict[str, Any]:
            return {
                "epochs": self.epochs,
                "stopped": self.stopped,
                "reference_val_accuracy": reference,
            }

    return RecoveryStop()
