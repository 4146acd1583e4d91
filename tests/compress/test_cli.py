"""`edgesmith compress`: the output folder contract, lineage, and clear failures that write nothing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgesmith.cli import main
from edgesmith.compress.recipe import load_recipe, parse_recipe
from edgesmith.core.records import ModelCard
from tests.conftest import FAMILY_MODELS

# One recipe per family so that every technique goes through the CLI once.
RECIPES = {
    "cnn": "prune:sparsity=0.6,schedule=poly,epochs=1+cluster:clusters=8,epochs=1",
    "lstm": "prune:structure=2:4,epochs=1+qat:epochs=1",
    "transformer": "distill:student=lstm-digits,epochs=1,baseline=false+prune:sparsity=0.5,epochs=1",
}
CARD_KEYS = {
    "accuracy",
    "sparsity",
    "params",
    "nonzero_params",
    "unique_weights_max",
    "steps",
    "parent",
    "qat",
    "recipe",
    "layer_sparsity",
}


def _compress(name, recipe, out, store, *extra):
    args = ["compress", name, "--recipe", recipe, "--store", str(store), "--out", str(out)]
    return main([*args, *extra])


@pytest.fixture(scope="module")
def outputs(tiny_store, tmp_path_factory):
    """One `edgesmith compress` run per family (its recipe above), shared by the tests below."""
    root = tmp_path_factory.mktemp("compressed")
    folders = {}
    for family, name in FAMILY_MODELS.items():
        folders[family] = root / family
        assert _compress(name, RECIPES[family], folders[family], tiny_store) == 0
    return folders


@pytest.mark.parametrize("family", FAMILY_MODELS)
def test_output_folder_is_a_model_folder_with_recipe_and_card(
    family, outputs, tiny_store, tmp_path, capsys
):
    name, out = FAMILY_MODELS[family], outputs[family]
    assert sorted(p.name for p in out.iterdir()) == [
        "card.json",
        "model.keras",
        "preprocessing.json",
        "recipe.json",
    ]
    card = json.loads((out / "card.json").read_text())
    assert {f.name for f in dataclasses.fields(ModelCard)} | CARD_KEYS <= set(card)
    parent = json.loads((tiny_store / name / "card.json").read_text())
    assert card["parent"] == parent
    assert [s["step"] for s in card["steps"]] == [
        s.step for s in parse_recipe(RECIPES[family]).steps
    ]
    assert load_recipe(out / "recipe.json") == parse_recipe(RECIPES[family])
    assert (out / "preprocessing.json").read_text() == (
        tiny_store / name / "preprocessing.json"
    ).read_text()
    assert 0 < card["nonzero_params"] < card["params"]
    assert card["sparsity"] == pytest.approx(card["steps"][-1]["sparsity"])
    capsys.readouterr()
    # The folder is what `zoo eval` (and `convert`) take: same accuracy as the card says.
    assert main(["zoo", "eval", str(out), "--json", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(card["accuracy"])
    assert evaluated["name"] == card["name"]


def _card(outputs, family):
    return json.loads((outputs[family] / "card.json").read_text())


def test_prune_then_cluster_card(outputs):
    card = _card(outputs, "cnn")
    prune_step, cluster_step = card["steps"]
    assert prune_step["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert card["sparsity"] == pytest.approx(0.6, abs=0.01)  # clustering kept the zeros
    assert card["unique_weights_max"] <= 8 and cluster_step["unique_weights_max"] <= 8
    assert card["qat"] is False and card["model_format"] == "keras"


def test_qat_card_and_model(outputs):
    card = _card(outputs, "lstm")
    assert card["qat"] is True and card["model_format"] == "h5"
    assert card["steps"][-1]["preserve"] == "sparsity"
    assert card["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert card["unique_weights_max"] is None
    from edgesmith.zoo.store import load_model_folder

    model = load_model_folder(outputs["lstm"]).model
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in model.layers)


def test_distilled_card_describes_the_student(outputs):
    card = _card(outputs, "transformer")
    assert card["family"] == "lstm" and card["layout"] == "sequence"
    distilled = card["steps"][0]
    assert distilled["student"] == "lstm-digits" and distilled["teacher_accuracy"] > 0.3
    assert distilled["scratch_accuracy"] is None  # baseline=false
    assert card["params"] < card["parent"]["params"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cnn-digits", "--recipe", "prune:sparsity=1.5"], "sparsity=1.5"),
        (["cnn-digits", "--recipe", "bogus"], "unknown step 'bogus'"),
        (["cnn-digits", "--recipe", "prune:sparsty=0.5"], "did you mean 'sparsity'"),
        (["cnn-digits", "--recipe", "qat+prune"], "qat as the last step"),
        (["cnn-digts", "--recipe", "prune"], "did you mean 'cnn-digits'"),
        (["lstm-kws", "--recipe", "prune"], "no trained copy of 'lstm-kws'"),
        (["lstm-digits", "--recipe", "distill:student=transformer-sms"], "reads token ids"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_write_nothing(
    argv, message, tiny_store, tmp_path, capsys
):
    out = tmp_path / "out"
    assert main(["compress", *argv, "--store", str(tiny_store), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".edgesmith-tmp")]


def test_a_qat_output_cannot_be_compressed_again(tiny_store, tmp_path, capsys):
    first = tmp_path / "qat"
    assert _compress("cnn-digits", "qat:epochs=0", first, tiny_store) == 0
    assert _compress(str(first), "prune", tmp_path / "again", tiny_store) == 2
    assert "already quantization-aware" in capsys.readouterr().err


def test_logdir_writes_tensorboard_logs_or_says_what_is_missing(tiny_store, tmp_path, capsys):
    import importlib.util

    logdir = tmp_path / "tb"
    code = _compress(
        "cnn-digits", "prune:epochs=1", tmp_path / "o", tiny_store, "--logdir", str(logdir)
    )
    if importlib.util.find_spec("tensorboard") is None:
        assert code == 2
        assert "pip install tensorboard" in capsys.readouterr().err
        assert not (tmp_path / "o").exists()
    else:
        assert code == 0
        assert list(logdir.rglob("events.out.tfevents.*"))
