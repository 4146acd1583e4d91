"""Train zoo models deterministically and keep them in the model store.

:func:`train_loop` is the one training loop of the TensorFlow side (seeded, cosine decay,
keep-best, progress events): zoo training and every compression step use it. Nothing
here prints; pass ``progress`` to see the epochs.

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
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError
from edgesmith.core.metrics import classification_metrics
from edgesmith.core.progress import Progress, ProgressEvent
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
    progress: Progress | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` on ``data.train`` with a zoo budget; keep the best validation epoch.

    Returns the per-epoch history (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``).
    """
    return train_loop(
        model,
        data,
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        augment=config.augment,
        seed=seed,
        loss=loss,
        task=description,
        progress=progress,
    )


def train_loop(
    model: Any,
    data: DatasetSplits,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int = 0,
    task: str = "training",
    progress: Progress | None = None,
    loss: Any = None,
    metrics: Sequence[Any] = ("accuracy",),
    callbacks: Sequence[Any] = (),
    weight_decay: float = 0.0,
    augment: str | None = None,
    decay_floor: float = 0.0,
    clipnorm: float | None = None,
    keep_best_from: int | None = 0,
    x_train: np.ndarray | None = None,
    y_train: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    interim: bool = False,
) -> dict[str, list[float]]:
    """The one training loop: Adam (AdamW with ``weight_decay``) on a cosine decay, seeded.

    Zoo training and every compression step train through it. The learning rate decays
    from ``learning_rate`` to ``decay_floor`` times it over ``epochs``; ``clipnorm`` caps
    each gradient's norm; ``augment="shift"`` translates images by up to 2 pixels.
    ``x_*``/``y_*`` replace the data set's arrays (distillation packs teacher logits into
    the targets). With ``keep_best_from=E`` the weights of the epoch with the best
    validation accuracy among epochs ``E..`` (0-based) are restored at the end and the
    history gets ``kept_epoch``; ``None`` keeps the last epoch's. With ``epochs=0`` nothing
    is trained and the history is empty.

    ``progress`` receives one :class:`~edgesmith.core.progress.ProgressEvent` named
    ``task`` when training starts and one after each epoch (``done``/``total`` epochs, the
    epoch's logs as ``fields``). Returns the per-epoch history.
    """
    if epochs < 1:
        return {}
    if augment not in (None, "shift"):
        raise ConfigError(f"augment={augment!r}", expected="None or 'shift'")
    from edgesmith.zoo.tfkeras import keras, set_seed, tf

    k, t = keras(), tf()
    set_seed(seed)
    x_train = data.x_train if x_train is None else x_train
    y_train = data.y_train if y_train is None else y_train
    x_val = data.x_val if x_val is None else x_val
    y_val = data.y_val if y_val is None else y_val
    steps = int(np.ceil(len(y_train) / batch_size))
    schedule = k.optimizers.schedules.CosineDecay(learning_rate, steps * epochs, alpha=decay_floor)
    if weight_decay:
        optimizer = k.optimizers.AdamW(schedule, weight_decay=weight_decay, clipnorm=clipnorm)
    else:
        optimizer = k.optimizers.Adam(schedule, clipnorm=clipnorm)
    if loss is None:
        loss, metrics = _default_objective(k, model, metrics)
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics))
    _create_training_variables(model, x_train[:2], y_train[:2])
    train = t.data.Dataset.from_tensor_slices((x_train, y_train))
    train = train.shuffle(len(y_train), seed=seed, reshuffle_each_iteration=True)
    if augment == "shift":
        train = train.map(_random_shift(t, seed), num_parallel_calls=1, deterministic=True)
    train = train.batch(batch_size).prefetch(2)
    extra = [_progress_callback(k, progress, task, epochs, interim)] if progress else []
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


def _create_training_variables(model: Any, x: np.ndarray, y: np.ndarray) -> None:
    """Create the optimizer's slots and the loss and metric trackers before ``fit``.

    Created inside the first traced training step instead, they make TensorFlow trace
    that step twice; for an unrolled recurrent or a quantization-aware model the tracing
    is most of a short fine-tuning (measured: a QAT epoch of a small Bidirectional GRU
    took 2.6x longer). Only a speed-up: where Keras' internals differ, ``fit`` creates
    them as before.
    """
    from edgesmith.zoo.tfkeras import tf

    try:
        model.optimizer.build(model.trainable_variables)
        y_pred = model(x, training=False)
        model.compiled_loss.build(y_pred)
        model.compiled_metrics.build(y_pred, tf().constant(y))
    except (AttributeError, TypeError, ValueError):
        pass


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs for ``x`` in inference mode, as NumPy."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def evaluate_model(model: Any, data: DatasetSplits, split: str = "test") -> dict[str, Any]:
    """Accuracy (and spam F1 for two-class tasks) of ``model`` on one split of ``data``.

    The class of a sample follows the model's output (:func:`output_kind`): the arg-max of
    class scores, a sigmoid probability ``>= 0.5`` or a single logit ``>= 0``.
    """
    x, y = data.split(split)
    logits = output_kind(model) == "logits"
    metrics = classification_metrics(y, predict(model, x), data.class_names, logits=logits)
    return {**metrics, "samples": len(y), "split": split}


# Layers that pass their input through unchanged at inference: looked through when
# finding what a model's output is.
_PASS_THROUGH = {"Dropout", "Flatten", "Reshape", "InputLayer", "SpatialDropout1D", "GaussianNoise"}


def output_kind(model: Any) -> str:
    """``softmax``, ``sigmoid`` (one sigmoid unit) or ``logits`` (anything else) for a model.

    Reads the layer that produces the model's (first) output, through tfmot wrappers
    (``layer.layer``), nested models and pass-through layers such as Dropout. With one
    output unit, ``logits`` is a binary logit.

    Example:
        >>> from edgesmith.zoo.tfkeras import keras
        >>> k = keras()
        >>> output_kind(k.Sequential([k.Input((4,)), k.layers.Dense(1, activation="sigmoid")]))
        'sigmoid'
    """
    layer = _output_layer(model)
    for _ in range(100):  # a chain of wrappers and pass-through layers ends; be safe anyway
        if layer is None:
            return "logits"
        while hasattr(layer, "layer") and not isinstance(layer.layer, str):
            layer = layer.layer  # tfmot's prune / cluster / quantize wrappers
        name = type(layer).__name__
        if hasattr(layer, "layers") and hasattr(layer, "outputs"):  # a nested model
            layer = _output_layer(layer)
            continue
        if name == "Softmax":
            return "softmax"
        activation = _activation_name(getattr(layer, "activation", None))
        if activation == "softmax":
            return "softmax"
        if activation == "sigmoid":
            return "sigmoid" if _units(model) == 1 else "logits"
        if name in _PASS_THROUGH or (name == "Activation" and activation == "linear"):
            layer = _input_layer(layer)
            continue
        return "logits"
    return "logits"


def _activation_name(activation: Any) -> str | None:
    """The name of a Keras activation, looking through tfmot's quantize-aware wrapper."""
    for _ in range(10):
        if activation is None or not hasattr(activation, "activation"):
            break
        activation = activation.activation  # QuantizeAwareActivation keeps the original
    if activation is None:
        return None
    return getattr(activation, "__name__", type(activation).__name__).lower()


def _output_layer(model: Any) -> Any:
    outputs = getattr(model, "outputs", None) or []
    history = getattr(outputs[0], "_keras_history", None) if outputs else None
    if history is not None:
        return _history_layer(history)
    return model.layers[-1] if getattr(model, "layers", None) else None


def _input_layer(layer: Any) -> Any:
    """The layer feeding ``layer`` (its first input), or None for a model input."""
    try:
        history = getattr(layer.input, "_keras_history", None)
    except (AttributeError, ValueError):  # a layer with several or no inbound nodes
        return None
    source = None if history is None else _history_layer(history)
    return None if source is layer else source


def _history_layer(history: Any) -> Any:
    """The layer of a tensor's Keras history (``operation`` in Keras 3, ``layer`` in Keras 2)."""
    return getattr(history, "layer", None) or getattr(history, "operation", None)


def _units(model: Any) -> int | None:
    shape = model.output_shape
    shape = shape[0] if isinstance(shape, list) else shape
    return shape[-1] if shape else None


def _default_objective(k: Any, model: Any, metrics: Sequence[Any]) -> tuple[Any, Sequence[Any]]:
    """The loss that fits ``model``'s output, and ``metrics`` with "accuracy" made explicit.

    Softmax keeps exactly what the zoo always compiled with (a sparse cross-entropy and
    Keras' "accuracy"). One sigmoid unit or one logit trains with a binary cross-entropy;
    Keras would read "accuracy" on a logit with a 0.5 threshold, so the binary accuracy is
    given with the right threshold (and keeps the name "accuracy" that keep-best reads).
    """
    kind = output_kind(model)
    if kind == "softmax":
        return k.losses.SparseCategoricalCrossentropy(), metrics
    if kind == "logits" and _units(model) != 1:
        return k.losses.SparseCategoricalCrossentropy(from_logits=True), metrics
    from_logits = kind == "logits"
    threshold = 0.0 if from_logits else 0.5
    binary = [
        k.metrics.BinaryAccuracy(name="accuracy", threshold=threshold) if m == "accuracy" else m
        for m in metrics
    ]
    return k.losses.BinaryCrossentropy(from_logits=from_logits), binary


def train_zoo_model(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    store: ModelStore | str | os.PathLike[str] | None = None,
    retrain: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> ModelCard:
    """Train zoo model ``name`` (or reuse the stored copy) and return its card.

    The same ``seed`` and data give the same weights. ``progress`` receives an event per
    epoch (see :func:`train_loop`); without it nothing is shown.
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
    fit(model, data, config, seed=seed, description=name, progress=progress)
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


def _progress_callback(
    k: Any, progress: Progress, task: str, epochs: int, interim: bool = False
) -> Any:
    """A Keras callback reporting the start and each finished epoch to ``progress``.

    ``interim``: a training whose model the caller changes again afterwards (a round of
    channel pruning before the last), said in the start event's fields.
    """
    start_fields = {"interim": True} if interim else {}

    class EpochProgress(k.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            progress(ProgressEvent(task, "started", done=0, total=epochs, fields=start_fields))

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            fields = {key: float(value) for key, value in (logs or {}).items()}
            progress(ProgressEvent(task, "epoch", done=epoch + 1, total=epochs, fields=fields))

    return EpochProgress()


def _keep_best(k: Any, first_epoch: int) -> Any:
    """Remembers the weights of the best validation-accuracy epoch from ``first_epoch`` on.

    Of epochs with equal accuracy, the one with the lower validation loss is kept. A small
    validation set saturates: transformer-kws's 300 samples stood at 99.67% from epoch 13 of
    a 2:4 fine-tuning on, and keeping the first such epoch (epoch 7, at a learning rate near
    its start) gave 98.33% on test.
    """

    class KeepBest(k.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best = (-1.0, -float("inf"))
            self.epoch = -1
            self.weights: list[np.ndarray] | None = None

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            loss = float(logs.get("val_loss", float("inf")))
            score = (float(logs.get("val_accuracy", -1.0)), -loss if np.isfinite(loss) else -1e30)
            if epoch >= first_epoch and score > self.best:
                self.best, self.epoch, self.weights = score, epoch, self.model.get_weights()

    return KeepBest()
