"""Distillation into the step's input model from the recipe's original one: the options are
validated and round-trip, the input keeps its architecture and learns from the original, and
a pruning recipe chains into it end to end."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edgesmith.compress import distill
from edgesmith.compress.distill import DistillConfig
from edgesmith.compress.recipe import parse_recipe
from edgesmith.compress.step import StepContext
from edgesmith.core.errors import ConfigError
from tests.compress.conftest import FAMILIES

CHAIN = "prune:structure=channels,sparsity=0.5+distill:student=input,teacher=original"


def test_the_options_round_trip_through_text_and_json():
    config = DistillConfig.from_dict({"student": "input", "teacher": "original", "alpha": "0.5"})
    assert config.input_student and config.teacher == "original" and config.alpha == 0.5
    assert DistillConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.to_text() == "distill:student=input,alpha=0.5,teacher=original"
    recipe = parse_recipe(CHAIN)
    assert parse_recipe(recipe.to_text()) == recipe
    assert recipe.steps[1] == DistillConfig(student="input", teacher="original")
    # the existing behaviour stays the default: the incoming model teaches a new student
    assert DistillConfig().teacher == "input" and not DistillConfig().input_student
    assert DistillConfig(teacher="original").to_text() == "distill:teacher=original"


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"teacher": "unpruned"}, "teacher='unpruned'.*one of input, original"),
        ({"student": "input"}, "teach itself.*teacher=original"),
        ({"student": "input", "teacher": "input"}, "teach itself"),
        ({"student": "input", "teacher": "original", "width": "0.25"}, "width=0.25"),
        ({"student": "input", "teacher": "original", "depth": "2"}, "depth=2"),
        ({"student": "inptu"}, "student=input"),
    ],
)
def test_impossible_combinations_are_refused_with_a_fix(values, match):
    with pytest.raises(ConfigError, match=match) as info:
        DistillConfig.from_dict(values)
    assert info.value.fix or info.value.expected


def _pruned(model: Any) -> Any:
    """``model`` with half of every group's channels removed (no fine-tuning)."""
    from edgesmith.compress.channel_groups import analyse
    from edgesmith.compress.prune_channels import importance, keep_counts, rebuild, select

    graph = analyse(model)
    return rebuild(model, graph, select(importance(model, graph), keep_counts(graph, 0.5)))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_input_is_fine_tuned_in_place_of_a_student_with_the_original_as_teacher(
    family, tiny, monkeypatch
):
    from edgesmith.compress.prune_channels import layer_widths

    case = tiny[family]
    pruned = _pruned(case.model)
    before = [w.copy() for w in pruned.get_weights()]
    taught = []
    real = distill.teacher_logits

    def spy(teacher: Any, data: Any) -> Any:
        taught.append(teacher)
        return real(teacher, data)

    monkeypatch.setattr(distill, "teacher_logits", spy)
    config = DistillConfig(student="input", teacher="original", epochs=2, baseline=False)
    context = StepContext(
        original_model=case.model, original_builder=case.builder, model_name="tiny-original"
    )
    result = distill.run(pruned, case.data, config, context)
    assert taught == [case.model]  # the original teaches, not the pruned input
    student = result.model
    assert student is not pruned
    assert layer_widths(student) == layer_widths(pruned) != layer_widths(case.model)
    assert student.count_params() == pruned.count_params()
    # the input is left as it was; the student started from its weights and moved
    assert all(np.array_equal(a, b) for a, b in zip(before, pruned.get_weights(), strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights(), strict=True))
    details = result.details
    assert details["student"] == "input" and details["teacher"] == "original"
    assert details["teacher_model"] == "tiny-original"
    assert details["teacher_params"] == case.model.count_params()
    assert details["student_params"] == pruned.count_params()
    assert details["widths"] == layer_widths(pruned)
    assert "soft_loss" in result.history and len(result.history["loss"]) <= 2
    # same architecture and data: nothing for the runner to change
    assert result.architecture is None and result.data is None


def test_teacher_original_needs_the_original_model(tiny):
    case = tiny["cnn"]
    config = DistillConfig(student="input", teacher="original", epochs=1)
    with pytest.raises(ConfigError, match="no original model"):
        distill.run(case.model, case.data, config, StepContext())


def test_the_baseline_of_an_input_student_is_the_input_fine_tuned_without_teacher(tiny):
    case = tiny["cnn"]
    pruned = _pruned(case.model)
    config = DistillConfig(student="input", teacher="original", epochs=1)
    result = distill.run(pruned, case.data, config, StepContext(original_model=case.model))
    details = result.details
    assert 0.0 <= details["no_teacher_accuracy"] <= 1.0
    assert "soft_loss" not in details["no_teacher_history"]
    assert details["scratch_accuracy"] is None


@pytest.mark.parametrize("family", FAMILIES)
def test_prune_then_distill_from_the_original_runs_end_to_end(family, tiny_models, tmp_path):
    from edgesmith.compress.recipe_runner import compress_model
    from edgesmith.zoo.store import load_model_folder

    recipe = (
        "prune:structure=channels,sparsity=0.5,rounds=1,epochs=1"
        "+distill:student=input,teacher=original,epochs=1,baseline=false"
    )
    card = compress_model(tiny_models[family], recipe, out=tmp_path / "out")
    pruning, distilled = card.steps
    assert distilled["teacher"] == "original" and distilled["student"] == "input"
    assert distilled["teacher_model"] == f"tiny-{family}"
    assert distilled["teacher_params"] == card.parent["params"]
    assert distilled["student_params"] == pruning["params"] == card.params < card.parent["params"]
    assert distilled["widths"] == {n: after for n, (_, after) in pruning["widths"].items()}
    saved = load_model_folder(tmp_path / "out")
    assert saved.model.count_params() == card.params
