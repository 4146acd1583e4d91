"""Tiny trained models, one per family, saved as model folders with the digits data set."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {
    "cnn": {"arch": "cnn", "layout": "image", "width": 0.5, "depth": 1},
    "lstm": {"arch": "lstm", "layout": "sequence", "width": 0.5},
    "transformer": {"arch": "transformer", "layout": "sequence", "width": 0.5, "depth": 1,
                    "heads": 2},
}  # fmt: skip


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders like a store entry (model.keras, card.json, preprocessing.json) per family.

    Each model is trained for two epochs on the digits training split: enough to be far
    above chance so that top-1 agreement is meaningful, small enough to convert in seconds.
    """
    from edgesmith.core.records import ModelCard
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.datasets import load_dataset
    from edgesmith.zoo.store import ModelStore
    from edgesmith.zoo.tfkeras import keras, set_seed

    root = tmp_path_factory.mktemp("tiny-models")
    store = ModelStore(root)
    folders = {}
    for family, spec in TINY.items():
        set_seed(0)
        data = load_dataset("digits").with_layout(spec["layout"])
        options = {k: v for k, v in spec.items() if k not in ("arch", "layout")}
        model = build_model(
            spec["arch"], input_shape=data.input_shape, num_classes=10, name=f"tiny_{family}",
            **options,
        )  # fmt: skip
        model.compile(
            optimizer=keras().optimizers.Adam(3e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(data.x_train, data.y_train, epochs=4, batch_size=32, verbose=0)
        card = ModelCard(
            name=f"tiny-{family}",
            family=family,
            task="image-classification",
            dataset="digits",
            params=int(model.count_params()),
            input_shape=list(data.input_shape),
            layout=spec["layout"],
            classes=list(data.class_names),
        )
        folders[family] = store.save(model, card, data.preprocessing)
    return folders
