"""Metrics: arg-max of class scores, a threshold of one score (probability or logit)."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.core.errors import ConfigError
from edgesmith.core.metrics import (
    OUTPUT_KINDS,
    accuracy,
    classification_metrics,
    f1_score,
    metric_name,
    predicted_classes,
)


def test_class_scores_use_the_argmax_as_before():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 4))
    y = rng.integers(0, 4, 50)
    assert accuracy(y, scores) == pytest.approx(np.mean(scores.argmax(axis=1) == y))
    two = rng.random((40, 2))
    y2 = rng.integers(0, 2, 40)
    expected = classification_metrics(y2, two, ("ham", "spam"))
    assert expected["accuracy"] == pytest.approx(np.mean(two.argmax(axis=1) == y2))


@pytest.mark.parametrize("shape", [(6,), (6, 1)])
def test_one_score_per_sample_is_a_probability_thresholded_at_half(shape):
    scores = np.array([0.1, 0.5, 0.49, 0.9, 0.51, 0.0]).reshape(shape)
    assert predicted_classes(scores).tolist() == [0, 1, 0, 1, 1, 0]
    y = np.array([0, 1, 1, 1, 0, 0])
    assert accuracy(y, scores) == pytest.approx(4 / 6)


def test_one_logit_per_sample_is_thresholded_at_zero():
    logits = np.array([[-2.0], [0.0], [0.3], [-0.1]])
    assert predicted_classes(logits, logits=True).tolist() == [0, 1, 1, 0]
    # The same numbers read as probabilities give another answer.
    assert predicted_classes(logits).tolist() == [0, 0, 0, 0]
    y = np.array([0, 1, 1, 0])
    assert accuracy(y, logits, logits=True) == 1.0
    assert accuracy(y, logits) == 0.5


def test_logits_flag_leaves_class_scores_alone():
    scores = np.array([[-3.0, -1.0], [2.0, -5.0]])
    assert predicted_classes(scores, logits=True).tolist() == [1, 0]


def test_binary_f1_and_metrics_follow_the_threshold():
    y = np.array([1, 1, 0, 0, 1])
    scores = np.array([[0.9], [0.2], [0.7], [0.1], [0.6]])  # tp 2, fn 1, fp 1
    assert f1_score(y, scores) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    metrics = classification_metrics(y, scores, ("ok", "defect"))
    assert metrics == {"accuracy": pytest.approx(3 / 5), "defect_f1": pytest.approx(2 / 3)}
    logit_metrics = classification_metrics(y, scores - 0.5, ("ok", "defect"), logits=True)
    assert logit_metrics == metrics


def test_empty_labels_give_nan():
    assert np.isnan(accuracy(np.array([]), np.zeros((0, 1))))


def test_metric_name_says_how_the_class_is_decided():
    names = {metric_name(k, u) for k in OUTPUT_KINDS for u in (1, 5) if (k, u) != ("sigmoid", 5)}
    assert len(names) == 3
    assert metric_name("softmax", 10) == metric_name("logits", 10)
    assert "0.5" in metric_name("sigmoid", 1) and "logit" in metric_name("logits", 1)
    with pytest.raises(ConfigError, match="relu"):
        metric_name("relu")
