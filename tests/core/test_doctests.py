"""The runnable examples in the docstrings of the TF-free modules are tests too."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

# Packages whose modules import no TensorFlow (the contracts in pyproject.toml say so for
# core and runtime); the front modules listed import none at module level either.
TF_FREE = ["edgesmith.core", "edgesmith.runtime"]
FRONT = [
    "edgesmith.cache",
    "edgesmith.plan",
    "edgesmith.report",
    "edgesmith.report_model",
    "edgesmith.report_stats",
    "edgesmith.report_recommend",
    "edgesmith.report_compare",
    "edgesmith.devices.device_spec",
    "edgesmith.devices.ssh",
    "edgesmith.compress.finetune",
    "edgesmith.compress.recipe",
    "edgesmith.convert.config",
]


def _modules() -> list[str]:
    names = list(FRONT)
    for package in TF_FREE:
        names.append(package)
        module = importlib.import_module(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
