"""The stage cache (keys, atomic entries, stale sweeps) and plan validation."""

from __future__ import annotations

import pytest

from edgesmith.cache import StageCache
from edgesmith.core.errors import ConfigError, EdgesmithError, UnknownNameError
from edgesmith.plan import Plan, Target, load_plan


def test_key_changes_with_config_and_upstream_only():
    key = StageCache.key
    assert key("convert", {"quant": "int8"}) == key("convert", {"quant": "int8"})
    assert key("convert", {"quant": "int8"}) != key("convert", {"quant": "none"})
    assert key("convert", {"q": 1}, upstream=["a"]) != key("convert", {"q": 1}, upstream=["b"])
    assert key("convert", {"a": 1, "b": 2}) == key("convert", {"b": 2, "a": 1})


def test_another_edgesmith_version_does_not_reuse_outputs(monkeypatch):
    import edgesmith

    before = StageCache.key("compress", {"step": "prune"})
    monkeypatch.setattr(edgesmith, "__version__", "99.0.0")
    assert StageCache.key("compress", {"step": "prune"}) != before


def test_entry_is_built_once(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def produce(folder):
        calls.append(folder)
        (folder / "out.txt").write_text("v1")

    first = cache.build("stage", "k1", produce)
    second = cache.build("stage", "k1", produce)
    assert first == second and len(calls) == 1
    assert (first / "out.txt").read_text() == "v1"


def test_failed_build_leaves_nothing_and_retries(tmp_path):
    cache = StageCache(tmp_path)

    def broken(folder):
        (folder / "half.bin").write_bytes(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.build("stage", "k", broken)
    assert not cache.has("stage", "k")
    assert list((tmp_path / "stage").iterdir()) == []
    cache.build("stage", "k", lambda folder: (folder / "ok").write_text(""))
    assert cache.has("stage", "k")


def test_stale_temporaries_of_a_killed_run_are_swept(tmp_path):
    cache = StageCache(tmp_path)
    stale = tmp_path / "convert" / ".edgesmith-tmp-abc.dir"
    stale.mkdir(parents=True)
    (tmp_path / ".edgesmith-tmp-x.jsonl").write_text("half")
    with cache.exclusive():
        assert not stale.exists()
        assert not list(tmp_path.glob(".edgesmith-tmp*"))
        with pytest.raises(EdgesmithError, match="another edgesmith run"), cache.exclusive():
            pass


def test_plan_parses_targets_and_always_keeps_the_baseline():
    plan = Plan.from_dict(
        {
            "models": ["cnn-digits"],
            "recipes": {"prune80": "prune:sparsity=0.8"},
            "targets": ["tflite:int8", "onnx"],
            "backends": ["litert", "onnxruntime"],
            "bench": {"runs": 10},
        }
    )
    assert list(plan.recipes) == ["baseline", "prune80"]
    assert plan.targets == (Target("tflite", "int8"), Target("onnx", "none"))
    assert plan.bench.runs == 10
    assert Plan.from_dict(plan.to_dict()) == plan


def test_a_recipe_can_limit_its_targets():
    plan = Plan.from_dict(
        {
            "models": ["cnn-digits"],
            "recipes": {"qat": {"recipe": "qat:epochs=1", "targets": ["tflite:int8"]}},
            "targets": ["tflite:none", "tflite:int8"],
        }
    )
    assert plan.recipes["qat"] == "qat:epochs=1"
    assert plan.targets_for("qat") == (Target("tflite", "int8"),)
    assert plan.targets_for("baseline") == plan.targets
    assert Plan.from_dict(plan.to_dict()) == plan


def test_a_recipe_can_give_one_model_its_own_budget():
    plan = Plan.from_dict(
        {
            "models": ["cnn-digits", "lstm-digits"],
            "recipes": {
                "prune80": {
                    "recipe": "prune:sparsity=0.8,epochs=4",
                    "models": {"lstm-digits": "prune:sparsity=0.8,epochs=20"},
                }
            },
        }
    )
    assert plan.recipe_for("prune80", "cnn-digits") == "prune:sparsity=0.8,epochs=4"
    assert plan.recipe_for("prune80", "lstm-digits") == "prune:sparsity=0.8,epochs=20"
    assert plan.recipe_for("baseline", "lstm-digits") == ""
    assert Plan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (
            {"models": ["cnn-digits"], "recipes": {"p": {"recipe": "prune", "model": {}}}},
            ConfigError,
            "recipe 'p' has unknown keys",
        ),
        (
            {"models": ["cnn-digits"], "recipes": {"p": {"recipe": "", "models": {"cnn": ""}}}},
            UnknownNameError,
            "'cnn'",
        ),
        ({"models": ["cnn-digitz"]}, UnknownNameError, "did you mean 'cnn-digits'"),
        ({"models": []}, ConfigError, "no models"),
        ({"models": ["cnn-digits"], "targets": ["onnx:int16x8"]}, ConfigError, "onnx:int16x8"),
        ({"models": ["cnn-digits"], "targets": ["coreml"]}, ConfigError, "format 'coreml'"),
        ({"models": ["cnn-digits"], "bench": {"runs": 0}}, ConfigError, "runs=0"),
        ({"models": ["cnn-digits"], "modles": []}, ConfigError, "unknown plan keys"),
    ],
)
def test_bad_plans_fail_with_clear_messages(data, error, message):
    with pytest.raises(error, match=message):
        Plan.from_dict(data)


def test_plan_file_errors_name_the_file(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("models: [cnn-digits]\ntargets: [tflite:int8]\n")
    assert load_plan(path).models == ("cnn-digits",)
    path.write_text("models: [cnn-digits\n")
    with pytest.raises(ConfigError, match=r"plan\.yaml: not valid YAML"):
        load_plan(path)
    path.write_text("- just a list\n")
    with pytest.raises(ConfigError, match=r"plan\.yaml: the plan is a list"):
        load_plan(path)


@pytest.mark.parametrize("name", ["demo.yaml", "demo-real.yaml"])
def test_shipped_plans_load_and_parse_every_recipe(name):
    from pathlib import Path

    from edgesmith.compress.recipe import parse_recipe

    plan = load_plan(Path(__file__).parents[2] / "plans" / name)
    for recipe in plan.recipes:
        for model in plan.models:
            text = plan.recipe_for(recipe, model)
            assert recipe == "baseline" or parse_recipe(text).steps, (recipe, model)
