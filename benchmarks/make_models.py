"""Make the model files the benchmarks run: zoo models as .tflite (float32, int8), .onnx, eval sets.

This is a stand-in converter for the benchmarks only (the project's own converter lives in
``edgesmith.convert``): it trains the zoo models that are not stored yet (``edgesmith zoo
train``'s store and defaults), converts each at batch 1, as on a device, and writes the
test split with ``zoo export-eval``. Needs the full install (TensorFlow, tf2onnx).

    python benchmarks/make_models.py --out reports/bench-models
    python benchmarks/make_models.py --out reports/bench-models cnn-digits dscnn-kws --data-dir ../shared/data

Files per model NAME: NAME.tflite, NAME-int8.tflite (int8 inputs and outputs), NAME.onnx,
NAME-unrolled.tflite for LSTMs (no variable tensors, so LiteRT's GPU path can load it),
and NAME.npz (the test split).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_MODELS = ("cnn-digits", "lstm-digits", "transformer-digits")


def convert(name: str, out: Path, *, store: str | None, data_dir: str | None) -> list[Path]:
    from edgesmith.zoo.evaluate import data_for, export_eval
    from edgesmith.zoo.store import ModelStore
    from edgesmith.zoo.tfkeras import keras, tf
    from edgesmith.zoo.train import train_zoo_model

    tf, keras = tf(), keras()
    store = ModelStore(store)
    train_zoo_model(name, data_dir=data_dir, store=store)
    stored = store.load(name)
    model = stored.model
    x_train, _ = data_for(stored, data_dir=data_dir).split("train")
    dtype = model.inputs[0].dtype
    written = []

    def concrete(keras_model):
        spec = tf.TensorSpec([1, *keras_model.input_shape[1:]], dtype)
        return tf.function(lambda x: keras_model(x)).get_concrete_function(spec)

    def save(path: Path, blob: bytes) -> None:
        path.write_bytes(blob)
        written.append(path)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete(model)], model)
    save(out / f"{name}.tflite", converter.convert())

    if stored.card.layout != "tokens":  # token ids are indices, not values to quantize

        def representative():
            for sample in x_train[:200]:
                yield [sample[None].astype(np.float32)]

        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete(model)], model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        save(out / f"{name}-int8.tflite", converter.convert())

    if any(isinstance(layer, keras.layers.LSTM) for layer in model.layers):

        def unrolled(layer):
            config = layer.get_config()
            if isinstance(layer, keras.layers.LSTM):
                config["unroll"] = True
            return layer.__class__.from_config(config)

        clone = keras.models.clone_model(model, clone_function=unrolled)
        clone.set_weights(model.get_weights())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete(clone)], clone)
        save(out / f"{name}-unrolled.tflite", converter.convert())

    import tf2onnx

    spec = (tf.TensorSpec([1, *model.input_shape[1:]], dtype, name="x"),)
    tf2onnx.convert.from_keras(
        model, input_signature=spec, opset=13, output_path=str(out / f"{name}.onnx")
    )
    written.append(out / f"{name}.onnx")
    export_eval(name, out=out / f"{name}.npz", data_dir=data_dir, store=store, split="test")
    written.append(out / f"{name}.npz")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS), help="zoo model names")
    parser.add_argument("--out", default="reports/bench-models", help="folder for the files")
    parser.add_argument("--store", help="model store (default: edgesmith's)")
    parser.add_argument("--data-dir", help="data folder (mnist/, fsdd/, sms-spam/)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        for path in convert(name, out, store=args.store, data_dir=args.data_dir):
            print(path)


if __name__ == "__main__":
    main()
