"""keras.applications models, as users bring them (Keras 3 .keras files with their data),
through every technique and format, each stage a separate `edgesmith` command as a user runs it.

Minutes per model: run with ``-m heavy``. benchmarks/user_models.py takes MobileNetV3Small
through every stage on MNIST as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

APPLICATIONS = ("MobileNetV2", "MobileNetV3Small", "EfficientNetB0")
EDGESMITH = str(Path(sys.executable).with_name("edgesmith"))
RECIPES = {
    "prune": "prune:sparsity=0.5,epochs=1",
    "cluster": "cluster:clusters=16,epochs=1",
    "qat": "qat:epochs=1,calibration_samples=32",
}
TARGETS = [("tflite", "none"), ("tflite", "int8"), ("onnx", "none"), ("onnx", "int8")]


def _edgesmith(*argv: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([EDGESMITH, *argv], capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"edgesmith {' '.join(argv)}:\n{done.stderr[-3000:]}"


def _user_files(name: str, folder: Path) -> tuple[Path, Path]:
    """A Keras 3 ``name`` (weights=None), trained one epoch on synthetic images, and its data."""
    import keras

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(120, 32, 32, 3)).astype(np.float32)
    y = (x[..., 0].mean(axis=(1, 2)) > 127.5).astype(np.int64)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:80], y[:80], epochs=1, batch_size=16, verbose=0)
    model_file, data_file = folder / f"{name}.keras", folder / f"{name}.npz"
    model.save(model_file)
    np.savez(data_file, x_train=x[:80], y_train=y[:80], x_val=x[80:100], y_val=y[80:100],
             x_test=x[100:], y_test=y[100:])  # fmt: skip
    return model_file, data_file


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.heavy) for n in APPLICATIONS])
def test_keras_applications_go_through_every_technique_and_format(name, tmp_path):
    model, data = _user_files(name, tmp_path)
    sources = {"as is": model}
    for step, recipe in RECIPES.items():
        out = tmp_path / step
        _edgesmith(
            "compress", str(model), "--data", str(data), "--recipe", recipe, "--out", str(out)
        )
        card = json.loads((out / "card.json").read_text())
        assert card["steps"][-1]["plan"]["targets"], f"{step} compressed no layer"
        if step != "qat":  # a QAT model stays tf-keras; the others come back as Keras 3
            assert (out / "keras3_model.keras").is_file()
        sources[step] = out
    for source_name, source in sources.items():
        # The model as it came in goes to every format; each compressed one to int8 TFLite.
        targets = TARGETS if source_name == "as is" else [("tflite", "int8")]
        for fmt, quant in targets:
            out = tmp_path / f"{source_name.replace(' ', '-')}-{quant}.{fmt}"
            _edgesmith(
                "convert", str(source), "--data", str(data), "--format", fmt, "--quant", quant,
                "--calibration-samples", "32", "--out", str(out),
            )  # fmt: skip
            record = json.loads(Path(f"{out}.json").read_text())
            assert not record.get("error") and record["parity"]["ok"], record.get("parity")
            if source_name == "qat":
                from edgesmith.convert.tflite import int8_report

                report = int8_report(out.read_bytes())
                assert report["float_ops"] == [] and report["output_type"] == "INT8"
