"""Quantization-aware GRU, SimpleRNN and Bidirectional layers: unrolled twins, calibrated.

tfmot's default 8-bit scheme has no quantize config for recurrent layers, and a recurrent
loop converted to TFLite keeps a float32 state. As :mod:`edgesmith.compress.qat_lstm` does
for a plain LSTM, each of these layers becomes a ``QuantizedRNN``
(:func:`edgesmith.zoo.quantized.quantized_rnn_class`) holding the same weights, unrolled
over the fixed time steps with every product, gate and state fake-quantized, so that the
converter emits int8 FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD ops only.

Example:
    >>> from edgesmith.compress.qat_rnn import rnn_twin  # doctest: +SKIP
    >>> twin = rnn_twin(keras_gru)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError
from edgesmith.zoo.quantized import RNN_MERGE_MODES

# Keras class -> QuantizedRNN cell kind.
CELLS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple"}
# The recurrent layers a QuantizedRNN stands in for (a plain LSTM has its QuantizedLSTM).
RNN_CLASSES = frozenset({"GRU", "SimpleRNN", "Bidirectional"})


def _problems(layer: Any) -> list[str]:
    config = layer.get_config()
    cls = type(layer).__name__
    problems = []
    if cls not in CELLS:
        return [f"a {cls} inside (LSTM, GRU or SimpleRNN expected)"]
    if config.get("activation") != "tanh":
        problems.append(f"activation={config.get('activation')!r} (tanh expected)")
    if cls != "SimpleRNN" and config.get("recurrent_activation") != "sigmoid":
        problems.append(
            f"recurrent_activation={config.get('recurrent_activation')!r} (sigmoid expected)"
        )
    if cls == "GRU" and not config.get("reset_after", True):
        problems.append("reset_after=False (the default reset_after=True expected)")
    for option in ("stateful", "return_state"):
        if config.get(option):
            problems.append(f"{option}=True")
    for option in ("dropout", "recurrent_dropout"):
        if config.get(option):
            problems.append(f"{option}={config[option]} (0 expected: the QAT layer is unrolled)")
    return problems


def check_convertible(layer: Any) -> None:
    """Refuse a recurrent layer a ``QuantizedRNN`` cannot reproduce, naming what stands in the way."""
    cls = type(layer).__name__
    if cls == "Bidirectional":
        problems = _problems(layer.forward_layer)
        if layer.merge_mode not in RNN_MERGE_MODES:
            problems.append(f"merge_mode={layer.merge_mode!r} ({', '.join(RNN_MERGE_MODES)})")
        if layer.forward_layer.go_backwards:
            problems.append("a backward layer as forward_layer")
    else:
        problems = _problems(layer)
    if layer.input_shape[1] is None:
        problems.append("sequences of unknown length (a fixed number of steps is unrolled)")
    if problems:
        raise ConfigError(
            f"qat: {cls} {layer.name!r} has {', '.join(dict.fromkeys(problems))}",
            expected="a tanh/sigmoid LSTM, GRU (reset_after=True) or tanh SimpleRNN, "
            "possibly Bidirectional, over a fixed number of steps",
            fix=f"rebuild the layer with those defaults, or exclude='^{layer.name}$' to keep it float",
        )


def rnn_twin(layer: Any) -> Any:
    """The ``QuantizedRNN`` of a built GRU, SimpleRNN, LSTM or Bidirectional, with its weights."""
    from edgesmith.zoo.quantized import quantized_rnn_class

    check_convertible(layer)
    bidirectional = type(layer).__name__ == "Bidirectional"
    inner = layer.forward_layer if bidirectional else layer
    parts = [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]
    directions = "both" if bidirectional else "backward" if inner.go_backwards else "forward"
    twin = quantized_rnn_class()(
        cell=CELLS[type(inner).__name__],
        units=inner.units,
        return_sequences=inner.return_sequences,
        use_bias=inner.use_bias,
        directions=directions,
        merge_mode=layer.merge_mode if bidirectional else "concat",
        name=layer.name,
    )
    twin.build(layer.input_shape)
    for name, part in zip(twin.direction_names, parts, strict=True):
        weights = part.get_weights()
        own = twin.params[name]
        own["kernel"].assign(weights[0])
        own["recurrent_kernel"].assign(weights[1])
        if own["bias"] is not None:
            own["bias"].assign(weights[2])
    return twin


def calibrate(twin: Any, batches: list[np.ndarray]) -> None:
    """Each range of ``twin``: the mean over ``batches`` of the float computation's batch min/max."""
    seen: dict[str, list[tuple[float, float]]] = {}
    for batch in batches:
        object.__setattr__(twin, "collecting", {})  # untracked by Keras
        try:
            twin(np.asarray(batch, dtype=np.float32), training=False)
            for role, values in twin.collecting.items():
                seen.setdefault(role, []).append(
                    (min(v[0] for v in values), max(v[1] for v in values))
                )
        finally:
            object.__setattr__(twin, "collecting", None)
    for role, (low_var, high_var) in twin.ranges.items():
        if role in seen:
            low_var.assign(min(float(np.mean([v[0] for v in seen[role]])), 0.0))
            high_var.assign(max(float(np.mean([v[1] for v in seen[role]])), 0.0))
    for own in twin.params.values():
        own["kernel_max"].assign(float(np.abs(own["kernel"].numpy()).max()))
        own["recurrent_kernel_max"].assign(float(np.abs(own["recurrent_kernel"].numpy()).max()))
