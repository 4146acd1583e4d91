"""The parity check: what counts as the same prediction after conversion."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.parity import compare

TOLERANCE = ConversionConfig(quant="int8").tolerance


def _near_uniform(samples: int = 20, classes: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = 1.0 / classes + rng.normal(scale=1e-4, size=(samples, classes))
    return (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)


def test_flips_within_the_conversions_own_rounding_are_ties():
    """A collapsed model's near-uniform scores swap places on any rounding."""
    reference = _near_uniform()
    converted = reference + np.random.default_rng(1).normal(scale=1e-3, size=reference.shape)
    parity = compare(reference, converted, TOLERANCE)
    assert parity["top1_exact"] < 0.5  # most samples changed class...
    assert parity["ties"] == round((1 - parity["top1_exact"]) * 20)  # ...all within rounding
    assert parity["top1_agreement"] == 1.0 and parity["ok"]


def test_a_confident_class_that_changes_is_a_disagreement():
    reference = np.tile(np.array([[0.9, 0.05, 0.05]], dtype=np.float32), (10, 1))
    converted = np.tile(np.array([[0.05, 0.9, 0.05]], dtype=np.float32), (10, 1))
    parity = compare(reference, converted, TOLERANCE)
    assert parity["ties"] == 0 and parity["top1_agreement"] == 0.0 and not parity["ok"]


def test_large_errors_excuse_no_flip():
    """A sample whose own error is beyond the tolerance cannot tie, however close its scores."""
    reference = _near_uniform()
    converted = reference.copy()
    converted[:, 0] += 0.2  # every sample now says class 0, by a large error
    parity = compare(reference, converted, TOLERANCE)
    assert parity["ties"] == 0
    assert parity["top1_agreement"] == pytest.approx(np.mean(reference.argmax(1) == 0))


@pytest.mark.parametrize("logits", [False, True])
def test_a_binary_score_on_its_threshold_ties(logits):
    threshold = 0.0 if logits else 0.5
    reference = np.full((8, 1), threshold + 1e-4, dtype=np.float32)
    converted = reference - 2e-4
    parity = compare(reference, converted, TOLERANCE, logits=logits)
    assert parity["top1_exact"] == 0.0 and parity["top1_agreement"] == 1.0
