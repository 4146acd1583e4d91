"""open_runner and Runner: the interface the converter's parity checks use, on every kind of model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgesmith.core.errors import BackendUnavailableError, ConfigError, UnknownNameError
from edgesmith.runtime.runner_base import Runner, TensorSpec, dequantize, quantize
from edgesmith.runtime.runners import open_runner


def _agree(probs: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(probs.argmax(1) == reference.argmax(1)))


def test_interface_is_what_the_converter_relies_on(digits_models):
    fields = [(f.name, f.type) for f in dataclasses.fields(TensorSpec)]
    assert fields == [
        ("name", "str"),
        ("shape", "tuple[int, ...]"),
        ("dtype", "str"),
        ("scale", "float | None"),
        ("zero_point", "int | None"),
    ]
    with open_runner(digits_models["int8"], backend="litert", threads=1) as runner:
        assert isinstance(runner, Runner) and runner.backend == "litert"
        assert runner.fully_accelerated is None
        (spec,) = runner.inputs
        assert spec == TensorSpec(spec.name, (1, 8, 8, 1), "int8", spec.scale, -128)
        assert runner.outputs[0].shape == (1, 10) and runner.outputs[0].dtype == "int8"
        raw = runner.run([np.zeros((1, 8, 8, 1), np.int8)])
        assert raw[0].dtype == np.int8 and raw[0].shape == (1, 10)
        with pytest.raises(ConfigError, match=r"use runner\.predict"):
            runner.run([np.zeros((1, 8, 8, 1), np.float32)])
        with pytest.raises(ConfigError, match=r"shape \(1, 8, 8, 1\)"):
            runner.run([np.zeros((2, 8, 8, 1), np.int8)])


@pytest.mark.parametrize(("key", "backend"), [("f32", "litert"), ("onnx", "onnxruntime")])
def test_float_models_match_keras(digits_models, key, backend):
    x, expected = digits_models["x"], digits_models["keras_probs"]
    with open_runner(digits_models[key], backend=backend, threads=1) as runner:
        probs = runner.predict(x)
    assert probs.dtype == np.float32 and probs.shape == expected.shape
    np.testing.assert_allclose(probs, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("key", "dtype", "atol"),
    [("f16", "float32", 2e-3), ("f16in", "float16", 5e-3), ("f16in_onnx", "float16", 5e-3)],
)
def test_float16_weights_and_float16_inputs(digits_models, key, dtype, atol):
    x, expected = digits_models["x"], digits_models["keras_probs"]
    with open_runner(digits_models[key], threads=1) as runner:
        assert runner.inputs[0].dtype == dtype
        probs = runner.predict(x)
    np.testing.assert_allclose(probs, expected, atol=atol)
    assert _agree(probs, expected) >= 0.99


@pytest.mark.parametrize("key", ["int8", "uint8", "int16"])
def test_quantized_inputs_and_outputs_are_scaled(digits_models, key):
    """predict() quantizes with the input's scale / zero point and dequantizes the output."""
    x, y, expected = digits_models["x"], digits_models["y"], digits_models["keras_probs"]
    with open_runner(digits_models[key], backend="litert", threads=1) as runner:
        spec, out = runner.inputs[0], runner.outputs[0]
        assert spec.dtype == key and spec.quantized and out.quantized
        probs = runner.predict(x)
        # The same thing by hand through run(): raw integers in, raw integers out.
        raw = runner.run([quantize(x[:1], spec)])[0]
    np.testing.assert_allclose(dequantize(raw, out), probs[:1])
    assert probs.dtype == np.float32 and np.all(probs >= -0.01) and np.all(probs <= 1.01)
    assert _agree(probs, expected) >= 0.95
    keras_accuracy = np.mean(expected.argmax(1) == y)
    assert abs(np.mean(probs.argmax(1) == y) - keras_accuracy) <= 0.03


def test_quantize_rounds_and_clips():
    spec = TensorSpec("x", (4,), "uint8", 0.5, 10)
    assert quantize(np.array([0.0, 0.26, -10.0, 500.0]), spec).tolist() == [10, 11, 0, 255]
    assert dequantize(np.array([10, 12], np.uint8), spec).tolist() == [0.0, 1.0]
    plain = TensorSpec("x", (2,), "float16", None, None)
    assert quantize(np.array([0.5, 1.5]), plain).dtype == np.float16


def test_litert_and_onnxruntime_agree_on_the_same_model(digits_models):
    x = digits_models["x"][:200]
    with open_runner(digits_models["f32"]) as tflite, open_runner(digits_models["onnx"]) as onnx:
        assert (tflite.backend, onnx.backend) == ("litert", "onnxruntime")
        np.testing.assert_allclose(tflite.predict(x), onnx.predict(x), atol=1e-5)


def test_several_inputs_and_outputs(shape_models):
    keras_model = shape_models["multi_keras"]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1, 4)).astype(np.float32), rng.normal(size=(1, 3)).astype(np.float32)
    expected = [np.asarray(t) for t in keras_model([a, b])]
    with open_runner(shape_models["multi"], threads=1) as runner:
        names = [s.name for s in runner.inputs]
        feeds = [a if "_a:" in name else b for name in names]
        outs = runner.run(feeds)
    assert len(outs) == 2 and sorted(o.shape for o in outs) == [(1, 2), (1, 5)]
    for want in expected:
        (got,) = [o for o in outs if o.shape == want.shape]
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_dynamic_dimensions_default_to_1_or_take_a_shape(shape_models):
    keras_model = shape_models["dynamic_keras"]
    with open_runner(shape_models["dynamic"], threads=1) as runner:
        assert runner.inputs[0].shape == (1, 1, 10)
    frames = np.random.default_rng(1).normal(size=(3, 49, 10)).astype(np.float32)
    name = "serving_default_frames:0"
    with open_runner(shape_models["dynamic"], threads=1, shapes={name: (1, 49, 10)}) as runner:
        assert runner.inputs[0].shape == (1, 49, 10)
        np.testing.assert_allclose(
            runner.predict(frames), keras_model.predict(frames, verbose=0), atol=1e-5
        )
        runner.resize({name: (1, 7, 10)})
        assert runner.inputs[0].shape == (1, 7, 10)
        assert runner.predict(frames[:, :7]).shape == (3, 3)
    with pytest.raises(ConfigError, match=r"fits \(\?, \?, 10\)"):
        open_runner(shape_models["dynamic"], shapes={name: (1, 49, 11)})
    with pytest.raises(ConfigError, match="unknown input"):
        open_runner(shape_models["dynamic"], shapes={"nope": (1, 2, 10)})


def test_state_inputs_get_zeros(shape_models):
    from edgesmith.runtime.runner_base import is_state_input

    keras_model = shape_models["state_keras"]
    x = np.random.default_rng(2).normal(size=(5, 10)).astype(np.float32)
    with open_runner(shape_models["state"], threads=1) as runner:
        names = [s.name for s in runner.inputs]
        assert [is_state_input(n) for n in names] == ["state" in n for n in names]
        data = names.index("serving_default_x:0")
        xs = [x if i == data else None for i in range(len(names))]
        probs = runner.predict_inputs(xs)
    # predict() returns the file's first output, which the converter made the new state.
    outs = [keras_model([s[None], np.zeros((1, 16), np.float32)]) for s in x]
    (first,) = [i for i, o in enumerate(outs[0]) if o.shape[-1] == probs.shape[-1]]
    np.testing.assert_allclose(probs, np.concatenate([o[first] for o in outs]), atol=1e-5)


def test_fused_lstm_state_is_reset_between_samples(zoo_tflite):
    """A converted LSTM keeps its state in variable tensors; predict() must not leak it."""
    model = zoo_tflite["lstm"]
    with np.load(model["npz"]) as data:
        x, y = data["x"], data["y"]
    with open_runner(model["tflite"], threads=1) as runner:
        assert runner.info.variable_tensors == 2
        first = runner.predict(x[:20])
        again = runner.predict(x[:20])
        accuracy = np.mean(runner.predict(x).argmax(1) == y)
    np.testing.assert_array_equal(first, again)
    assert abs(accuracy - model["keras_accuracy"]) <= 0.01
    with open_runner(model["tflite"], threads=1, keep_state=True) as streaming:
        assert not np.allclose(streaming.predict(x[:20]), first, atol=1e-3)


def test_open_runner_errors_say_what_to_do(digits_models):
    with pytest.raises(UnknownNameError, match="did you mean 'litert'"):
        open_runner(digits_models["f32"], backend="litrt")
    with pytest.raises(ConfigError, match="runs tflite files"):
        open_runner(digits_models["f32"], backend="onnxruntime")
    with pytest.raises(ConfigError, match="open_runner option"):
        open_runner(digits_models["f32"], xnnpak=False)
    with pytest.raises(ConfigError, match="external:PATH"):
        open_runner(digits_models["f32"], backend="external")


def test_a_missing_backend_says_how_to_get_it(digits_models, monkeypatch):
    import edgesmith.runtime.backends as backends

    real = backends.has_module
    monkeypatch.setattr(
        backends, "has_module", lambda name: name != "tflite_runtime" and real(name)
    )
    with pytest.raises(BackendUnavailableError, match="pip install tflite-runtime"):
        open_runner(digits_models["f32"], backend="tflite-runtime")
    monkeypatch.setattr(backends, "has_module", lambda name: False)
    with pytest.raises(BackendUnavailableError, match="pip install ai-edge-litert"):
        open_runner(digits_models["f32"])


def test_no_xnnpack_gives_the_same_numbers(digits_models):
    x = digits_models["x"][:50]
    with (
        open_runner(digits_models["f32"], xnnpack=False) as plain,
        open_runner(digits_models["f32"]) as fast,
    ):
        assert plain.details["xnnpack"] is False and fast.details["xnnpack"] is True
        np.testing.assert_allclose(plain.predict(x), fast.predict(x), atol=1e-5)
