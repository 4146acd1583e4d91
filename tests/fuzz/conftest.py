"""The fuzz suite's seed files, and the switch that keeps the long run out of `make test`.

Tests marked ``fuzz`` run only when asked for: ``-m fuzz`` (or any ``-m`` expression that
names it) or ``EDGESMITH_FUZZ_CASES`` set in the environment. Otherwise they are skipped.

Seed files: the tiny models of every family as float .tflite and .onnx, plus full-int8
ones (calibrated on random inputs: the bytes matter here, not the accuracy). The long run
also takes every .tflite and .onnx in ``$EDGESMITH_FUZZ_SEEDS`` (a folder of anyone's
models), so it can be re-run on files that are not in this repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_models import FAMILIES, build_once

# (family, format, quant) of each seed file: every family in both formats.
SEEDS = [(family, fmt, "none") for family in FAMILIES for fmt in ("tflite", "onnx")]
SEEDS.append(("cnn", "tflite", "dynamic"))
SEEDS += [(family, fmt, "int8") for family in FAMILIES for fmt in ("tflite", "onnx")]
SEEDS_ENV = "EDGESMITH_FUZZ_SEEDS"


def extra_seeds() -> dict[str, Path]:
    """The .tflite and .onnx files in ``$EDGESMITH_FUZZ_SEEDS`` (none when unset)."""
    folder = os.environ.get(SEEDS_ENV)
    if not folder:
        return {}
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix in (".tflite", ".onnx"))
    if not files:
        raise pytest.UsageError(f"{SEEDS_ENV}={folder}: no .tflite or .onnx files in it")
    return {f"extra/{p.relative_to(folder)}": p for p in files}


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
            model = models[family]
            calibration = _random_inputs(model) if quant == "int8" else None
            config = ConversionConfig(format=fmt, quant=quant)
            content = convert_keras(model, config, calibration)
            (folder / name).write_bytes(content)
            out[name] = folder / name
        return out

    return build_once(tmp_path_factory, "fuzz-seeds", build)[1]


def _random_inputs(model, samples: int = 32):
    """Calibration inputs of the model's shape: token ids for an Embedding, else floats."""
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (samples, *model.input_shape[1:])
    if model.inputs[0].dtype.is_integer:
        vocabulary = next(int(v.input_dim) for v in model.layers if hasattr(v, "input_dim"))
        return rng.integers(0, vocabulary, size=shape).astype(np.int32)
    return rng.standard_normal(shape).astype(np.float32)
