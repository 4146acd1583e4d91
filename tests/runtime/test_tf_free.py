"""The runtime works where TensorFlow is not installed: blocked, a base install, a Pi setup."""

from __future__ import annotations

import json
import sys

import pytest

from tests.runtime.conftest import edgesmith, run

RUNTIME_MODULES = [
    "edgesmith.runtime", "edgesmith.runtime.bench", "edgesmith.runtime.runners",
    "edgesmith.runtime.runner_base", "edgesmith.runtime.litert_interpreter",
    "edgesmith.runtime.litert_compiled", "edgesmith.runtime.onnx_runner",
    "edgesmith.runtime.evalset", "edgesmith.runtime.timing", "edgesmith.runtime.backend_plan",
    "edgesmith.runtime.modelfile", "edgesmith.runtime.tflite_flatbuffer",
    "edgesmith.runtime.tflite_schema", "edgesmith.runtime.backends", "edgesmith.runtime.vulkan",
    "edgesmith.runtime.worker", "edgesmith.runtime.sysinfo", "edgesmith.core.native_log",
    "edgesmith.commands.bench",
]  # fmt: skip


def test_blocker_really_blocks(no_tensorflow_env):
    result = run([sys.executable, "-c", "import tensorflow"], env=no_tensorflow_env)
    assert result.returncode != 0 and "blocked" in result.stderr


def test_importing_the_runtime_imports_no_tensorflow(no_tensorflow_env):
    code = (
        "import importlib, sys\n"
        f"for name in {RUNTIME_MODULES!r}: importlib.import_module(name)\n"
        "import edgesmith.cli as cli; cli.build_parser()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'))\n"
        "assert not heavy, heavy\n"
    )
    result = run([sys.executable, "-c", code], env=no_tensorflow_env)
    assert result.returncode == 0, result.stderr


def test_bench_runs_with_tensorflow_blocked(digits_models, no_tensorflow_env, tmp_path):
    """The whole command, worker processes included, with any TensorFlow import failing."""
    for key, backend in (("int8", "litert"), ("onnx", "onnxruntime")):
        out = tmp_path / f"{key}.json"
        args = [
            "bench",
            str(digits_models[key]),
            "-b",
            backend,
            "--eval",
            str(digits_models["npz"]),
        ]
        result = edgesmith(*args, "--runs", "10", "--json", str(out), env=no_tensorflow_env)
        assert result.returncode == 0, result.stderr
        record = json.loads(out.read_text())
        assert record["backend"] == backend and record["accuracy"] > 0.8
        assert "tensorflow" not in record["environment"]["libraries"]


@pytest.mark.venv
def test_base_install_runs_bench(fresh_venvs, digits_models, tmp_path):
    """`pip install .` with no extras: no TensorFlow, and bench runs .tflite and .onnx."""
    python = fresh_venvs["base"] / "bin" / "python"
    assert run([str(python), "-c", "import tensorflow"]).returncode != 0
    command = fresh_venvs["base"] / "bin" / "edgesmith"
    out = tmp_path / "base.json"
    result = run([str(command), "bench", str(digits_models["f32"]), "-b", "litert",
                  "--eval", str(digits_models["npz"]), "--runs", "10", "--json", str(out)])  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["backend"] == "litert" and record["accuracy"] > 0.9
    result = run([str(command), "bench", str(digits_models["onnx"]), "--runs", "10", "--json", "-"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "onnxruntime"


@pytest.mark.venv
def test_raspberry_pi_setup_runs_bench_on_tflite_runtime(fresh_venvs, digits_models, tmp_path):
    """numpy<2 + tflite-runtime 2.14.0 and no ai-edge-litert: the tflite-runtime backend
    gives the same accuracy as litert here, and litert is one clear line."""
    python = fresh_venvs["pi"] / "bin" / "python"
    versions = run(
        [
            str(python),
            "-c",
            "import numpy, tflite_runtime; print(numpy.__version__, tflite_runtime.__version__)",
        ]
    )
    assert versions.returncode == 0, versions.stderr
    numpy_version, tflite_version = versions.stdout.split()
    assert numpy_version.startswith("1.") and tflite_version == "2.14.0"
    out = tmp_path / "pi.json"
    args = [
        "bench",
        str(digits_models["int8"]),
        "--eval",
        str(digits_models["npz"]),
        "--runs",
        "10",
    ]
    result = edgesmith(*args, "--json", str(out), python=python)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())  # auto: tflite-runtime is all there is
    assert record["backend"] == "tflite-runtime"
    assert record["environment"]["libraries"]["tflite-runtime"] == "2.14.0"
    here = edgesmith(*args, "-b", "litert", "--json", "-")
    assert abs(record["accuracy"] - json.loads(here.stdout)["accuracy"]) <= 0.005
    litert = edgesmith(*args, "-b", "litert", "-b", "tflite-runtime", python=python)
    assert litert.returncode == 2
    errors = [line for line in litert.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install ai-edge-litert" in errors[0]
    assert "tflite-runtime" in litert.stdout  # the other backend still ran
