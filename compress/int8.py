"""The QAT check: convert a (QAT) Keras model to full-int8 TFLite and run it with LiteRT.

This is the acceptance check of quantization-aware training, not the project's
converter (``edgesmith convert`` does that, with parity checks): it calls
``tf.lite.TFLiteConverter`` directly on a batch-1 concrete function (LSTMs need a static
batch), keeps the learned fake-quant ranges, calibrates what QAT leaves open from
training samples, and requires every operator to be an int8 builtin.

Example:
    >>> from edgesmith.compress.int8 import to_int8_tflite, tflite_predict  # doctest: +SKIP
    >>> blob = to_int8_tflite(qat_model, data.x_train[:200])  # doctest: +SKIP
    >>> tflite_predict(blob, data.x_test).shape  # doctest: +SKIP
    (270, 10)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.core.errors import ModelFileError


def to_int8_tflite(model: Any, x_calibration: np.ndarray, *, samples: int = 200) -> bytes:
    """Full-integer TFLite flatbuffer of ``model``: int8 weights, activations and output.

    A float input (images, MFCC frames) becomes an int8 input; token ids stay as they are.
    """
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    spec = t.TensorSpec([1, *model.input_shape[1:]], model.inputs[0].dtype)
    function = t.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    converter = t.lite.TFLiteConverter.from_concrete_functions([function], model)
    converter.optimizations = [t.lite.Optimize.DEFAULT]
    calibration = np.asarray(x_calibration[:samples], dtype=np.float32)

    def representative() -> Any:
        for sample in calibration:
            yield [sample[np.newaxis]]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not _token_input(model):
        converter.inference_input_type = t.int8
    converter.inference_output_type = t.int8
    import warnings

    try:
        with warnings.catch_warnings():  # "statistics for quantized inputs" (none needed)
            warnings.simplefilter("ignore")
            return bytes(converter.convert())
    except Exception as exc:  # the converter raises several types with long MLIR dumps
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"full-int8 TFLite conversion failed ({first})",
            expected="a model whose every op has an int8 TFLite kernel",
            fix="exclude the layer it names from qat, or convert with float fallback",
        ) from None


def tflite_predict(blob: bytes, x: np.ndarray) -> np.ndarray:
    """Outputs of a TFLite model for ``x``, dequantized to float, one sample at a time."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=blob, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    results = []
    for sample in np.asarray(x):
        value = sample[np.newaxis]
        if inp["dtype"] == np.int8:
            value = np.clip(np.round(value / in_scale + in_zero), -128, 127)
        interpreter.set_tensor(inp["index"], value.astype(inp["dtype"]))
        interpreter.invoke()
        output = interpreter.get_tensor(out["index"])[0].astype(np.float32)
        if out["dtype"] == np.int8:
            output = (output - out_zero) * out_scale
        results.append(output)
    return np.stack(results)


def int8_report(blob: bytes) -> dict[str, Any]:
    """Operators and tensor types of a TFLite flatbuffer, across all subgraphs.

    ``float_ops`` lists operators that read or write float32 activations (constants
    excluded); a full-int8 model has none except a ``CAST`` of float token ids.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(blob, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    ops: set[str] = set()
    float_ops: set[str] = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            code = codes[op.OpcodeIndex()]
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            ops.add(name)
            tensors = [*op.InputsAsNumpy().tolist(), *op.OutputsAsNumpy().tolist()]
            for index in tensors:
                if index < 0:
                    continue
                tensor = graph.Tensors(index)
                constant = model.Buffers(tensor.Buffer()).DataLength() > 0
                if tensor.Type() == schema.TensorType.FLOAT32 and not constant:
                    float_ops.add(name)
    main = model.Subgraphs(0)
    return {
        "ops": sorted(ops),
        "float_ops": sorted(float_ops),
        "input_type": type_names[main.Tensors(main.Inputs(0)).Type()],
        "output_type": type_names[main.Tensors(main.Outputs(0)).Type()],
        "size_bytes": len(blob),
    }


def _token_input(model: Any) -> bool:
    """Whether the model's input feeds an Embedding (token ids, not a signal)."""
    from edgesmith.compress.layers import layer_class

    first = [node.outbound_layer for node in model.layers[0]._outbound_nodes]
    while first and layer_class(first[0]) == "QuantizeLayer":
        first = [node.outbound_layer for node in first[0]._outbound_nodes]
    return any(layer_class(layer) == "Embedding" for layer in first)
