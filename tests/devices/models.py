"""A tiny ONNX classifier and its eval set, made with the onnx helper (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def linear_classifier(folder: Path, *, seed: int = 0, samples: int = 120) -> tuple[Path, Path]:
    """``model.onnx`` (softmax(x @ W), x of shape [1, 8]) and ``eval.npz`` whose labels the
    model gets partly wrong (noise is added to the labelling scores), so accuracy is not 1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(8, 3)).astype(np.float32)
    x = rng.normal(size=(samples, 8)).astype(np.float32)
    y = np.argmax(x @ weights + rng.normal(scale=1.5, size=(samples, 3)), axis=1)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["scores"]),
            helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "linear.onnx"
    path.write_bytes(model.SerializeToString())
    evalset = folder / "eval.npz"
    np.savez(evalset, x=x, y=y.astype(np.int64))
    return path, evalset
