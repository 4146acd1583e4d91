"""`edgesmith inspect`: what a model file holds and what each stage would do, nothing run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgesmith.cli import main
from edgesmith.commands.inspect import TECHNIQUES, _combined, _owner

KEYS = {
    "file",
    "format",
    "keras_version",
    "keras3",
    "family",
    "params",
    "inputs",
    "outputs",
    "output_kind",
    "layers",
    "refused",
    "rebuild_check",
}


def _keras3() -> Any:
    from edgesmith.zoo.tfkeras import keras

    keras()  # TensorFlow first, with tf.keras = Keras 2
    import keras as keras3

    keras3.utils.set_random_seed(0)
    return keras3


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory) -> Path:
    """A Keras 3 .keras with a convolution, a GRU, attention and a softmax head."""
    k = _keras3()
    layers = k.layers
    inputs = k.Input((8, 8))
    x = layers.Conv1D(8, 3, padding="same", activation="relu6", name="conv")(inputs)
    x = layers.GRU(8, return_sequences=True, name="gru")(x)
    a = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attn")(x, x)
    x = layers.LayerNormalization(name="norm")(layers.Add(name="add")([x, a]))
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(3, activation="softmax", name="head")(x)
    model = k.Model(inputs, outputs, name="mixed")
    path = tmp_path_factory.mktemp("inspect") / "mixed.keras"
    model.save(path)
    return path


def _inspect_json(capsys, *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["inspect", *argv, "--json", "-"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_a_keras3_model_lists_every_layer_with_each_technique(mixed_file, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["inspect", str(mixed_file), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= KEYS
    assert report["format"] == "keras-zip" and report["keras3"] is True
    assert report["keras_version"].startswith("3.")
    assert report["family"] == "lstm"  # a recurrent layer decides the family
    assert report["output_kind"] == "softmax"
    assert report["inputs"][0]["shape"] == [None, 8, 8]
    assert report["outputs"][0]["shape"] == [None, 3]
    assert report["refused"] == []
    assert report["rebuild_check"]["passed"] is True
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert list(layers) == ["conv", "gru", "attn", "add", "norm", "pool", "head"]
    assert report["params"] == sum(layer["params"] for layer in layers.values())
    for layer in layers.values():
        assert set(TECHNIQUES) <= set(layer)
        for technique in TECHNIQUES:
            assert isinstance(layer[technique]["applies"], bool)
            assert layer[technique]["applies"] or layer[technique]["why"]
    for name in ("conv", "gru", "attn", "head"):  # every kernel is pruned and clustered
        assert layers[name]["prune"]["applies"] and layers[name]["cluster"]["applies"]
    assert not layers["norm"]["prune"]["applies"]
    assert "normalisation" in layers["norm"]["prune"]["why"]
    assert not layers["pool"]["prune"]["applies"] and layers["pool"]["prune"]["why"]
    assert layers["gru"]["qat"]["applies"]
    # How each Keras 3 layer becomes tf-keras: attention is split, relu6 becomes a layer.
    assert "AttentionCore" in layers["attn"]["rebuild"]
    assert "relu6" in layers["conv"]["rebuild"]
    assert "GRU" in layers["gru"]["rebuild"]
    assert json.loads(capsys.readouterr().out) == report  # printed as well as written


def test_the_tables_name_layers_and_techniques(mixed_file, capsys):
    assert main(["inspect", str(mixed_file)]) == 0
    text = capsys.readouterr().out
    for word in ("keras-zip", "MultiHeadAttention", "GRU", "prune", "qat", "cluster", "softmax"):
        assert word in text


def test_a_lambda_is_refused_by_name_and_nothing_runs(tmp_path, capsys, monkeypatch):
    k = _keras3()
    marker = tmp_path / "ran.txt"

    def touch(t: Any, path: str = str(marker)) -> Any:
        open(path, "w").close()  # the side effect that must not happen
        return t * 2

    inputs = k.Input((4,))
    x = k.layers.Lambda(touch, name="double")(inputs)
    model = k.Model(inputs, k.layers.Dense(2, name="d")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    assert marker.exists()  # building the model called the function: the probe works
    marker.unlink()

    import edgesmith.zoo.safe_load as safe_load

    def no_load(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(safe_load, "load_model_file", no_load)
    code, report, err = _inspect_json(capsys, str(path))
    assert code == 2
    assert not marker.exists()
    assert report["refused"] == [
        {
            "layer": "double",
            "class": "Lambda",
            "why": report["refused"][0]["why"],
            "stage": "load",
            "fix": report["refused"][0]["fix"],
        }
    ]
    assert "Python code" in report["refused"][0]["why"]
    assert "--trust-model" in report["refused"][0]["fix"]
    assert "--custom-objects" in report["refused"][0]["fix"]
    assert report["params"] is None  # not loaded
    assert [layer["name"] for layer in report["layers"]] == ["double", "d"]
    lines = [line for line in err.splitlines() if line.startswith("refused")]
    assert len(lines) == 1 and "double (Lambda)" in lines[0]


def test_a_trusted_lambda_still_has_no_tf_keras_rebuild(tmp_path, capsys):
    k = _keras3()
    inputs = k.Input((4,))
    x = k.layers.Lambda(lambda t: t * 2, name="double")(inputs)
    path = tmp_path / "lambda.keras"
    k.Model(inputs, k.layers.Dense(2, name="d")(x)).save(path)
    code, report, _ = _inspect_json(capsys, str(path), "--trust-model")
    assert code == 2
    assert [(r["layer"], r["stage"]) for r in report["refused"]] == [("double", "rebuild")]
    assert report["params"] == 10 and report["rebuild_check"]["passed"] is False


@pytest.mark.parametrize("family", ["cnn", "lstm", "transformer"])
def test_a_zoo_model_folder_goes_through_every_stage(family, tiny_models, capsys):
    from edgesmith.zoo.store import read_card

    folder = tiny_models[family]
    code, report, err = _inspect_json(capsys, str(folder))
    assert code == 0, err
    assert report["refused"] == [] and report["keras3"] is False
    assert report["rebuild_check"] is None
    assert report["family"] == read_card(folder).family == family
    assert report["params"] == read_card(folder).params
    assert report["folder"] == str(folder)
    for technique in TECHNIQUES:
        assert any(layer[technique]["applies"] for layer in report["layers"])
    assert all(layer["rebuild"] is None for layer in report["layers"])


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"PK\x03\x04 truncated zip",
        b"\x89HDF\r\n\x1a\n broken",
        b"plain text\n",
        bytes(range(64)),
    ],
    ids=["empty", "zip", "hdf5", "text", "binary"],
)
def test_a_corrupt_file_is_one_line_and_exit_2(content, tmp_path, capsys):
    path = tmp_path / "broken.keras"
    path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def test_a_truncated_model_file_is_one_line(mixed_file, tmp_path, capsys):
    path = tmp_path / "cut.keras"
    path.write_bytes(mixed_file.read_bytes()[: mixed_file.stat().st_size // 2])
    assert main(["inspect", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")


def test_unknown_names_and_missing_paths_are_one_line(tmp_path, capsys):
    assert main(["inspect", "no-such-model"]) == 2
    assert main(["inspect", str(tmp_path / "missing.keras")]) == 2
    assert main(["inspect", "cnn-digits", "--store", str(tmp_path / "empty")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error:") for line in lines)
    assert "edgesmith zoo train" in lines[2]


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--trust-model" in text and "--json" in text


# --- how rebuilt tf-keras layers are gathered under their Keras 3 layer --------------------


def test_rebuilt_layers_belong_to_the_longest_matching_name():
    names = ["dense", "dense_1", "attn"]
    assert _owner("dense", names) == "dense"
    assert _owner("dense_1", names) == "dense_1"
    assert _owner("dense_1_relu6", names) == "dense_1"
    assert _owner("dense_relu6", names) == "dense"
    assert _owner("attn_query", names) == "attn"
    assert _owner("other", names) is None


def test_parts_combine_into_one_status():
    yes, no = {"applies": True, "why": ""}, {"applies": False, "why": "no weights"}
    assert _combined([("conv", yes), ("conv_relu6", no)]) == yes
    both = _combined([("a_query", yes), ("a_key", yes), ("a_attention", no)])
    assert both["applies"] and "a_query, a_key" in both["why"]
    bad = {"applies": False, "why": "cannot handle Odd", "unsupported": True}
    mixed = _combined([("x", yes), ("x_odd", bad)])
    assert mixed["unsupported"] and mixed["exclude"] == "^x_odd$"
    assert _combined([])["applies"] is False
    assert np.isfinite(len(_combined([("x", no)])["why"]))
