"""Distillation: the loss goes down, students of the same or another family, a measured baseline."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.compress import distill
from edgesmith.compress.step import StepContext
from edgesmith.core.errors import ConfigError
from tests.compress.conftest import FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_distillation_loss_goes_down_for_a_half_width_student(family, tiny):
    case = tiny[family]
    config = distill.DistillConfig(width=0.5, epochs=3, baseline=False)
    result = distill.run(case.model, case.data, config, StepContext(builder=case.builder))
    loss, soft = result.history["loss"], result.history["soft_loss"]
    assert loss[-1] < loss[0] and soft[-1] < soft[0]
    student = result.model
    assert student.count_params() < case.model.count_params()
    assert result.details["scratch_accuracy"] is None
    assert result.details["student_params"] == student.count_params()
    # Recurrent students train with a capped gradient norm (unstable without it).
    assert result.details["budget"]["clipnorm"] == (1.0 if family == "lstm" else None)
    # Same architecture as the teacher: its family is the teacher's (None: unchanged).
    assert result.architecture.builder["arch"] == case.builder["arch"]
    assert result.architecture.family is None and result.clustered == ()


def test_a_student_of_another_family_reads_the_data_in_its_own_layout(tiny):
    """A Transformer over frames teaches a CNN that reads the same frames as an image."""
    case = tiny["transformer"]
    config = distill.DistillConfig(student="cnn-digits", width=1.0, epochs=2)
    result = distill.run(case.model, case.data, config)
    details = result.details
    assert details["layout"] == "image" and details["student"] == "cnn-digits"
    assert result.architecture.layout == "image" and result.architecture.family == "cnn"
    assert result.model.input_shape[1:] == (8, 8, 1)
    assert result.data.x_test.shape[1:] == (8, 8, 1)  # the data as the student reads it
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert 0.0 <= details["scratch_accuracy"] <= 1.0  # the same student trained from scratch
    assert details["teacher_accuracy"] > 0.5


def test_the_loss_mixes_hard_labels_and_softened_teacher_logits():
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    teacher = np.array([[4.0, 0.0, 0.0]], dtype=np.float32)
    y = np.concatenate([[[0.0]], teacher], axis=1).astype(np.float32)
    same, other = t.constant(teacher), t.constant([[0.0, 4.0, 0.0]])
    soft_only = distill.distillation_loss(temperature=2.0, alpha=0.0)
    assert float(soft_only(y, same)[0]) == pytest.approx(0.0, abs=1e-6)  # student == teacher
    assert float(soft_only(y, other)[0]) > 0.1
    hard_only = distill.distillation_loss(temperature=2.0, alpha=1.0)
    expected = -np.log(np.exp(4) / (np.exp(4) + 2))
    assert float(hard_only(y, same)[0]) == pytest.approx(expected, rel=1e-5)


def test_a_token_student_for_signal_data_is_refused(tiny):
    case = tiny["lstm"]
    with pytest.raises(ConfigError, match="student=transformer-sms reads token ids"):
        distill.run(case.model, case.data, distill.DistillConfig(student="transformer-sms"))
