"""Measurements taken from a model's weights, never copied from a config.

* ``sparsity``: share of exact zeros among the elements of every kernel (Conv, depthwise,
  Dense, Embedding, LSTM kernel and recurrent kernel), overall and per layer;
* ``params`` / ``nonzero_params``: every weight of the model (biases, normalisation,
  position tables included), without tfmot's bookkeeping variables (quantizer ranges,
  masks, steps);
* ``unique_weights``: the number of distinct values in each kernel (what clustering bounds),
  and per output channel (what tfmot's cluster-preserving QAT keeps for convolutions);
* ``m_by_n_violations``: groups of ``n`` consecutive input weights with fewer than ``m`` zeros.

Example:
    >>> import numpy as np
    >>> m_by_n_violations(np.array([[0.0], [0.0], [1.0], [2.0]]), 2, 4)
    0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.compress.layer_plan import inner_layer, kernels, model_layers

# tfmot's bookkeeping variables: not parameters of the model.
_BOOKKEEPING = ("_min", "_max", "optimizer_step", "mask", "threshold", "pruning_step")


def is_bookkeeping(variable: Any) -> bool:
    name = variable.name.split("/")[-1].split(":")[0]
    return name.endswith(_BOOKKEEPING) or name.startswith(
        ("cluster_centroids", "pulling_indices", "ori_weights_vars")
    )


def layer_kernels(model: Any) -> dict[str, list[tuple[str, np.ndarray]]]:
    """``{layer name: [(weight name, values), ...]}`` for every layer holding kernels."""
    result: dict[str, list[tuple[str, np.ndarray]]] = {}
    for layer in model_layers(model):
        found = kernels(layer)
        if found:
            result[inner_layer(layer).name] = [(n, np.asarray(v.numpy())) for n, v in found]
    return result


def weight_summary(model: Any, *, unique_in: list[str] | None = None) -> dict[str, Any]:
    """Parameters, non-zeros and sparsity measured on ``model``'s weights.

    ``unique_in`` names the layers whose distinct kernel values are counted (the
    clustered ones); ``unique_weights_max`` is None when it is empty or not given.
    """
    seen: set[int] = set()
    params = nonzero = 0
    for variable in model.weights:
        if id(variable) in seen or is_bookkeeping(variable):
            continue
        seen.add(id(variable))
        values = np.asarray(variable.numpy())
        params += values.size
        nonzero += int(np.count_nonzero(values))
    per_layer: dict[str, dict[str, Any]] = {}
    zeros = total = 0
    for name, found in layer_kernels(model).items():
        layer_zeros = sum(int(np.sum(v == 0)) for _, v in found)
        layer_total = sum(v.size for _, v in found)
        zeros += layer_zeros
        total += layer_total
        per_layer[name] = {
            "kernel_params": layer_total,
            "sparsity": round(layer_zeros / layer_total, 6) if layer_total else 0.0,
            "unique_weights": max(len(np.unique(v)) for _, v in found),
            "unique_weights_per_channel": max(unique_per_channel(v) for _, v in found),
        }
    unique = [per_layer[n]["unique_weights"] for n in (unique_in or []) if n in per_layer]
    return {
        "params": int(params),
        "nonzero_params": int(nonzero),
        "sparsity": round(zeros / total, 6) if total else 0.0,
        "kernel_params": int(total),
        "unique_weights_max": max(unique) if unique else None,
        "layers": per_layer,
    }


def unique_per_channel(kernel: np.ndarray) -> int:
    """The largest number of distinct values in one output channel (last axis) of ``kernel``."""
    kernel = np.asarray(kernel)
    columns = kernel.reshape(-1, kernel.shape[-1]) if kernel.ndim > 1 else kernel[:, None]
    return max(len(np.unique(columns[:, c])) for c in range(columns.shape[1]))


def m_by_n_groups(kernel: np.ndarray, n: int) -> np.ndarray:
    """Groups of ``n`` consecutive input weights, laid out as TFLite stores the kernel.

    A Dense/LSTM/Embedding kernel ``(in, out)`` becomes ``out`` rows of ``in``; a conv
    kernel ``(h, w, in, out)`` becomes ``out*h*w`` rows of ``in``. A trailing partial
    group (``in`` not a multiple of ``n``) is dropped.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim == 2:
        rows = kernel.T
    elif kernel.ndim == 4:
        rows = np.transpose(kernel, (3, 0, 1, 2)).reshape(-1, kernel.shape[2])
    else:
        raise ValueError(f"kernel of rank {kernel.ndim}: expected rank 2 or 4")
    full = (rows.shape[1] // n) * n
    return rows[:, :full].reshape(-1, n)


def m_by_n_violations(kernel: np.ndarray, m: int, n: int) -> int:
    """How many groups of ``n`` consecutive input weights hold fewer than ``m`` zeros."""
    groups = m_by_n_groups(kernel, n)
    return int(np.sum(np.sum(groups == 0, axis=1) < m))


def input_channels(kernel_shape: tuple[int, ...]) -> int:
    """The axis m:n structure runs along: ``in`` of ``(in, out)`` or ``(h, w, in, out)``."""
    return int(kernel_shape[0] if len(kernel_shape) == 2 else kernel_shape[2])


# Layers whose multiply-accumulates are counted; every other layer counts 0 (element-wise
# work, pooling, normalisation and lookups are small next to these and hard to compare).
_CONV = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D")
_SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
_RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def macs(model: Any) -> dict[str, Any]:
    """Multiply-accumulates of one inference of one sample, total and per layer.

    Counted from weight and output shapes (an unknown length counts as 1):
    convolutions ``output positions x kernel size`` (a separable one: both kernels),
    ``Dense`` ``positions x kernel size`` (a rank-3 input runs it at every step), recurrent
    layers ``steps x (kernel + recurrent kernel)`` (both directions of a
    ``Bidirectional``), the zoo's ``AttentionCore`` ``Lq x Lk x (query + value width)``
    (scores and the weighted sum). Biases, activations, pooling and normalisation are not
    counted.

    Example:
        >>> from edgesmith.zoo.builders import build_model  # doctest: +SKIP
        >>> macs(build_model("cnn", input_shape=(8, 8, 1), num_classes=10))["total"]  # doctest: +SKIP
    """
    per_layer: dict[str, int] = {}
    for layer in model_layers(model):
        count = layer_macs(inner_layer(layer))
        if count:
            per_layer[layer.name] = count
    return {"total": int(sum(per_layer.values())), "layers": per_layer}


def layer_macs(layer: Any) -> int:
    """Multiply-accumulates of one call of ``layer`` (see :func:`macs`); 0 when not counted."""
    cls = type(layer).__name__
    if hasattr(layer, "layers") and cls not in ("Bidirectional",):
        return macs(layer)["total"]  # a nested model
    # A list, not a dict: both directions of a Bidirectional hold a "kernel".
    sizes = [(name, int(np.prod(v.shape))) for name, v in kernels(layer)]
    total = sum(size for _, size in sizes)
    try:
        out_shape = _shape(layer.output_shape)
        in_shape = layer.input_shape
    except (AttributeError, RuntimeError):
        return 0  # a layer called more than once or never: no single shape
    if cls in _CONV or cls in _SEPARABLE:
        positions = _prod(out_shape[1:-1])
        return positions * total
    if cls == "Dense":
        return _prod(out_shape[1:-1]) * total
    if cls in _RECURRENT or cls == "Bidirectional":
        steps = _shape(in_shape)[1] if len(_shape(in_shape)) > 2 else 1
        return (steps or 1) * total
    if cls == "AttentionCore":
        query, key, value = (_shape(s) for s in in_shape)
        return (query[1] or 1) * (key[1] or 1) * (query[-1] + value[-1])
    return 0


def _shape(shape: Any) -> tuple[Any, ...]:
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])  # several outputs (return_state): the first
    return tuple(shape)


def _prod(dims: Any) -> int:
    return int(np.prod([d or 1 for d in dims])) if len(dims) else 1
