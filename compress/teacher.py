"""A teacher's softened outputs and the distillation loss, shared by every step that distils.

The loss is ``alpha * CE(labels, student) + (1 - alpha) * T**2 * KL(softmax(t/T) || softmax(s/T))``
on the pre-activation outputs of both models (Hinton et al., 2015), found in any
single-output classifier by :func:`teacher_head` (the zoo's ``logits`` Dense + Softmax, a
last layer with ``activation="softmax"``, a Softmax layer, a model that outputs logits).
A binary model (one sigmoid unit or logit) distils in binary form: ``alpha *
BCE(labels, student) + (1 - alpha) * T**2 * KL(sigmoid(zt/T) || sigmoid(zs/T))``. The
teacher is frozen, so :func:`teacher_logits` computes its logits once for the training
and validation sets; :func:`train_with_teacher` trains any student on them through the
zoo's one training loop. The ``distill`` step (:mod:`~edgesmith.compress.distill`) and
channel pruning's fine-tuning (:mod:`~edgesmith.compress.prune_channels`) both use it.

Example:
    >>> from edgesmith.zoo.tfkeras import keras
    >>> k = keras()
    >>> inputs = k.Input((4,))
    >>> model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(inputs))
    >>> teacher_head(model).how
    'linear twin'
    >>> # history = train_with_teacher(student, teacher_logits(teacher, data), data, epochs=5, ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError
from edgesmith.zoo.datasets import DatasetSplits


@dataclass(frozen=True)
class TeacherLogits:
    """A frozen teacher's logits on the training and validation sets, computed once.

    Attributes:
        head: how the teacher's logits were read (:class:`Head`).
        model: the teacher itself (named in errors, checked against the student's classes).
        train, val: the logits, one row per sample of the split.
    """

    head: Head
    model: Any
    train: np.ndarray
    val: np.ndarray


def teacher_logits(teacher: Any, data: DatasetSplits) -> TeacherLogits:
    """``teacher``'s logits on ``data``'s training and validation splits (in its layout)."""
    head = teacher_head(teacher)
    train = np.asarray(head.model.predict(data.x_train, batch_size=256, verbose=0))
    val = np.asarray(head.model.predict(data.x_val, batch_size=256, verbose=0))
    return TeacherLogits(head, teacher, train, val)


def train_with_teacher(
    student: Any,
    logits: TeacherLogits,
    data: DatasetSplits,
    *,
    temperature: float,
    alpha: float,
    **loop: Any,
) -> dict[str, list[float]]:
    """Train ``student`` in place on ``data``'s labels and the teacher's softened ``logits``.

    ``loop`` goes to :func:`~edgesmith.zoo.train.train_loop` (epochs, learning_rate,
    batch_size, callbacks, ...). The history's ``accuracy``/``val_accuracy`` are the
    student's label accuracy, ``soft_loss`` the teacher term alone. ``data`` is in the
    student's layout; its samples are the teacher's, in the same order.
    """
    from edgesmith.zoo.train import train_loop

    head = teacher_head(student)
    binary = _match_heads(logits.head, head, logits.model, student)
    soft_train, soft_val = logits.train, logits.val
    if logits.head.binary and not binary:  # a two-class student of a one-unit teacher
        soft_train, soft_val = _two_class(soft_train), _two_class(soft_val)
    history = train_loop(
        head.model,
        data,
        loss=distillation_loss(temperature, alpha, binary=binary),
        metrics=[_label_accuracy(binary), _soft_loss(temperature, binary)],
        y_train=_pack(data.y_train, soft_train),
        y_val=_pack(data.y_val, soft_val),
        **loop,
    )
    head.sync()  # the trained linear twin's weights go back into the student's last layer
    return history


def distillation_loss(temperature: float, alpha: float, *, binary: bool = False) -> Any:
    """Keras loss on ``y_true = [label, teacher logits...]`` and the student's logits.

    With ``binary`` (one logit per sample, the models end in one sigmoid unit) the soft
    term compares ``sigmoid(z / T)`` of teacher and student: their binary cross-entropy
    less the teacher's own entropy (a constant: the same gradients, and zero when the
    student matches the teacher, as the KL divergence of the categorical form).
    """
    from edgesmith.zoo.tfkeras import tf

    t = tf()

    def loss(y_true: Any, student_logits: Any) -> Any:
        teacher = y_true[:, 1:]
        if binary:
            labels = y_true[:, :1]
            hard = t.reduce_mean(
                t.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=student_logits),
                axis=-1,
            )
            soft = _binary_kl(t, teacher, student_logits, temperature)
        else:
            labels = t.cast(y_true[:, 0], t.int32)
            hard = t.keras.losses.sparse_categorical_crossentropy(
                labels, student_logits, from_logits=True
            )
            soft = _kl(t, teacher, student_logits, temperature)
        return alpha * hard + (1.0 - alpha) * temperature**2 * soft

    return loss


def _kl(t: Any, teacher_logits: Any, student_logits: Any, temperature: float) -> Any:
    p = t.nn.softmax(teacher_logits / temperature, axis=-1)
    log_p = t.nn.log_softmax(teacher_logits / temperature, axis=-1)
    log_q = t.nn.log_softmax(student_logits / temperature, axis=-1)
    return t.reduce_sum(p * (log_p - log_q), axis=-1)


def _binary_kl(t: Any, teacher_logits: Any, student_logits: Any, temperature: float) -> Any:
    """KL(Bernoulli(sigmoid(zt/T)) || Bernoulli(sigmoid(zs/T))), from the logits (stable)."""
    zt, zs = teacher_logits / temperature, student_logits / temperature
    p = t.sigmoid(zt)
    cross = t.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=zs)
    entropy = t.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=zt)
    return t.reduce_mean(cross - entropy, axis=-1)


def _label_accuracy(binary: bool = False) -> Any:
    from edgesmith.zoo.tfkeras import tf

    t = tf()

    def accuracy(y_true: Any, student_logits: Any) -> Any:
        if binary:  # a logit >= 0 is class 1
            guess = t.cast(student_logits[:, 0] >= 0.0, t.float32)
            return t.cast(t.equal(guess, y_true[:, 0]), t.float32)
        labels = t.cast(y_true[:, 0], t.int64)
        return t.cast(t.equal(t.argmax(student_logits, axis=-1), labels), t.float32)

    return accuracy


def _soft_loss(temperature: float, binary: bool = False) -> Any:
    """The teacher term alone (KL at the temperature), logged as ``soft_loss``."""
    from edgesmith.zoo.tfkeras import tf

    t = tf()

    def soft_loss(y_true: Any, student_logits: Any) -> Any:
        if binary:
            return _binary_kl(t, y_true[:, 1:], student_logits, temperature)
        return _kl(t, y_true[:, 1:], student_logits, temperature)

    return soft_loss


def _pack(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    return np.concatenate([labels.reshape(-1, 1).astype(np.float32), logits], axis=1)


def _two_class(logits: np.ndarray) -> np.ndarray:
    """One binary logit z as the two class logits [0, z] (the same probabilities)."""
    return np.concatenate([np.zeros_like(logits), logits], axis=1)


def logits_model(model: Any) -> Any:
    """A model from ``model``'s input to its pre-activation output (shared weights).

    See :func:`teacher_head` for the models it reads.

    Example:
        >>> from edgesmith.zoo.tfkeras import keras
        >>> k = keras()
        >>> inputs = k.Input((4,))
        >>> model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(inputs))
        >>> logits_model(model).layers[-1].get_config()["activation"]
        'linear'
    """
    return teacher_head(model).model


@dataclass
class Head:
    """A classifier's pre-activation output, as a model that distillation trains through.

    Attributes:
        model: from the classifier's input to its logits (or its one binary logit).
        binary: one output unit (a sigmoid probability or a logit), not class scores.
        how: ``output`` (the model outputs logits), ``layer input`` (read before a
            Softmax/Activation layer), ``linear twin`` (a copy of the last layer without its
            activation) or ``log-probabilities`` (computed from the outputs, clipped).
        twin: (the classifier's last layer, its linear twin) for ``linear twin``.
    """

    model: Any
    binary: bool
    how: str
    twin: tuple[Any, Any] | None = None

    def sync(self) -> None:
        """Copy the twin's (trained) weights back into the classifier's last layer."""
        if self.twin is not None:
            layer, twin = self.twin
            layer.set_weights(twin.get_weights())


def teacher_head(model: Any) -> Head:
    """The logits of any single-output tf-keras classifier.

    Reads, in order: a model that outputs logits (:func:`~edgesmith.zoo.train.output_kind`
    ``logits``) as it is; the input of a final ``Softmax`` or ``Activation("softmax"/
    "sigmoid")`` layer (the zoo's ``logits`` Dense + Softmax among them); a final layer
    with ``activation="softmax"`` or ``"sigmoid"`` through a linear twin sharing its
    weights (copied; :meth:`Head.sync` copies them back after training); else (a layer
    inside a quantization wrapper) the log of the clipped probabilities, which give the
    same softened distribution. Pass-through layers after the activation (Dropout,
    Flatten, Reshape) are applied to the logits too. One output unit is a binary logit.

    Example:
        >>> from edgesmith.zoo.tfkeras import keras
        >>> k = keras()
        >>> inputs = k.Input((4,))
        >>> model = k.Model(inputs, k.layers.Dense(1, activation="sigmoid")(inputs))
        >>> head = teacher_head(model)
        >>> head.binary, head.how, head.model.output_shape
        (True, 'linear twin', (None, 1))
    """
    from edgesmith.zoo.train import output_kind

    if len(getattr(model, "outputs", None) or []) != 1:
        raise ConfigError(
            f"model {model.name!r} has {len(model.outputs or [])} outputs",
            expected="a classifier with one output (class scores, or one sigmoid unit or logit)",
            fix="distill a model of one output",
        )
    units = int(model.output_shape[-1])
    kind = output_kind(model)
    if kind == "logits":
        _refuse_multilabel(model, units)
        return Head(model, units == 1, "output")
    found = _activation_head(model)
    if found is not None:
        return Head(found[0], units == 1, found[1], found[2])
    for name in ("logits", "quant_logits"):  # the zoo's (quantized) logits layer
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        return Head(_model_of(model, layer.output), units == 1, "layer input")
    return Head(_log_probabilities(model, kind), units == 1, "log-probabilities")


def _refuse_multilabel(model: Any, units: int) -> None:
    layer = _last_layer(model)
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    if units > 1 and activation == "sigmoid":
        raise ConfigError(
            f"model {model.name!r} ends in {units} sigmoid units (multi-label)",
            expected="a classifier of one class per sample: softmax class scores, logits, "
            "or one sigmoid unit",
            fix="distill a single-label classifier",
        )


_PASS_THROUGH = frozenset(
    {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "Flatten", "Reshape"}
)


def _activation_head(model: Any) -> tuple[Any, str, tuple[Any, Any] | None] | None:
    """(logits model, how, twin) from the layer that applies the final activation.

    Follows the model's own nodes from its output tensor back (not ``layer.input``: a
    layer called again elsewhere, by an earlier head among others, has several inputs).
    """
    trail: list[Any] = []  # pass-through layers after the activation, last first
    tensor = model.outputs[0]
    for _ in range(100):
        layer, inputs = _producer(tensor)
        if layer is None or len(inputs) != 1:
            return None
        inner = layer
        while hasattr(inner, "layer") and not isinstance(inner.layer, str):
            inner = inner.layer  # tfmot wrappers
        name = type(inner).__name__
        activation = getattr(getattr(inner, "activation", None), "__name__", "")
        if name == "Softmax" or (name == "Activation" and activation in ("softmax", "sigmoid")):
            return _model_of(model, inputs[0], trail), "layer input", None
        if activation in ("softmax", "sigmoid"):
            if inner is not layer:
                return None  # a wrapper's activation is not the layer's config: no exact twin
            config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_linear"}
            twin = type(layer).from_config(config)
            logits = twin(inputs[0])
            twin.set_weights(layer.get_weights())
            return _model_of(model, logits, trail), "linear twin", (layer, twin)
        if name in _PASS_THROUGH or (name == "Activation" and activation == "linear"):
            trail.append(layer)
            tensor = inputs[0]
            continue
        return None
    return None


def _producer(tensor: Any) -> tuple[Any, list[Any]]:
    """The layer that made ``tensor`` and the tensors it was called on (that node's)."""
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "layer", None)
    if layer is None:
        return None, []
    node = layer.inbound_nodes[history.node_index]
    return layer, list(node.keras_inputs)


def _last_layer(model: Any) -> Any:
    return _producer(model.outputs[0])[0] or model.layers[-1]


def _model_of(model: Any, logits: Any, trail: list[Any] | None = None) -> Any:
    """A model from ``model``'s inputs to ``logits`` passed through ``trail`` (last first)."""
    from edgesmith.zoo.tfkeras import keras

    for layer in reversed(trail or []):
        logits = layer(logits)
    return keras().Model(model.inputs, logits, name=f"{model.name}_logits")


def _log_probabilities(model: Any, kind: str) -> Any:
    """Logits recovered from probabilities: log p (softmax) or log(p / (1 - p)) (sigmoid).

    Softmax is unchanged by a constant added to every logit, so log p gives exactly the
    teacher's softened distribution; clipping only matters for probabilities below 1e-7.
    """
    from edgesmith.zoo.tfkeras import keras, tf

    t = tf()

    def recover(p: Any) -> Any:
        p = t.clip_by_value(p, 1e-7, 1.0 - 1e-7)
        return t.math.log(p / (1.0 - p)) if kind == "sigmoid" else t.math.log(p)

    logits = keras().layers.Lambda(recover, name="recovered_logits")(model.outputs[0])
    return keras().Model(model.inputs, logits, name=f"{model.name}_logits")


def _match_heads(teacher: Head, student: Head, teacher_model: Any, student_model: Any) -> bool:
    """Whether the pair distils in binary form; refuse a student of other classes."""
    t_units = int(teacher.model.output_shape[-1])
    s_units = int(student.model.output_shape[-1])
    if teacher.binary and student.binary:
        return True
    if teacher.binary and s_units == 2:
        return False  # the teacher's logit z becomes the class logits [0, z]
    if t_units != s_units or student.binary:
        raise ConfigError(
            f"distill: the teacher {teacher_model.name!r} has {t_units} output units, the "
            f"student {student_model.name!r} {s_units}",
            expected="a student of the same classes as its teacher",
            fix="pick a student trained for the teacher's data",
        )
    return False
