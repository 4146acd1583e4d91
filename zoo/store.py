"""The model store: one folder per trained model with the model, its card and preprocessing.

Layout of ``<root>/<name>/``: ``model.keras`` (Keras 2 format), ``card.json`` (a
:class:`~edgesmith.core.records.ModelCard`) and ``preprocessing.json`` (what turned data
files into model inputs, fitted on the training split). A ``compress`` output folder has
the same layout with a :class:`~edgesmith.core.records.CompressionCard` (and
``recipe.json``); its card's ``qat`` flag says whether ``model.keras`` holds a
quantization-aware model, which loads with :mod:`edgesmith.zoo.quantized`'s objects. The root defaults to
``$EDGESMITH_HOME/models`` or the user cache (``~/.cache/edgesmith/models``).

Example:
    >>> import tempfile
    >>> store = ModelStore(tempfile.mkdtemp())
    >>> store.has("cnn-digits")
    False
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.core.errors import StoreError
from edgesmith.core.fileio import atomic_path, read_json, write_json
from edgesmith.core.records import ModelCard, card_from_dict

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
PREPROCESSING_FILE = "preprocessing.json"


def cache_root() -> Path:
    """``$EDGESMITH_HOME``, else ``$XDG_CACHE_HOME/edgesmith``, else ``~/.cache/edgesmith``."""
    if os.environ.get("EDGESMITH_HOME"):
        return Path(os.environ["EDGESMITH_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgesmith"


@dataclass
class StoredModel:
    """A model loaded from the store (or from any folder with the same layout)."""

    model: Any
    card: ModelCard
    preprocessing: dict[str, Any]
    path: Path


class ModelStore:
    """Trained zoo models on disk, written atomically."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else cache_root() / "models"

    def path(self, name: str) -> Path:
        return self.root / name

    def has(self, name: str) -> bool:
        folder = self.path(name)
        return (folder / CARD_FILE).is_file() and (folder / MODEL_FILE).exists()

    def card(self, name: str) -> ModelCard:
        if not self.has(name):
            raise StoreError(
                f"no trained copy of {name!r} in {self.root}",
                fix=f"train it first: edgesmith zoo train {name} --out {self.root}",
            )
        return card_from_dict(read_json(self.path(name) / CARD_FILE))

    def load(self, name: str) -> StoredModel:
        """Load model, card and preprocessing of ``name``."""
        self.card(name)  # raises the friendly error when missing
        return load_model_folder(self.path(name))

    def save(
        self, model: Any, card: ModelCard, preprocessing: dict[str, Any], *, name: str | None = None
    ) -> Path:
        """Write a model folder atomically: a crash never leaves half a model behind."""
        dest = self.path(name or card.name)
        with atomic_path(dest, suffix=".dir") as tmp:
            tmp.mkdir()
            model.save(tmp / MODEL_FILE)
            write_json(tmp / PREPROCESSING_FILE, preprocessing)
            write_json(tmp / CARD_FILE, card.to_dict())  # written last: marks the folder done
        return dest


def load_model_folder(folder: str | os.PathLike[str]) -> StoredModel:
    """Load a folder laid out like a store entry (also what ``compress`` writes)."""
    folder = Path(folder)
    card = read_card(folder)
    preprocessing = read_json(folder / PREPROCESSING_FILE)
    model = load_keras_model(folder / MODEL_FILE, qat=card.qat)
    return StoredModel(model, card, preprocessing, folder)


def read_card(folder: str | os.PathLike[str]) -> ModelCard:
    """The card of a model folder, typed: a ``CompressionCard`` for a ``compress`` output."""
    folder = Path(folder)
    if not (folder / CARD_FILE).is_file():
        raise StoreError(
            f"{folder}: no {CARD_FILE}",
            expected="a model folder written by `edgesmith zoo train` or `edgesmith compress`",
        )
    return card_from_dict(read_json(folder / CARD_FILE))


def load_keras_model(path: str | os.PathLike[str], *, qat: bool = False) -> Any:
    """Load a Keras 2 model file with the zoo's custom layers, with a clear error if broken.

    ``qat``: the file holds a quantization-aware model (its card says so), whose tfmot
    wrappers and edgesmith quantize configs load in :func:`~edgesmith.zoo.quantized.quantize_scope`.
    """
    from edgesmith.core.errors import ModelFileError
    from edgesmith.zoo.custom_layers import custom_objects
    from edgesmith.zoo.tfkeras import keras

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: not found", expected="a saved Keras model")
    try:
        if qat:
            from edgesmith.zoo.quantized import quantize_scope

            with quantize_scope():
                return keras().models.load_model(path, compile=False)
        return keras().models.load_model(path, custom_objects=custom_objects(), compile=False)
    except Exception as exc:  # Keras raises many types for a broken file; one clear error instead
        raise ModelFileError(
            f"{path}: cannot be loaded as a Keras model ({type(exc).__name__}: {exc})"[:500],
            expected="a .keras, .h5 or SavedModel written by tf-keras 2",
        ) from exc
