"""Shared fixtures: the real data folder, a scratch home, the tiny trained models (tests/tiny_models.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_models import FAMILIES, Tiny, build_once, load_tiny, tiny_model_folder

# With one test process per core (xdist), TensorFlow's and the BLAS libraries' own thread
# pools would put several threads on each core; the tiny test models gain nothing from
# them and lose time to the contention. Set before any TensorFlow import; children inherit.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")

REPO = Path(__file__).resolve().parents[1]
FAMILY_MODELS = {"cnn": "cnn-digits", "lstm": "lstm-digits", "transformer": "transformer-digits"}


def shared_data() -> Path | None:
    """``$EDGESMITH_DATA`` or ``../shared/data`` beside the checkout, when present."""
    candidates = [os.environ.get("EDGESMITH_DATA"), REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and (REPO / candidate).is_dir():
            return (REPO / candidate).resolve()
    return None


DATA = shared_data()
needs_data = pytest.mark.skipif(
    DATA is None, reason="real data folder not found (set EDGESMITH_DATA or add ../shared/data)"
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep tests out of the user's cache: the default store lives in a scratch folder."""
    monkeypatch.setenv("EDGESMITH_HOME", str(tmp_path_factory.getbasetemp() / "edgesmith-home"))


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the three digits zoo models trained for a few epochs (one per family).

    Built once per run for all xdist workers; tests read it and never write into it.
    """
    from edgesmith.zoo.train import train_zoo_model

    def train(root: Path) -> None:
        for name in FAMILY_MODELS.values():
            train_zoo_model(name, epochs=3, store=root)

    return build_once(tmp_path_factory, "zoo-store", train)[0]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tiny]:
    """One trained tiny model per family, loaded in this process, with its data."""
    return {family: load_tiny(tmp_path_factory, family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same tiny models as model folders (model.keras, card.json, preprocessing.json)."""
    return {family: tiny_model_folder(tmp_path_factory, family) for family in FAMILIES}


# Fixtures that train models or build environments: a test that uses one is `slow`.
SLOW_FIXTURES = {"tiny", "tiny_models", "tiny_store", "token_tiny", "zoo_tflite", "fresh_venvs"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    heavy_asked = "heavy" in (config.getoption("-m") or "")
    skip_heavy = pytest.mark.skip(reason="minutes per model: run with -m heavy")
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("heavy") is not None and not heavy_asked:
            item.add_marker(skip_heavy)
