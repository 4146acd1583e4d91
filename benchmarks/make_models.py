"""Make the model files the benchmarks run: zoo models as .tflite (float32, int8), .onnx, eval sets.

It trains the zoo models that are not stored yet (``edgesmith zoo train``'s store and
defaults), converts each at batch 1, as on a device, with ``edgesmith convert``'s own path
(``edgesmith.convert.convert_keras``: the bytes ``edgesmith convert`` writes, without its
parity check), and writes the test split with ``zoo export-eval``. Needs the full install
(TensorFlow, tf2onnx).

    python benchmarks/make_models.py --out reports/bench-models
    python benchmarks/make_models.py --out reports/bench-models cnn-digits dscnn-kws --data-dir ../shared/data

Files per model NAME:

* NAME.tflite: float32 (``--lstm fused``: an LSTM is the fused UNIDIRECTIONAL_SEQUENCE_LSTM
  op with its state in variable tensors, which the runners reset before every sample);
* NAME-int8.tflite: full int8 with int8 inputs and outputs (``--quant int8 --lstm fused``),
  calibrated on training samples; not for token-id models (the tables in README.md have
  none; ``edgesmith convert --quant int8`` makes one with an int32 input);
* NAME-unrolled.tflite for LSTMs: float32, unrolled (``--lstm unroll``): no variable
  tensors, so LiteRT's GPU path can load it;
* NAME.onnx: float32, opset 13 (``--format onnx --opset 13``);
* NAME.npz: the test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_MODELS = ("cnn-digits", "lstm-digits", "transformer-digits")
ONNX_OPSET = 13  # the opset of the files measured in README.md


def files(name: str, *, lstm: bool, tokens: bool) -> dict[str, dict[str, Any]]:
    """File name -> the ConversionConfig fields it is converted with."""
    result: dict[str, dict[str, Any]] = {f"{name}.tflite": {"lstm": "fused"}}
    if not tokens:
        result[f"{name}-int8.tflite"] = {"quant": "int8", "lstm": "fused"}
    if lstm:
        result[f"{name}-unrolled.tflite"] = {"lstm": "unroll"}
    result[f"{name}.onnx"] = {"format": "onnx", "opset": ONNX_OPSET}
    return result


def convert(name: str, out: Path, *, store: str | None, data_dir: str | None) -> list[Path]:
    from edgesmith.convert import convert_keras
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.zoo.evaluate import data_for, export_eval
    from edgesmith.zoo.store import ModelStore
    from edgesmith.zoo.train import train_zoo_model

    store = ModelStore(store)
    train_zoo_model(name, data_dir=data_dir, store=store)
    stored = store.load(name)
    model = stored.model
    x_train, _ = data_for(stored, data_dir=data_dir).split("train")
    lstm = any(type(layer).__name__ == "LSTM" for layer in model.layers)
    written = []
    for file_name, fields in files(name, lstm=lstm, tokens=stored.card.layout == "tokens").items():
        path = out / file_name
        path.write_bytes(convert_keras(model, ConversionConfig(**fields), x_train))
        written.append(path)
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
