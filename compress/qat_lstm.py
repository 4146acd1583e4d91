"""A quantization-aware LSTM whose every int8 tensor is simulated during training.

Fake-quantizing only the kernels of a Keras LSTM leaves the gates, the cell state and the
hidden state float while training, but a full-int8 TFLite model rounds each of them at
every time step: on lstm-kws (49 steps) that gap cost 2.3 pt. ``QuantizedLSTM``
computes the same LSTM, unrolled, from the ops TFLite keeps (fully connected, add, split,
logistic, tanh, mul) and fake-quantizes each op's output the way the int8 kernels will:

==========================  ============================================================
tensor                      range
==========================  ============================================================
kernels                     symmetric, narrow, per tensor, from the current weights
x @ W + b, h @ U, gates     moving average of the batch min/max (one range per role,
sum, f*c, i*g, c, o*tanh c  shared by all time steps, so a stacked LSTM's output sequence
                            packs without requantizing)
sigmoid, tanh outputs       fixed: TFLite's int8 LOGISTIC writes scale 1/256 zero point
                            -128, TANH scale 1/128 zero point 0
==========================  ============================================================

The converter reads these ranges from the fake-quant ops, so the int8 model computes what
QAT trained. Ranges start from a calibration pass over the float LSTM's inputs
(:func:`calibrate`); training then moves them as tfmot's moving-average quantizer does.

The layer class itself lives in :mod:`edgesmith.zoo.quantized` (a saved QAT file refers
to it, and loading must not need the QAT algorithm); this module turns a Keras LSTM into
one and calibrates it.

Example:
    >>> from edgesmith.compress.qat_lstm import quantized_twin  # doctest: +SKIP
    >>> layer = quantized_twin(keras_lstm)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError
from edgesmith.zoo.quantized import LSTM_ROLES


def check_convertible(layer: Any) -> None:
    """Refuse an LSTM this layer cannot reproduce, naming the option that stands in the way."""
    config = layer.get_config()
    problems = []
    if config.get("activation") != "tanh":
        problems.append(f"activation={config.get('activation')!r} (tanh expected)")
    if config.get("recurrent_activation") != "sigmoid":
        problems.append(
            f"recurrent_activation={config.get('recurrent_activation')!r} (sigmoid expected)"
        )
    for option in ("go_backwards", "stateful", "return_state"):
        if config.get(option):
            problems.append(f"{option}=True")
    for option in ("dropout", "recurrent_dropout"):
        if config.get(option):
            problems.append(f"{option}={config[option]} (0 expected: the QAT LSTM is unrolled)")
    if layer.input_shape[1] is None:
        problems.append("sequences of unknown length (a fixed number of steps is unrolled)")
    if problems:
        raise ConfigError(
            f"qat: LSTM {layer.name!r} has {', '.join(problems)}",
            expected="a unidirectional tanh/sigmoid LSTM over a fixed number of steps",
            fix=f"rebuild the LSTM with those defaults, or exclude='^{layer.name}$' to keep it float",
        )


def quantized_twin(layer: Any) -> Any:
    """The quantization-aware twin (a ``QuantizedLSTM``) of a built Keras LSTM, with its weights."""
    from edgesmith.zoo.quantized import quantized_lstm_class

    check_convertible(layer)
    config = layer.get_config()
    twin = quantized_lstm_class()(
        units=config["units"],
        return_sequences=config.get("return_sequences", False),
        use_bias=config.get("use_bias", True),
        name=layer.name,
    )
    twin.build(layer.input_shape)
    weights = layer.get_weights()
    twin.kernel.assign(weights[0])
    twin.recurrent_kernel.assign(weights[1])
    if twin.use_bias:
        twin.bias.assign(weights[2])
    return twin


def float_intermediates(twin: Any, inputs: np.ndarray) -> dict[str, tuple[float, float]]:
    """(min, max) of each role's tensor in the float LSTM of ``twin``'s weights over ``inputs``."""
    x = np.asarray(inputs, dtype=np.float32)
    w, uk = twin.kernel.numpy(), twin.recurrent_kernel.numpy()
    b = twin.bias.numpy() if twin.bias is not None else 0.0
    seen: dict[str, list[np.ndarray]] = {role: [] for role in LSTM_ROLES}
    h = c = None
    for step in range(x.shape[1]):
        z = x[:, step, :] @ w + b
        seen["input_proj"].append(z)
        if h is not None:
            r = h @ uk
            seen["recurrent_proj"].append(r)
            z = z + r
            seen["gates"].append(z)
        zi, zf, zg, zo = np.split(z, 4, axis=-1)
        i, f, o = (1 / (1 + np.exp(-v)) for v in (zi, zf, zo))
        ig = i * np.tanh(zg)
        seen["input_gate"].append(ig)
        if c is None:
            c = ig
        else:
            seen["forget_cell"].append(f * c)
            c = f * c + ig
            seen["cell"].append(c)
        h = o * np.tanh(c)
        seen["hidden"].append(h)
    return {
        role: (float(min(v.min() for v in values)), float(max(v.max() for v in values)))
        for role, values in seen.items()
        if values
    }


def calibrate(twin: Any, batches: list[np.ndarray]) -> None:
    """Set every activation range of ``twin`` to the mean over ``batches`` of the batch min/max."""
    per_batch = [float_intermediates(twin, batch) for batch in batches]
    for role, (low_var, high_var) in twin.ranges.items():
        lows = [r[role][0] for r in per_batch if role in r]
        highs = [r[role][1] for r in per_batch if role in r]
        if lows:
            low_var.assign(min(float(np.mean(lows)), 0.0))
            high_var.assign(max(float(np.mean(highs)), 0.0))
    twin.kernel_max.assign(float(np.abs(twin.kernel.numpy()).max()))
    twin.recurrent_kernel_max.assign(float(np.abs(twin.recurrent_kernel.numpy()).max()))
