"""Evaluate stored models and export their evaluation data for the TF-free runtime.

Evaluation always reuses the preprocessing stored with the model (vocabulary, feature
normalisation): nothing is refitted on the data being evaluated.

Example:
    >>> from edgesmith.zoo.evaluate import evaluate_stored
    >>> evaluate_stored("cnn-digits", split="test")["samples"]  # doctest: +SKIP
    270
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError
from edgesmith.core.fileio import atomic_path
from edgesmith.zoo.datasets import DatasetSplits, load_dataset
from edgesmith.zoo.store import ModelStore, StoredModel, load_model_folder


def open_model(
    name_or_path: str | os.PathLike[str], *, store: ModelStore | str | None = None
) -> StoredModel:
    """A stored zoo model by name, or any model folder (such as a ``compress`` output)."""
    path = Path(name_or_path)
    if path.is_dir():
        return load_model_folder(path)
    from edgesmith.zoo.registry import get_spec

    get_spec(str(name_or_path))  # an unknown name lists the known ones
    store = store if isinstance(store, ModelStore) else ModelStore(store)
    return store.load(str(name_or_path))


def data_for(
    stored: StoredModel, *, data_dir: str | os.PathLike[str] | None = None
) -> DatasetSplits:
    """The data set of ``stored``, preprocessed exactly as at training time."""
    data = load_dataset(stored.card.dataset, data_dir=data_dir, preprocessing=stored.preprocessing)
    return data.with_layout(stored.card.layout or "sequence")


def evaluate_stored(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "test",
    store: ModelStore | str | None = None,
) -> dict[str, Any]:
    """Accuracy of a stored model on ``split`` (``test`` or ``all``), as a JSON-able dict."""
    from edgesmith.zoo.train import evaluate_model

    stored = open_model(name_or_path, store=store)
    data = data_for(stored, data_dir=data_dir)
    result = evaluate_model(stored.model, data, split)
    return {
        "name": stored.card.name,
        "family": stored.card.family,
        "dataset": stored.card.dataset,
        **result,
        "source": data.source,
        "model_dir": str(stored.path),
    }


def export_eval(
    name_or_path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "test",
    store: ModelStore | str | None = None,
) -> dict[str, Any]:
    """Write ``x`` and ``y`` of ``split`` exactly as the model consumes them to ``out`` (.npz)."""
    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}", expected="a file name ending in .npz")
    stored = open_model(name_or_path, store=store)
    data = data_for(stored, data_dir=data_dir)
    x, y = data.split(split)
    dtype = np.int32 if stored.card.layout == "tokens" else np.float32
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        x=x.astype(dtype),
        y=y.astype(np.int64),
        class_names=np.asarray(data.class_names),
        model=np.asarray(stored.card.name),
        split=np.asarray(split),
    )
    with atomic_path(out) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return {"name": stored.card.name, "split": split, "samples": len(y), "out": str(out)}
