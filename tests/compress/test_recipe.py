"""Recipes and step configs: parse, round-trip, validate; bad input fails with one clear line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import ClassVar

import pytest

from edgesmith.compress.cluster import ClusterConfig
from edgesmith.compress.distill import DistillConfig
from edgesmith.compress.prune import PruneConfig
from edgesmith.compress.qat import QATConfig
from edgesmith.compress.recipe import Recipe, load_recipe, parse_recipe
from edgesmith.compress.techniques import STEPS
from edgesmith.core.errors import ConfigError, DataError, UnknownNameError

RECIPES = [
    "prune:sparsity=0.8,schedule=poly+qat:epochs=2",
    "distill:student=dscnn-kws,width=0.5,temperature=4",
    "prune:structure=2:4",
    "prune:sparsity=0.8+cluster:clusters=16,init=linear",
    "prune:sparsity=0.5,exclude=^logits$|conv.+,epochs=1+cluster:exclude=a{1,2}+qat",
    "cluster:preserve_sparsity=false,learning_rate=1e-4",
    "distill:width=0.25,depth=1,alpha=0.5,baseline=no,epochs=3",
    "qat:preserve=none,calibration_samples=0",
]

CONFIGS = [
    PruneConfig(sparsity=0.8, schedule="poly", initial_sparsity=0.2, epochs=3),
    PruneConfig(structure="2:4", exclude="^logits$"),
    QATConfig(epochs=2, preserve="clusters"),
    DistillConfig(student="dscnn-kws", width=0.5, depth=2, temperature=2.0, alpha=0.3),
    ClusterConfig(clusters=8, init="density", preserve_sparsity=False),
]


@pytest.mark.parametrize("text", RECIPES)
def test_recipes_parse_and_round_trip(text):
    recipe = parse_recipe(text)
    assert [s.step for s in recipe.steps] == [c.split(":")[0] for c in _top_steps(text)]
    assert parse_recipe(recipe.to_text()) == recipe
    assert Recipe.from_dict(json.loads(recipe.to_json())) == recipe


def _top_steps(text):
    return [chunk for chunk in text.split("+") if chunk.split(":")[0] in STEPS]


def test_parsed_values_have_the_field_types():
    recipe = parse_recipe(RECIPES[4])
    prune, cluster, qat = recipe.steps
    assert prune.sparsity == 0.5 and prune.epochs == 1
    assert prune.exclude == "^logits$|conv.+"
    assert cluster.exclude == "a{1,2}"
    assert isinstance(qat, QATConfig)
    distill = parse_recipe(RECIPES[6]).steps[0]
    assert distill.baseline is False and distill.depth == 1 and distill.width == 0.25


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.step)
def test_configs_are_frozen_and_round_trip_through_json(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert data["step"] == config.step
    assert type(config).from_dict(data) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 99


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("prune:sparsity=1.5", ConfigError, "sparsity=1.5: expected a value in [0.0, 1.0)"),
        ("prune:sparsity=-0.1", ConfigError, "sparsity=-0.1"),
        ("bogus:x=1", UnknownNameError, "unknown step 'bogus'"),
        ("prune+compres", UnknownNameError, "unknown step 'compres'"),
        ("prune:sparsty=0.5", UnknownNameError, "did you mean 'sparsity'"),
        ("prune:schedule=cubic", ConfigError, "one of constant, poly"),
        ("prune:sparsity=abc", ConfigError, "sparsity='abc': expected a number"),
        ("prune:0.5", ConfigError, "key=value"),
        ("prune:epochs=0", ConfigError, "epochs=0"),
        ("prune:structure=4:2", ConfigError, "m:n with 0 < m < n"),
        ("prune:structure=2:4,sparsity=0.8", ConfigError, "fixes it at 0.5"),
        ("prune:exclude=(", ConfigError, "not a valid regular expression"),
        ("prune:sparsity=0.5,sparsity=0.6", ConfigError, "given twice"),
        ("qat+prune", ConfigError, "qat as the last step"),
        ("qat:preserve=maybe", ConfigError, "one of auto, none, sparsity, clusters"),
        ("cluster:clusters=1", ConfigError, "clusters=1"),
        ("cluster:clusters=2.5", ConfigError, "whole number"),
        ("distill:student=nope", ConfigError, "student='nope' is not a zoo model"),
        ("distill:temperature=0", ConfigError, "temperature=0"),
        ("distill:alpha=2", ConfigError, "alpha=2"),
        ("distill:baseline=maybe", ConfigError, "true/false"),
        ("", ConfigError, "empty recipe"),
    ],
)
def test_bad_recipes_fail_with_what_was_given_and_what_is_allowed(text, error, message):
    with pytest.raises(error) as info:
        parse_recipe(text)
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_recipe_files_json_and_yaml(tmp_path):
    yaml_file = tmp_path / "r.yaml"
    yaml_file.write_text(
        "steps:\n  - prune: {sparsity: 0.8, schedule: poly}\n  - qat: {epochs: 2}\n"
    )
    expected = parse_recipe("prune:sparsity=0.8,schedule=poly+qat:epochs=2")
    assert load_recipe(yaml_file) == expected
    json_file = tmp_path / "recipe.json"
    json_file.write_text(expected.to_json())  # what an output folder holds
    assert load_recipe(json_file) == expected
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"step": "cluster", "clusters": 8}, "qat:epochs=1"]))
    assert load_recipe(listed).to_text() == "cluster:clusters=8+qat"
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [prune: {sparsity: 2}]\n")
    with pytest.raises(ConfigError, match="sparsity=2"):
        load_recipe(broken)
    with pytest.raises(DataError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_parsing_a_recipe_imports_no_tensorflow():
    code = (
        "import sys; from edgesmith.compress.recipe import parse_recipe;"
        "parse_recipe('prune:sparsity=0.8+distill:student=dscnn-kws+qat');"
        "assert 'tensorflow' not in sys.modules, 'TF imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_two_four_structure_fixes_the_sparsity():
    assert PruneConfig(structure="2:4").target_sparsity == 0.5
    assert PruneConfig(structure="1:4").m_by_n == (1, 4)
    assert PruneConfig().target_sparsity == 0.5


def test_a_registered_step_is_a_recipe_step(monkeypatch):
    """A new technique is a config class and a run function plus one register() call."""
    from edgesmith.compress import techniques
    from edgesmith.compress.step import StepConfig, StepResult

    @dataclasses.dataclass(frozen=True)
    class NoopConfig(StepConfig):
        step: ClassVar[str] = "noop"
        epochs: int = 0

    def run(model, data, config, context=None):
        return StepResult(model, details={"did": "nothing"})

    assert techniques.step_names() == ("prune", "qat", "distill", "cluster")
    monkeypatch.setitem(techniques.STEPS, "noop", techniques.Step(NoopConfig, run))
    recipe = parse_recipe("prune:epochs=1+noop:epochs=2")
    assert recipe.steps[1] == NoopConfig(epochs=2)
    assert techniques.get_step("noop").run("m", None, recipe.steps[1]).model == "m"
    with pytest.raises(UnknownNameError, match="did you mean 'noop'"):
        techniques.get_step("nop")
