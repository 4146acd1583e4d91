"""Models as `compress` writes them: pruning wrappers stripped, sparse storage, QAT ranges."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.converter import convert_model


def _save_folder(model, source_folder, dest_root, name):
    """Save ``model`` like a compress output: same card and preprocessing as its source."""
    from edgesmith.zoo.store import ModelStore, load_model_folder

    stored = load_model_folder(source_folder)
    card = type(stored.card).from_dict({**stored.card.to_dict(), "name": name})
    return ModelStore(dest_root).save(model, card, stored.preprocessing)


def _save_qat_folder(model, source_folder, out):
    """Save a QAT ``model`` as `edgesmith compress` does: HDF5 file, card with qat=true."""
    from edgesmith.compress.recipe import parse_recipe
    from edgesmith.compress.recipe_runner import save_folder
    from edgesmith.core.records import CompressionCard
    from edgesmith.zoo.store import load_model_folder

    stored = load_model_folder(source_folder)
    card = CompressionCard.from_dict(
        {**stored.card.to_dict(), "name": "qat", "recipe": "qat", "qat": True, "model_format": "h5"}
    )
    return save_folder(model, card, stored.preprocessing, parse_recipe("qat"), out)


def _digits(folder):
    from edgesmith.zoo.evaluate import data_for, open_model

    return data_for(open_model(folder))


@pytest.fixture(scope="module")
def pruned_folder(tiny_models, tmp_path_factory):
    from edgesmith.zoo.evaluate import open_model
    from edgesmith.zoo.tfkeras import keras, tfmot

    k, mot = keras(), tfmot()
    base = open_model(tiny_models["cnn"]).model
    schedule = mot.sparsity.keras.ConstantSparsity(0.8, begin_step=0, frequency=1)
    pruned = mot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    pruned.compile(k.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    data = _digits(tiny_models["cnn"])
    pruned.fit(data.x_train, data.y_train, epochs=1, batch_size=64, verbose=0,
               callbacks=[mot.sparsity.keras.UpdatePruningStep()])  # fmt: skip
    return _save_folder(pruned, tiny_models["cnn"], tmp_path_factory.mktemp("pruned"), "pruned")


def test_pruned_model_is_stripped_and_stored_sparse(pruned_folder, tmp_path):
    out = tmp_path / "pruned.tflite"
    config = ConversionConfig(quant="int8", sparse=True, calibration_samples=64, eval_samples=64)
    result = convert_model(pruned_folder, out=out, config=config)
    record = json.loads((tmp_path / "pruned.tflite.json").read_text())
    assert any("pruning wrappers stripped" in note for note in result.record.notes)
    assert record["sparsity"] > 0.5  # the 80%-pruned kernels dominate the weights
    sparse = record["sparse_weights"]
    assert sparse["sparse_bytes"] == record["size_bytes"]
    assert sparse["saved_bytes"] == sparse["dense_bytes"] - sparse["sparse_bytes"]
    assert sparse["saved_bytes"] > 0, sparse
    assert record["parity"]["ok"]


def test_int8_from_a_qat_model_uses_the_learned_ranges(tiny_models, tmp_path):
    from edgesmith.convert.parity import compare, predict_file
    from edgesmith.convert.source import Source, load_source
    from edgesmith.convert.tflite import to_tflite
    from edgesmith.zoo.evaluate import open_model
    from edgesmith.zoo.tfkeras import keras, tfmot

    k, mot = keras(), tfmot()
    qat = mot.quantization.keras.quantize_model(open_model(tiny_models["cnn"]).model)
    qat.compile(k.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    data = _digits(tiny_models["cnn"])
    qat.fit(data.x_train, data.y_train, epochs=1, batch_size=64, verbose=0)
    # The card is the one place that says a model is quantization-aware: a compress
    # output's card with qat=true makes its source QAT, a bare model is not.
    folder = _save_qat_folder(qat, tiny_models["cnn"], tmp_path / "qat-folder")
    source = load_source(folder)
    assert source.is_qat and source.recipe == "qat" and source.steps == []
    assert not load_source(tiny_models["cnn"]).is_qat
    assert not Source(qat, "qat", "cnn", None).is_qat

    config = ConversionConfig(quant="int8")
    result = to_tflite(qat, "cnn", config, x_calibration=None, qat=True)
    assert result.strategy["calibration"]["method"].startswith("ranges learned")
    assert result.strategy["calibration"]["samples"] == 0
    out = tmp_path / "qat.tflite"
    out.write_bytes(result.content)
    x = data.x_test[:64]
    parity = compare(qat.predict(x, verbose=0), predict_file(out, x), config.tolerance)
    assert parity["ok"], parity["messages"]
    from ai_edge_litert.interpreter import Interpreter

    assert Interpreter(model_path=str(out)).get_input_details()[0]["dtype"] == np.int8
