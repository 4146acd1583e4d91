"""Tiny models that the runtime tests build for themselves (TensorFlow is used here only).

Each builder writes files into a folder and returns their paths; the Keras reference
predictions travel with them so that tests compare runtimes against TensorFlow's own output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _tf():
    from edgesmith.zoo.tfkeras import keras, tf

    return tf(), keras()


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as (N, 8, 8, 1) floats in [0, 1] and integer labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    return x, data.target.astype(np.int64)


def _write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def build_digits_models(folder: Path) -> dict[str, object]:
    """A small trained CNN on the digits as float32, float16-weight, int8, uint8 and int16x8
    .tflite files, a float32 .onnx and float16-input .tflite / .onnx files."""
    tf, keras = _tf()
    keras.utils.set_random_seed(0)
    x, y = digits()
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    probs = model.predict(x, verbose=0)
    out: dict[str, object] = {"x": x, "y": y, "keras_probs": probs}

    def converter():
        return tf.lite.TFLiteConverter.from_keras_model(model)

    def representative():
        for sample in x[:100]:
            yield [sample[None]]

    out["f32"] = _write(folder / "digits_f32.tflite", converter().convert())
    conv = converter()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    out["f16"] = _write(folder / "digits_f16.tflite", conv.convert())
    for name, io_type, ops in (
        ("int8", tf.int8, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]),
        ("uint8", tf.uint8, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]),
        (
            "int16",
            tf.int16,
            [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8],
        ),
    ):
        conv = converter()
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = ops
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
        out[name] = _write(folder / f"digits_{name}.tflite", conv.convert())

    # float16 inputs: a signature that takes float16 and casts before the float32 model.
    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float16, name="image16")])
    def half(image16):
        return model(tf.cast(image16, tf.float32))

    conv = tf.lite.TFLiteConverter.from_concrete_functions([half.get_concrete_function()], model)
    out["f16in"] = _write(folder / "digits_f16in.tflite", conv.convert())

    import tf2onnx

    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(
        model, input_signature=spec, opset=13, output_path=str(folder / "digits.onnx")
    )
    out["onnx"] = folder / "digits.onnx"
    tf2onnx.convert.from_function(
        half, input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float16, name="image16")],
        opset=13, output_path=str(folder / "digits_f16in.onnx"),
    )  # fmt: skip
    out["f16in_onnx"] = folder / "digits_f16in.onnx"
    np.savez_compressed(
        folder / "digits.npz", x=x, y=y, model=np.asarray("digits-cnn"), split=np.asarray("all")
    )
    out["npz"] = folder / "digits.npz"
    return out


def build_shape_models(folder: Path) -> dict[str, object]:
    """Models with several inputs and outputs, a dynamic sequence length, and a state input."""
    tf, keras = _tf()
    keras.utils.set_random_seed(1)
    out: dict[str, object] = {}

    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    multi = keras.Model(
        [a, b], [keras.layers.Dense(2, name="sum")(joined), keras.layers.Dense(5, name="five")(b)]
    )
    out["multi_keras"] = multi
    out["multi"] = _write(
        folder / "multi_io.tflite", tf.lite.TFLiteConverter.from_keras_model(multi).convert()
    )

    seq = keras.Sequential(
        [keras.layers.Input((None, 10), name="frames"), keras.layers.Dense(6, activation="relu"),
         keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3, activation="softmax")]
    )  # fmt: skip
    out["dynamic_keras"] = seq
    out["dynamic"] = _write(
        folder / "dynamic.tflite", tf.lite.TFLiteConverter.from_keras_model(seq).convert()
    )

    x = keras.Input((10,), name="x", batch_size=1)
    state = keras.Input((16,), name="state", batch_size=1)
    new_state = keras.layers.Dense(16, activation="tanh", name="new_state")(
        keras.layers.Concatenate()([x, state])
    )
    logits = keras.layers.Dense(4, activation="softmax", name="probs")(new_state)
    step = keras.Model([x, state], [logits, new_state])
    out["state_keras"] = step
    out["state"] = _write(
        folder / "state.tflite", tf.lite.TFLiteConverter.from_keras_model(step).convert()
    )
    return out
