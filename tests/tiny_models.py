"""Tiny trained models of the three families, shared by every test package.

Each family's model is a small zoo architecture trained for a few epochs on 512 digits
samples: well above chance, small enough that a technique or a conversion takes seconds.
A model is trained once per test run: the first xdist worker that needs it builds it under
a file lock into a folder that every worker sees (the model store's layout), the others
load it from there.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from edgesmith.core.tables import FAMILIES

T = TypeVar("T")

# Small but not trivial: every kernel has an input size that is a multiple of 4 (except
# the CNN's first conv, which reads one channel) so that 2:4 structure applies.
TINY = {
    "cnn": ("cnn", "image", {"width": 0.5, "depth": 1}),
    "lstm": ("lstm", "sequence", {"width": 0.5}),
    "transformer": ("transformer", "sequence", {"width": 0.5, "depth": 1, "heads": 2}),
}
EPOCHS = {"cnn": 4, "lstm": 15, "transformer": 6}  # each well above chance (> 0.7)
TRAIN_SAMPLES = 512

__all__ = ["EPOCHS", "FAMILIES", "TINY", "Tiny", "build_once", "tiny_data", "tiny_model_folder"]


@dataclass
class Tiny:
    """A trained tiny model with the data it was trained on and its builder settings."""

    family: str
    model: Any
    data: Any
    builder: dict[str, Any]


def build_once(
    factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]
) -> tuple[Path, T]:
    """``build(folder)`` run once per test run, whichever xdist worker asks first.

    The folder and the pickled return value are shared by all workers; a build that fails
    leaves nothing behind, so the next worker tries again and reports the same error.
    """
    from filelock import FileLock

    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by the workers
    folder = root / "shared" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / "result.pickle").exists():
            partial = folder.with_name(f"{name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            result = build(partial)
            (partial / "result.pickle").write_bytes(pickle.dumps(result))
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
    # Paths in the result point into the partial folder it was built in: re-point them.
    result = pickle.loads((folder / "result.pickle").read_bytes())
    return folder, _repoint(result, folder.with_name(f"{name}.partial"), folder)


def _repoint(value: Any, old: Path, new: Path) -> Any:
    """``value`` with every path under ``old`` moved under ``new`` (dicts, lists, paths)."""
    if isinstance(value, Path):
        return new / value.relative_to(old) if value.is_relative_to(old) else value
    if isinstance(value, dict):
        return {k: _repoint(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_repoint(v, old, new) for v in value)
    return value


def tiny_data(family: str) -> Any:
    """The digits splits in ``family``'s layout, with a 512-sample training split."""
    from edgesmith.zoo.datasets import DatasetSplits, load_dataset

    data = load_dataset("digits").with_layout(TINY[family][1])
    return DatasetSplits(
        **{
            **data.__dict__,
            "x_train": data.x_train[:TRAIN_SAMPLES],
            "y_train": data.y_train[:TRAIN_SAMPLES],
        }
    )


def _train(family: str, folder: Path) -> None:
    """Train ``family``'s tiny model and save it in the store layout under ``folder``."""
    from edgesmith.core.records import ModelCard
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.registry import TrainConfig
    from edgesmith.zoo.store import ModelStore
    from edgesmith.zoo.tfkeras import set_seed
    from edgesmith.zoo.train import fit

    arch, layout, options = TINY[family]
    set_seed(0)
    data = tiny_data(family)
    model = build_model(
        arch, input_shape=data.input_shape, num_classes=10, name=f"tiny_{family}", **options
    )
    fit(model, data, TrainConfig(epochs=EPOCHS[family], batch_size=32, learning_rate=5e-3))
    card = ModelCard(
        name=f"tiny-{family}",
        family=family,
        task="image-classification",
        dataset="digits",
        params=int(model.count_params()),
        input_shape=list(data.input_shape),
        layout=layout,
        classes=list(data.class_names),
        builder={"arch": arch, **options},
    )
    ModelStore(folder).save(model, card, data.preprocessing)


def tiny_model_folder(factory: pytest.TempPathFactory, family: str) -> Path:
    """The store folder (model.keras, card.json, preprocessing.json) of ``family``'s model."""
    root, _ = build_once(factory, f"tiny-{family}", lambda folder: _train(family, folder))
    return root / f"tiny-{family}"


def load_tiny(factory: pytest.TempPathFactory, family: str) -> Tiny:
    """``family``'s trained tiny model, loaded into this process, with its data."""
    from edgesmith.zoo.store import load_model_folder

    stored = load_model_folder(tiny_model_folder(factory, family))
    arch, layout, options = TINY[family]
    return Tiny(
        family, stored.model, tiny_data(family), {"arch": arch, "layout": layout, **options}
    )
