"""litert-gpu on SwiftShader (a software Vulkan device) agrees with litert on the zoo models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesmith.runtime.vulkan import swiftshader_icd
from tests.runtime.conftest import edgesmith

needs_swiftshader = pytest.mark.skipif(
    swiftshader_icd() is None,
    reason="SwiftShader's Vulkan ICD (/usr/lib/chromium/vk_swiftshader_icd.json) is missing: "
    "apt-get install chromium (make test installs it where apt-get works)",
)


@needs_swiftshader
@pytest.mark.parametrize("family", ["cnn", "lstm-unrolled", "transformer"])
def test_zoo_models_on_gpu_match_cpu(family, zoo_tflite, tmp_path):
    model = zoo_tflite[family]
    out = tmp_path / "gpu.json"
    args = ["bench", str(model["tflite"]), "--backend", "litert,litert-gpu", "--swiftshader"]
    result = edgesmith(*args, "--eval", str(model["npz"]), "--runs", "20", "--json", str(out))
    assert result.returncode == 0, result.stderr
    cpu, gpu = json.loads(out.read_text())
    assert (cpu["backend"], gpu["backend"]) == ("litert", "litert-gpu")
    assert gpu["error"] is None and isinstance(gpu["fully_accelerated"], bool)
    # The GPU computes in float16 by default: accuracy on the test split within 2 points.
    assert abs(gpu["accuracy"] - cpu["accuracy"]) <= 0.02
    assert abs(cpu["accuracy"] - model["keras_accuracy"]) <= 0.01
    # Latency on SwiftShader is CPU time, and says so wherever it is shown.
    runtime = gpu["environment"]["runtime"]
    assert runtime["device_kind"] == "software" and "SwiftShader" in runtime["device"]
    assert any("not GPU latency" in note for note in gpu["notes"])
    assert "software Vulkan" in result.stdout


@needs_swiftshader
def test_gpu_outputs_match_cpu_within_tolerance(zoo_tflite, monkeypatch):
    from edgesmith.runtime.runners import open_runner

    # swiftshader=True sets the Vulkan variables in this process; put them back afterwards.
    for name in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)

    model = zoo_tflite["cnn"]
    with np.load(model["npz"]) as data:
        x = data["x"][:64]
    with open_runner(model["tflite"], backend="litert", threads=1) as cpu:
        expected = cpu.predict(x)
    with open_runner(model["tflite"], backend="litert-gpu", swiftshader=True) as gpu:
        assert gpu.details["device_kind"] == "software"
        got = gpu.predict(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-2)
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.95
    with open_runner(model["tflite"], backend="litert-gpu", swiftshader=True, gpu_fp32=True) as gpu:
        np.testing.assert_allclose(gpu.predict(x), expected, atol=1e-4)


@needs_swiftshader
def test_fused_lstm_is_refused_on_gpu_with_the_reason(zoo_tflite, tmp_path):
    """LiteRT's CompiledModel cannot load variable tensors: one clear line, litert still runs."""
    model = zoo_tflite["lstm"]
    out = tmp_path / "lstm.json"
    args = ["bench", str(model["tflite"]), "-b", "litert", "-b", "litert-gpu", "--swiftshader"]
    result = edgesmith(*args, "--eval", str(model["npz"]), "--runs", "5", "--json", str(out))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "variable tensor" in errors[0] and "--backend litert" in errors[0]
    cpu, gpu = json.loads(out.read_text())
    assert cpu["error"] is None and abs(cpu["accuracy"] - model["keras_accuracy"]) <= 0.01
    assert gpu["latency_ms"] is None and "variable tensor" in gpu["error"]
    # Under auto the same refusal is a skip, not a failure.
    auto = edgesmith("bench", str(model["tflite"]), "--swiftshader", "--runs", "5")
    assert auto.returncode == 0, auto.stderr
    assert "skipped litert-gpu" in auto.stderr and "variable tensor" in auto.stderr


def test_gpu_without_vulkan_says_what_is_missing(digits_models, monkeypatch):
    """With no Vulkan driver in sight, litert-gpu is one clear line and litert still runs."""
    from edgesmith.runtime.bench import bench_file

    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    monkeypatch.setenv("VK_DRIVER_FILES", "/nonexistent/icd.json")
    records = bench_file(digits_models["f32"], ["litert-gpu", "litert"], runs=5, warmup=1)
    gpu, cpu = records
    assert "Vulkan" in gpu.error and "--swiftshader" in gpu.error
    assert cpu.error is None and cpu.latency_ms["p50"] > 0
