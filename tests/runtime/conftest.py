"""Fixtures of the runtime tests: models they build themselves, a test delegate, fresh venvs.

TensorFlow is used here (and only here) to make the .tflite / .onnx files; the runtime
under test never imports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAMILY_MODELS, REPO
from tests.tiny_models import build_once

# Everything a fresh virtual environment needs to `pip install` this checkout.
SOURCES = ("pyproject.toml", "README.md", "edgesmith", "runtime", "zoo", "convert", "compress")
PI_REQUIREMENTS = ("numpy<2", "tflite-runtime==2.14.0", "rich>=13")


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A trained digits CNN as float32 / float16 / int8 / uint8 / int16 .tflite and .onnx."""
    from tests.runtime.models import build_digits_models

    return build_once(tmp_path_factory, "digits-models", build_digits_models)[1]


@pytest.fixture(scope="session")
def shape_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Models with several inputs and outputs, a dynamic dimension and a state input."""
    from tests.runtime.models import build_shape_models

    return build_once(tmp_path_factory, "shape-models", build_shape_models)[1]


@pytest.fixture(scope="session")
def zoo_tflite(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The three trained digits zoo models as float32 .tflite (batch 1) with their eval sets.

    ``lstm`` holds the fused UNIDIRECTIONAL_SEQUENCE_LSTM conversion (its state lives in
    variable tensors); ``lstm-unrolled`` the same weights converted unrolled (stateless).
    Converted by edgesmith's own conversion path, as `edgesmith convert` does.
    """

    def build(folder: Path) -> dict[str, dict]:
        from edgesmith.convert import convert_keras
        from edgesmith.convert.config import ConversionConfig
        from edgesmith.zoo.evaluate import export_eval
        from edgesmith.zoo.store import ModelStore

        store = ModelStore(tiny_store)
        out = {}
        for family, name in [*FAMILY_MODELS.items(), ("lstm-unrolled", FAMILY_MODELS["lstm"])]:
            model = store.load(name).model
            lstm = "unroll" if family == "lstm-unrolled" else "fused"
            config = ConversionConfig(format="tflite", quant="none", lstm=lstm)
            path = folder / f"{family}.tflite"
            path.write_bytes(convert_keras(model, config))
            npz = folder / f"{name}.npz"
            if not npz.exists():
                export_eval(name, out=npz, store=store, split="test")
            with np.load(npz) as data:
                x, y = data["x"], data["y"]
            out[family] = {
                "name": name,
                "tflite": path,
                "npz": npz,
                "keras_accuracy": float(np.mean(model.predict(x, verbose=0).argmax(-1) == y)),
            }
        return out

    return build_once(tmp_path_factory, "zoo-tflite", build)[1]


@pytest.fixture(scope="session")
def test_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/runtime/test_delegate.c built as a TFLite external delegate library."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc / gcc) here to build the test delegate")
    library = tmp_path_factory.mktemp("delegate") / "libtestdelegate.so"
    source = Path(__file__).with_name("test_delegate.c")
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)], check=True
    )
    return library


@pytest.fixture
def no_tensorflow_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python processes (children included) cannot import TensorFlow."""
    folder = tmp_path / "block-tf"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import importlib.abc, sys

            BLOCKED = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "keras")

            class _Block(importlib.abc.MetaPathFinder):
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in BLOCKED:
                        raise ImportError(f"{name} is blocked: edgesmith bench must not import it")
                    return None

            sys.meta_path.insert(0, _Block())
            """
        )
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return env


def _fresh_venv(folder: Path, source: Path, steps: list[list[str]]) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    python = folder / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step in steps:
        args = [str(source) if a == "{source}" else a for a in step]
        done = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(
                f"pip install {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
            )
    return folder


@pytest.fixture(scope="session")
def fresh_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two virtual environments built from this checkout (PyPI reachable), once per session.

    ``base``: ``pip install .`` with no extras (the TF-free runtime). ``pi``: the Raspberry Pi
    setup, ``numpy<2`` and ``tflite-runtime==2.14.0`` (ai-edge-litert needs NumPy 2, so the
    package goes in with --no-deps). Both are built at once to halve the wait.
    """
    root = tmp_path_factory.mktemp("venvs")
    source = root / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        item = REPO / name
        if item.is_dir():
            shutil.copytree(item, source / name, ignore=ignore)
        else:
            shutil.copy2(item, source / name)
    plans = {
        "base": [["{source}"]],
        "pi": [list(PI_REQUIREMENTS), ["--no-deps", "{source}"]],
    }
    # pip builds the wheel inside the source folder: one copy each, so the builds do not race.
    sources = {}
    for name in plans:
        sources[name] = root / f"src-{name}"
        shutil.copytree(source, sources[name])
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(_fresh_venv, root / name, sources[name], steps)
            for name, steps in plans.items()
        }
        return {name: future.result() for name, future in futures.items()}


def run(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run a command, returning its result (text output, never raising on exit status).

    It runs outside the checkout, whose edgesmith/ folder would shadow the installed package
    for ``python -m`` (paths given to it must be absolute).
    """
    return subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout, cwd=tempfile.gettempdir()
    )


def edgesmith(*args: str, env: dict[str, str] | None = None, python: str | Path = sys.executable):
    """``python -m edgesmith ARGS`` in a child process (so a crash could not hide)."""
    return run([str(python), "-m", "edgesmith", *args], env=env)
