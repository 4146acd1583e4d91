"""Classification metrics on NumPy arrays, shared by the zoo and the TF-free runtime."""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Top-1 accuracy of class ``scores`` (samples x classes) against integer labels.

    Example:
        >>> accuracy(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
        0.5
    """
    y_true = np.asarray(y_true).reshape(-1)
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(np.argmax(scores, axis=-1).reshape(-1) == y_true))


def f1_score(y_true: np.ndarray, scores: np.ndarray, positive: int = 1) -> float:
    """F1 of class ``positive`` (for example spam), 0.0 when it is never predicted nor present."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.argmax(scores, axis=-1).reshape(-1)
    tp = int(np.sum((y_pred == positive) & (y_true == positive)))
    fp = int(np.sum((y_pred == positive) & (y_true != positive)))
    fn = int(np.sum((y_pred != positive) & (y_true == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def classification_metrics(
    y_true: np.ndarray, scores: np.ndarray, class_names: list[str] | tuple[str, ...]
) -> dict[str, float]:
    """Accuracy, plus the F1 of the positive class for a two-class task such as spam."""
    metrics = {"accuracy": accuracy(y_true, scores)}
    if len(class_names) == 2:
        metrics[f"{class_names[1]}_f1"] = f1_score(y_true, scores, positive=1)
    return metrics
