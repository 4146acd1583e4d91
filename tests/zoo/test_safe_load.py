"""Users' model files load only when nothing in them would run code from the file."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgesmith.core.errors import ConfigError, ModelFileError
from edgesmith.zoo import safe_load
from edgesmith.zoo.safe_load import inspect_model_file, load_custom_objects, load_model_file
from edgesmith.zoo.tfkeras import keras, tf

# Saving lambdas and .h5 files makes the libraries warn; that is what these tests do.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

X = np.linspace(-1.0, 1.0, 8, dtype=np.float32).reshape(2, 4)

# A layer class as a user's own module defines it; written to a .py file per test. The
# model files are built from one copy (the author's) and loaded with another (the user's).
LAYER_SOURCE = """
import {package} as k


class Scale(k.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {{**super().get_config(), "factor": self.factor}}
"""


def _evil(marker: Path) -> Callable[[Any], Any]:
    """A lambda that writes ``marker`` when called; the path is a constant of its bytecode."""
    return eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")


def _tf_dense(extra: Callable[[Any, Any], Any] | None = None) -> Any:
    k = keras()
    inputs = k.Input((4,), name="x")
    y = k.layers.Dense(3, name="dense")(inputs)
    if extra is not None:
        y = extra(k, y)
    return k.Model(inputs, y, name="plain")


def _k3_dense(extra: Callable[[Any, Any], Any] | None = None) -> Any:
    import keras as k3

    inputs = k3.Input((4,), name="x")
    y = k3.layers.Dense(3, name="dense")(inputs)
    if extra is not None:
        y = extra(k3, y)
    return k3.Model(inputs, y, name="plain")


# (builder of a model, file name) per format that holds Keras layers.
FORMATS = {
    "tf-h5": (_tf_dense, "model.h5"),
    "tf-keras": (_tf_dense, "model.keras"),
    "k3-keras": (_k3_dense, "model.keras"),
}


def _save(model: Any, path: Path) -> Path:
    model.save(path)
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(ModelFileError) as caught:
        load_model_file(path)
    return str(caught.value)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_lambda_is_refused_and_its_code_never_runs(tmp_path: Path, fmt: str) -> None:
    build, name = FORMATS[fmt]
    marker = tmp_path / "marker"
    evil = _evil(marker)
    path = _save(build(lambda k, y: k.layers.Lambda(evil, name="evil")(y)), tmp_path / name)
    marker.unlink(missing_ok=True)  # building the model called the lambda once

    info = inspect_model_file(path)
    assert ("evil", "Lambda") in info.layers
    assert [(n, c) for n, c, _ in info.refused] == [("evil", "Lambda")]
    message = _refusal(path)
    assert str(path) in message and "evil (Lambda)" in message and "--trust-model" in message
    assert not marker.exists()

    model, info = load_model_file(path, trust=True)  # the user's choice: the code runs
    assert model.predict(X, verbose=0).shape == (2, 3)
    assert info.keras3 == fmt.startswith("k3")
    assert marker.exists()


def test_lambda_nested_in_wrappers_and_submodels_is_refused(tmp_path: Path) -> None:
    k = keras()
    marker = tmp_path / "marker"
    inner = k.Sequential(
        [
            k.Input((3, 4)),
            k.layers.TimeDistributed(k.layers.Lambda(_evil(marker), name="deep"), name="td"),
            k.layers.Bidirectional(k.layers.LSTM(2, name="rnn"), name="bi"),
        ],
        name="inner",
    )
    inputs = k.Input((3, 4), name="x")
    path = _save(k.Model(inputs, inner(inputs), name="outer"), tmp_path / "nested.h5")
    marker.unlink(missing_ok=True)

    info = inspect_model_file(path)
    names = [name for name, _ in info.layers]
    assert names.index("inner") < names.index("td") < names.index("deep")
    assert ("rnn", "LSTM") in info.layers
    assert [(n, c) for n, c, _ in info.refused] == [("deep", "Lambda")]
    assert "deep (Lambda)" in _refusal(path)
    assert not marker.exists()


def test_activation_stored_as_bytecode_is_refused(tmp_path: Path) -> None:
    k = keras()
    marker = tmp_path / "marker"
    inputs = k.Input((4,))
    # Written in this file: tf-keras reads a lambda activation's source when saving it.
    activation = lambda x, path=str(marker): (open(path, "w").write("ran"), x)[1]  # noqa: E731, SIM115
    outputs = k.layers.Dense(2, activation=activation, name="act")(inputs)
    path = _save(k.Model(inputs, outputs), tmp_path / "act.h5")
    marker.unlink(missing_ok=True)

    refused = inspect_model_file(path).refused
    assert [(n, c) for n, c, _ in refused] == [("act", "Dense")]
    assert "activation" in refused[0][2] and "bytecode" in refused[0][2]
    _refusal(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_custom_layer_needs_the_users_class(tmp_path: Path, fmt: str) -> None:
    build, name = FORMATS[fmt]
    package = "keras" if fmt.startswith("k3") else "tf_keras"
    author = tmp_path / "author_layers.py"
    author.write_text(LAYER_SOURCE.format(package=package))
    scale = load_custom_objects(author)["Scale"]
    original = build(lambda k, y: scale(3.0, name="scaled")(y))
    path = _save(original, tmp_path / name)

    info = inspect_model_file(path)
    assert [(n, c) for n, c, _ in info.refused] == [("scaled", "Scale")]
    assert "scaled (Scale)" in _refusal(path)

    user = tmp_path / "my_layers.py"
    user.write_text(LAYER_SOURCE.format(package=package))
    objects = load_custom_objects(user)
    assert set(objects) >= {"Scale"} and objects["Scale"] is not scale
    assert inspect_model_file(path, custom_objects=objects).refused == ()
    model, _ = load_model_file(path, custom_objects=objects)
    np.testing.assert_allclose(model.predict(X, verbose=0), original.predict(X, verbose=0))
    assert type(model.get_layer("scaled")) is objects["Scale"]


def test_custom_objects_file_declared_dict_and_errors(tmp_path: Path) -> None:
    declared = tmp_path / "declared.py"
    declared.write_text(
        LAYER_SOURCE.format(package="tf_keras")
        + "\ndef helper(x):\n    return x\n\nCUSTOM_OBJECTS = {'Renamed': Scale, 'helper': helper}\n"
    )
    objects = load_custom_objects(declared)
    assert set(objects) == {"Renamed", "helper"}
    assert objects["Renamed"].__name__ == "Scale"

    missing = tmp_path / "nope.py"
    with pytest.raises(ConfigError, match=r"nope\.py: not found"):
        load_custom_objects(missing)
    broken = tmp_path / "broken.py"
    broken.write_text("import math\nraise RuntimeError('boom\\nsecond line')\n")
    with pytest.raises(ConfigError) as caught:
        load_custom_objects(broken)
    message = str(caught.value)
    assert "broken.py" in message and "RuntimeError: boom second line" in message
    assert "\n" not in message
    bad_dict = tmp_path / "bad_dict.py"
    bad_dict.write_text("CUSTOM_OBJECTS = ['Scale']\n")
    with pytest.raises(ConfigError, match="CUSTOM_OBJECTS is a list"):
        load_custom_objects(bad_dict)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_plain_models_load_and_are_inspected(tmp_path: Path, fmt: str) -> None:
    build, name = FORMATS[fmt]
    original = build(lambda k, y: k.layers.Dense(2, activation="relu", name="head")(y))
    path = _save(original, tmp_path / name)

    info = inspect_model_file(path)
    assert info.keras3 == fmt.startswith("k3")
    assert info.format == ("h5" if name.endswith(".h5") else "keras-zip")
    assert info.keras_version.split(".")[0] == ("3" if info.keras3 else "2")
    assert [name for name, _ in info.layers] == ["x", "dense", "head"]
    assert info.layers[1:] == (("dense", "Dense"), ("head", "Dense"))
    assert info.refused == () and info.has_keras_model
    model, _ = load_model_file(path)
    np.testing.assert_allclose(model.predict(X, verbose=0), original.predict(X, verbose=0))


def test_tf_op_layers_load_but_file_writing_ops_are_refused(tmp_path: Path) -> None:
    original = _tf_dense(lambda k, y: tf().math.multiply(y, 2.0))
    path = _save(original, tmp_path / "ops.keras")
    info = inspect_model_file(path)
    assert any(cls == "TFOpLambda" for _, cls in info.layers) and info.refused == ()
    model, _ = load_model_file(path)
    np.testing.assert_allclose(model.predict(X, verbose=0), original.predict(X, verbose=0))

    def to_write_file(config: dict[str, Any]) -> None:
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "TFOpLambda":
                layer["config"]["function"] = "io.write_file"

    evil = _rewrite_config(path, tmp_path / "write.keras", to_write_file)
    refused = inspect_model_file(evil).refused
    assert len(refused) == 1 and "io.write_file" in refused[0][2]


def test_zoo_transformer_is_not_refused(tmp_path: Path) -> None:
    from edgesmith.zoo.builders import build_model

    original = build_model(
        "transformer", input_shape=(6, 4), num_classes=3, width=0.25, depth=1, heads=2, dim=8
    )
    x = np.random.default_rng(0).normal(size=(2, 6, 4)).astype(np.float32)
    for name in ("zoo.keras", "zoo.h5"):
        path = _save(original, tmp_path / name)
        info = inspect_model_file(path)
        classes = {cls.split(">")[-1] for _, cls in info.layers}
        assert {"PositionEmbedding", "AttentionCore"} <= classes
        assert info.refused == ()
        model, _ = load_model_file(path)
        np.testing.assert_allclose(model.predict(x, verbose=0), original.predict(x, verbose=0))


def test_tfmot_wrapped_models_load_in_their_scopes(tmp_path: Path) -> None:
    from edgesmith.zoo.tfkeras import tfmot

    mot = tfmot()
    base = _tf_dense(lambda k, y: k.layers.Dense(2, name="head")(y))
    pruned = _save(mot.sparsity.keras.prune_low_magnitude(base), tmp_path / "pruned.keras")
    quantized = _save(mot.quantization.keras.quantize_model(base), tmp_path / "qat.h5")
    for path, wrapper in ((pruned, "PruneLowMagnitude"), (quantized, "QuantizeWrapperV2")):
        info = inspect_model_file(path)
        assert wrapper in {cls for _, cls in info.layers} and info.refused == ()
        model, _ = load_model_file(path)
        assert wrapper in {type(layer).__name__ for layer in model.layers}


def test_savedmodels_with_and_without_keras_metadata(tmp_path: Path) -> None:
    original = _tf_dense(lambda k, y: k.layers.Dense(2, name="head")(y))
    with_keras = tmp_path / "keras_sm"
    original.save(with_keras, save_format="tf")
    info = inspect_model_file(with_keras)
    assert (info.format, info.has_keras_model, info.keras3) == ("savedmodel", True, False)
    assert info.layers[1:] == (("dense", "Dense"), ("head", "Dense")) and info.refused == ()
    model, _ = load_model_file(with_keras)
    np.testing.assert_allclose(model.predict(X, verbose=0), original.predict(X, verbose=0))

    graph_only = tmp_path / "graph_sm"
    tf().saved_model.save(original, str(graph_only))
    info = inspect_model_file(graph_only)
    assert (info.has_keras_model, info.layers, info.refused) == (False, (), ())
    with pytest.raises(ModelFileError, match=r"without Keras metadata.*converted"):
        load_model_file(graph_only)


def test_content_decides_the_format_not_the_extension(tmp_path: Path) -> None:
    original = _tf_dense()
    zipped = _save(original, tmp_path / "model.keras").rename(tmp_path / "model.h5")
    hdf5 = _save(original, tmp_path / "other.h5").rename(tmp_path / "other.bin")
    for path, fmt in ((zipped, "keras-zip"), (hdf5, "h5")):
        model, info = load_model_file(path)
        assert info.format == fmt
        np.testing.assert_allclose(model.predict(X, verbose=0), original.predict(X, verbose=0))


def _rewrite_config(source: Path, dest: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(dest, "w") as new:
        for item in old.namelist():
            data = old.read(item)
            if item == "config.json":
                config = json.loads(data)
                result = change(config)
                data = result if isinstance(result, bytes) else json.dumps(config).encode()
            new.writestr(item, data)
    return dest


@pytest.fixture(scope="module")
def good_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("good")
    model = _tf_dense()
    model.save_weights(folder / "weights.h5")
    return {
        "keras": _save(model, folder / "model.keras"),
        "h5": _save(model, folder / "model.h5"),
        "weights": folder / "weights.h5",
    }


def _truncate(source: Path, dest: Path) -> Path:
    dest.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return dest


def _random(dest: Path) -> Path:
    dest.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return dest


def _deep(config: dict[str, Any]) -> bytes:
    nested: Any = "x"
    for _ in range(400):
        nested = {"k": nested}
    config["config"]["deep"] = nested
    return json.dumps(config).encode()


BROKEN: dict[str, tuple[Callable[[dict[str, Path], Path], Path], str]] = {
    "missing": (lambda good, tmp: tmp / "absent.keras", "not found"),
    "truncated-zip": (
        lambda good, tmp: _truncate(good["keras"], tmp / "cut.keras"),
        "damaged or truncated zip",
    ),
    "truncated-h5": (
        lambda good, tmp: _truncate(good["h5"], tmp / "cut.h5"),
        "damaged or truncated HDF5",
    ),
    "random-bytes": (lambda good, tmp: _random(tmp / "noise.keras"), "not a zip, not HDF5"),
    "empty": (lambda good, tmp: _save_bytes(tmp / "empty.h5", b""), "an empty file"),
    "text-as-h5": (
        lambda good, tmp: _save_bytes(tmp / "notes.h5", b"hello model\n"),
        "a text file, not a zip, not HDF5",
    ),
    "zip-without-config": (
        lambda good, tmp: _zip(tmp / "bare.keras", {"metadata.json": b"{}", "x.txt": b"1"}),
        "without config.json",
    ),
    "config-garbage": (
        lambda good, tmp: _rewrite_config(good["keras"], tmp / "g.keras", lambda c: b"{nope"),
        "config.json is not valid JSON",
    ),
    "config-not-object": (
        lambda good, tmp: _rewrite_config(good["keras"], tmp / "l.keras", lambda c: b"[1, 2]"),
        "holds no Keras model config",
    ),
    "config-too-deep": (
        lambda good, tmp: _rewrite_config(good["keras"], tmp / "d.keras", _deep),
        "nested too deeply",
    ),
    "weights-only-h5": (lambda good, tmp: good["weights"], "without a model config"),
    "folder-not-savedmodel": (lambda good, tmp: tmp, "without saved_model.pb"),
}


def _save_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_give_one_clear_error(
    tmp_path: Path, good_files: dict[str, Path], case: str
) -> None:
    make, expected = BROKEN[case]
    path = make(good_files, tmp_path)
    for call in (inspect_model_file, load_model_file):
        with pytest.raises(ModelFileError) as caught:
            call(path)
        message = str(caught.value)
        assert str(path) in message and expected in message
        assert "\n" not in message and "Traceback" not in message


def test_oversized_config_is_refused_before_reading(
    good_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safe_load, "MAX_CONFIG_BYTES", 100)
    for path in (good_files["keras"], good_files["h5"]):
        with pytest.raises(ModelFileError, match="over"):
            inspect_model_file(path)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("schedule", [False, True])
def test_the_learning_rate_a_model_was_compiled_with_is_read(tmp_path, fmt, schedule):
    """Fine-tuning starts at the rate the user trained with; the file's config says it."""
    build, name = FORMATS[fmt]
    model = build()
    k = __import__("keras") if fmt.startswith("k3") else keras()
    rate = k.optimizers.schedules.CosineDecay(4e-3, 100) if schedule else 4e-3
    model.compile(optimizer=k.optimizers.Adam(rate), loss="mse")
    compiled = inspect_model_file(_save(model, tmp_path / name))
    assert compiled.learning_rate == pytest.approx(4e-3)
    uncompiled = inspect_model_file(_save(build(), tmp_path / f"plain-{name}"))
    assert uncompiled.learning_rate is None
