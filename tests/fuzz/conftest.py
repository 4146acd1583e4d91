"""The fuzz suite's seed files, and the switch that keeps the long run out of `make test`.

Tests marked ``fuzz`` run only when asked for: ``-m fuzz`` (or any ``-m`` expression that
names it) or ``EDGESMITH_FUZZ_CASES`` set in the environment. Otherwise they are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_models import FAMILIES, build_once

# (family, format, quant) of each seed file: every family in both formats.
SEEDS = [(family, fmt, "none") for family in FAMILIES for fmt in ("tflite", "onnx")]
SEEDS.append(("cnn", "tflite", "dynamic"))


def seed_name(family: str, fmt: str, quant: str) -> str:
    return f"{family}-{quant}.{fmt}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = "fuzz" in (config.getoption("-m") or "") or bool(os.environ.get("EDGESMITH_FUZZ_CASES"))
    if asked:
        return
    skip = pytest.mark.skip(reason="the long fuzz run: -m fuzz or EDGESMITH_FUZZ_CASES=N")
    for item in items:
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fuzz_seeds(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The tiny models of the three families as .tflite and .onnx, built once per run."""

    def build(folder: Path) -> dict[str, Path]:
        from edgesmith.convert import convert_keras
        from edgesmith.convert.config import ConversionConfig
        from edgesmith.zoo.store import load_model_folder

        models = {family: load_model_folder(tiny_models[family]).model for family in FAMILIES}
        out = {}
        for family, fmt, quant in SEEDS:
            name = seed_name(family, fmt, quant)
            content = convert_keras(models[family], ConversionConfig(format=fmt, quant=quant))
            (folder / name).write_bytes(content)
            out[name] = folder / name
        return out

    return build_once(tmp_path_factory, "fuzz-seeds", build)[1]
