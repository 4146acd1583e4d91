"""Shared fixtures: the real data folder, a scratch model store, tiny trained models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    """A store holding the three digits models trained for a few epochs (one per family)."""
    from edgesmith.zoo.train import train_zoo_model

    root = tmp_path_factory.mktemp("store")
    for name in FAMILY_MODELS.values():
        train_zoo_model(name, epochs=3, store=root)
    return root
