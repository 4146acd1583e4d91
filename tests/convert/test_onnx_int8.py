"""ONNX static int8: graphs ONNX Runtime's quantizer used to refuse, and int8 files whose
fused int8 kernels clamped their sums on x86 CPUs without VNNI (see convert/onnx_export.py,
SEVEN_BIT_WEIGHTS)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgesmith.convert import convert_keras
from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.parity import compare, predict_file

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

INT8 = ConversionConfig(format="onnx", quant="int8", calibration_samples=32)


def _simple_rnn(bidirectional: bool):
    from edgesmith.zoo.tfkeras import keras, set_seed

    set_seed(0)
    k = keras()
    inputs = k.Input((6, 3))
    # A bias: with none, the folded first step is all zero and tf2onnx drops it.
    layer = k.layers.SimpleRNN(5, bias_initializer=k.initializers.RandomNormal(seed=0))
    if bidirectional:
        layer = k.layers.Bidirectional(layer, merge_mode="sum")
    return k.Model(inputs, k.layers.Dense(3, activation="softmax")(layer(inputs)))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["simple_rnn", "bi_simple_rnn"])
def test_simple_rnn_converts_to_onnx_int8_and_agrees(bidirectional, tmp_path):
    """The first step's folded ``h0 @ U + b`` is a 1 x N Gemm bias, which ONNX Runtime's
    per-channel bias check could not handle."""
    model = _simple_rnn(bidirectional)
    x = np.random.default_rng(0).normal(size=(48, 6, 3)).astype(np.float32)
    path = tmp_path / "rnn.onnx"
    path.write_bytes(convert_keras(model, INT8, x[:32]))
    parity = compare(model.predict(x[32:], verbose=0), predict_file(path, x[32:]), INT8.tolerance)
    assert parity["ok"], parity["messages"]


def test_flatten_gemm_biases_keeps_the_values_and_other_users():
    import onnx
    from onnx import helper, numpy_helper

    from edgesmith.convert.onnx_export import flatten_gemm_biases

    bias = np.arange(3, dtype=np.float32).reshape(1, 3)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["y"]),
            helper.make_node("Add", ["y", "b"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2, 3])],
        [
            numpy_helper.from_array(np.ones((4, 3), np.float32), "w"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    proto = helper.make_model(graph)
    assert flatten_gemm_biases(proto) == 1
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    gemm, add = proto.graph.node
    assert inits[gemm.input[2]].shape == (3,)
    np.testing.assert_array_equal(inits[gemm.input[2]], bias[0])
    assert inits[add.input[1]].shape == (1, 3)  # the Add still sees the 2-D constant
    assert flatten_gemm_biases(proto) == 0
    onnx.checker.check_model(proto)


def _saturating_model():
    """Sigmoid outputs near 1 into a Dense whose weights are all at their channel's maximum:
    every pair of 8-bit products is about 2 * 255 * 127, past a 16-bit sum."""
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    inputs = k.Input((16,))
    dense = k.layers.Dense(4)
    outputs = k.layers.Activation("softmax")(dense(k.layers.Activation("sigmoid")(inputs)))
    model = k.Model(inputs, outputs)
    kernel = np.tile(np.array([0.1, 0.2, 0.3, 0.4], np.float32), (16, 1))
    dense.set_weights([kernel, np.zeros(4, np.float32)])
    return model


def test_onnx_int8_weights_leave_no_room_for_a_saturated_sum(tmp_path):
    import onnx
    from onnx import numpy_helper

    model = _saturating_model()
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, size=(64, 16)).astype(np.float32)
    blob = convert_keras(model, INT8, x[:32])
    path = tmp_path / "sat.onnx"
    path.write_bytes(blob)
    parity = compare(model.predict(x[32:], verbose=0), predict_file(path, x[32:]), INT8.tolerance)
    assert parity["ok"], parity["messages"]
    # The portable property behind it, on any CPU: no int8 weight beyond 7 bits.
    proto = onnx.load_from_string(blob)
    weights = [
        numpy_helper.to_array(init)
        for init in proto.graph.initializer
        if init.data_type == onnx.TensorProto.INT8 and len(init.dims) == 2
    ]
    assert weights and all(np.abs(w.astype(np.int32)).max() <= 64 for w in weights)


def test_unrolled_lstm_keeps_its_gates_float_unless_told(tmp_path):
    """lstm_int8="float-gates" (the default) quantizes the products, not the gates."""
    import onnx

    from edgesmith.convert.onnx_export import ONNX_FLOAT_GATE_OPS, to_onnx
    from edgesmith.zoo.tfkeras import keras, set_seed

    set_seed(0)
    k = keras()
    inputs = k.Input((5, 3))
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(k.layers.LSTM(4)(inputs)))
    x = np.random.default_rng(0).normal(size=(16, 5, 3)).astype(np.float32)

    def dequantized_activations(result):
        """The op types that read a DequantizeLinear output: they compute on int8 values."""
        graph = onnx.load_from_string(result.content).graph
        dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        return {n.op_type for n in graph.node if dq & set(n.input)}

    gates = to_onnx(model, "lstm", INT8, x_calibration=x)
    assert gates.strategy["lstm_int8"]["float_ops"] == list(ONNX_FLOAT_GATE_OPS)
    assert any("float-gates" in note for note in gates.notes)
    assert not dequantized_activations(gates) & {"Sigmoid", "Tanh"}
    assert dequantized_activations(gates) & {"MatMul", "Gemm"}
    every_op = to_onnx(model, "lstm", replace(INT8, lstm_int8="int8"), x_calibration=x)
    assert dequantized_activations(every_op) & {"Sigmoid", "Tanh"}
