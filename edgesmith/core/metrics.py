"""Classification metrics on NumPy arrays, shared by the zoo and the TF-free runtime.

A model's scores come in one of two shapes:

- ``(n, k)`` with ``k > 1``: one score per class; the predicted class is the arg-max
  (softmax probabilities and logits alike).
- ``(n, 1)`` or ``(n,)``: one score per sample, a binary classifier. A probability (a
  sigmoid unit) predicts class 1 when it is ``>= 0.5``; a logit (``logits=True``) when it
  is ``>= 0``.

:func:`metric_name` says in words which accuracy a record reports for a model's
output kind (``softmax``, ``sigmoid`` or ``logits``, see ``OUTPUT_KINDS``).

Example:
    >>> accuracy(np.array([0, 1, 1]), np.array([[0.2], [0.7], [0.4]]))
    0.666...
    >>> accuracy(np.array([0, 1]), np.array([-1.5, 0.3]), logits=True)
    1.0
"""

from __future__ import annotations

import numpy as np

from edgesmith.core.errors import ConfigError

# What a classifier's last layer emits: probabilities over classes, one probability of
# class 1, or raw scores (one column: a binary logit).
OUTPUT_KINDS = ("softmax", "sigmoid", "logits")


def is_binary_scores(scores: np.ndarray) -> bool:
    """Whether ``scores`` hold one score per sample (shape ``(n,)`` or ``(..., 1)``)."""
    scores = np.asarray(scores)
    return scores.ndim <= 1 or scores.shape[-1] == 1


def predicted_classes(scores: np.ndarray, *, logits: bool = False) -> np.ndarray:
    """Class indices of ``scores``: arg-max of class scores, or a threshold of one score.

    Example:
        >>> predicted_classes(np.array([[0.1, 0.9], [0.6, 0.4]])).tolist()
        [1, 0]
        >>> predicted_classes(np.array([[0.5], [0.49]])).tolist()
        [1, 0]
    """
    scores = np.asarray(scores)
    if is_binary_scores(scores):
        threshold = 0.0 if logits else 0.5
        return (scores.reshape(-1) >= threshold).astype(np.int64)
    return np.argmax(scores, axis=-1).reshape(-1)


def accuracy(y_true: np.ndarray, scores: np.ndarray, *, logits: bool = False) -> float:
    """Accuracy of ``scores`` against integer labels (see :func:`predicted_classes`).

    Class scores (samples x classes) count the top-1 class; one score per sample is a
    binary probability (``>= 0.5`` is class 1), or a logit (``>= 0``) with ``logits=True``.

    Example:
        >>> accuracy(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
        0.5
    """
    y_true = np.asarray(y_true).reshape(-1)
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(predicted_classes(scores, logits=logits) == y_true))


def f1_score(
    y_true: np.ndarray, scores: np.ndarray, positive: int = 1, *, logits: bool = False
) -> float:
    """F1 of class ``positive`` (for example spam), 0.0 when it is never predicted nor present."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = predicted_classes(scores, logits=logits)
    tp = int(np.sum((y_pred == positive) & (y_true == positive)))
    fp = int(np.sum((y_pred == positive) & (y_true != positive)))
    fn = int(np.sum((y_pred != positive) & (y_true == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def classification_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    *,
    logits: bool = False,
) -> dict[str, float]:
    """Accuracy, plus the F1 of the positive class for a two-class task such as spam.

    Example:
        >>> classification_metrics(np.array([0, 1]), np.array([[0.2], [0.9]]), ("ham", "spam"))
        {'accuracy': 1.0, 'spam_f1': 1.0}
    """
    metrics = {"accuracy": accuracy(y_true, scores, logits=logits)}
    if len(class_names) == 2:
        metrics[f"{class_names[1]}_f1"] = f1_score(y_true, scores, positive=1, logits=logits)
    return metrics


def metric_name(kind: str, units: int | None = None) -> str:
    """What ``accuracy`` means for a model whose output is ``kind`` with ``units`` columns.

    A record stores it beside the number so that a reader knows how the class was
    decided: the arg-max of class scores, or a threshold of one score.

    Example:
        >>> metric_name("softmax", 10)
        'top-1 accuracy'
        >>> metric_name("sigmoid", 1)
        'binary accuracy (probability >= 0.5)'
        >>> metric_name("logits", 1)
        'binary accuracy (logit >= 0)'
    """
    if kind not in OUTPUT_KINDS:
        raise ConfigError(f"output kind {kind!r}", expected=f"one of {', '.join(OUTPUT_KINDS)}")
    if kind == "sigmoid":
        return "binary accuracy (probability >= 0.5)"
    if kind == "logits" and units == 1:
        return "binary accuracy (logit >= 0)"
    return "top-1 accuracy"
