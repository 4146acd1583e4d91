"""A quantization-aware LSTM whose every int8 tensor is simulated during training.

Fake-quantizing only the kernels of a Keras LSTM leaves the gates, the cell state and the
hidden state float while training, but a full-int8 TFLite model rounds each of them at
every time step: on lstm-kws (49 steps) that gap cost 2.3 pt. :class:`QuantizedLSTM`
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

Example:
    >>> from edgesmith.compress.qat_lstm import quantized_lstm_class  # doctest: +SKIP
    >>> layer = quantized_lstm_class().from_lstm(keras_lstm)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError

# The roles whose ranges are learned, in the order their variables are created.
ROLES = ("input_proj", "recurrent_proj", "gates", "forget_cell", "input_gate", "cell", "hidden")
# tfmot's MovingAverageQuantizer decay.
_EMA_DECAY = 0.999
# TFLite int8 LOGISTIC and TANH output ranges (fixed by the kernels).
_SIGMOID_RANGE = (0.0, 255.0 / 256.0)
_TANH_RANGE = (-1.0, 127.0 / 128.0)


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


@functools.lru_cache(maxsize=1)
def quantized_lstm_class() -> type:
    """The Keras layer class (defined on first use, so importing this module needs no TF)."""
    from edgesmith.zoo.tfkeras import keras, tf

    k, t = keras(), tf()

    class QuantizedLSTM(k.layers.Layer):
        """An LSTM unrolled into int8-simulating ops (see the module docstring)."""

        def __init__(
            self, units: int, return_sequences: bool = False, use_bias: bool = True, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.units = int(units)
            self.return_sequences = bool(return_sequences)
            self.use_bias = bool(use_bias)

        @classmethod
        def from_lstm(cls, layer: Any) -> QuantizedLSTM:
            """The quantization-aware twin of a built Keras LSTM, with its weights."""
            check_convertible(layer)
            config = layer.get_config()
            twin = cls(
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

        def build(self, input_shape: Any) -> None:
            features = int(input_shape[-1])
            self.steps = int(input_shape[1])
            gates = 4 * self.units
            self.kernel = self.add_weight("kernel", shape=(features, gates))
            self.recurrent_kernel = self.add_weight("recurrent_kernel", shape=(self.units, gates))
            self.bias = (
                self.add_weight("bias", shape=(gates,), initializer="zeros")
                if self.use_bias
                else None
            )
            limit = {"trainable": False, "initializer": "zeros"}
            self.kernel_max = self.add_weight("kernel_max", shape=(), **limit)
            self.recurrent_kernel_max = self.add_weight("recurrent_kernel_max", shape=(), **limit)
            self.ranges = {
                role: (
                    self.add_weight(f"{role}_min", shape=(), **limit),
                    self.add_weight(f"{role}_max", shape=(), **limit),
                )
                for role in ROLES
            }
            super().build(input_shape)

        def _weight(self, weight: Any, limit: Any, training: bool) -> Any:
            if training:
                limit.assign(t.reduce_max(t.abs(weight)))
            m = t.maximum(limit, 1e-8)
            return t.quantization.fake_quant_with_min_max_vars(
                weight, -m, m, num_bits=8, narrow_range=True
            )

        def _act(self, x: Any, role: str, training: bool) -> Any:
            low, high = self.ranges[role]
            if training:
                # Ranges always include 0 (an int8 zero point must exist).
                low.assign(_EMA_DECAY * low + (1 - _EMA_DECAY) * t.minimum(t.reduce_min(x), 0.0))
                high.assign(_EMA_DECAY * high + (1 - _EMA_DECAY) * t.maximum(t.reduce_max(x), 0.0))
            return t.quantization.fake_quant_with_min_max_vars(x, low, high, num_bits=8)

        @staticmethod
        def _fixed(x: Any, bounds: tuple[float, float]) -> Any:
            return t.quantization.fake_quant_with_min_max_args(
                x, min=bounds[0], max=bounds[1], num_bits=8
            )

        def call(self, inputs: Any, training: Any = None) -> Any:
            training = bool(training)
            kernel = self._weight(self.kernel, self.kernel_max, training)
            recurrent = self._weight(self.recurrent_kernel, self.recurrent_kernel_max, training)
            outputs = []
            h = c = None
            for step in range(self.steps):
                z = t.matmul(inputs[:, step, :], kernel)
                if self.bias is not None:
                    z = t.nn.bias_add(z, self.bias)
                z = self._act(z, "input_proj", training)
                if h is not None:
                    r = self._act(t.matmul(h, recurrent), "recurrent_proj", training)
                    z = self._act(z + r, "gates", training)
                zi, zf, zg, zo = t.split(z, 4, axis=-1)
                i = self._fixed(t.sigmoid(zi), _SIGMOID_RANGE)
                f = self._fixed(t.sigmoid(zf), _SIGMOID_RANGE)
                g = self._fixed(t.tanh(zg), _TANH_RANGE)
                o = self._fixed(t.sigmoid(zo), _SIGMOID_RANGE)
                ig = self._act(i * g, "input_gate", training)
                if c is None:
                    c = ig  # c0 = 0: the forget term vanishes
                else:
                    c = self._act(self._act(f * c, "forget_cell", training) + ig, "cell", training)
                h = self._act(o * self._fixed(t.tanh(c), _TANH_RANGE), "hidden", training)
                outputs.append(h)
            return t.stack(outputs, axis=1) if self.return_sequences else h

        def compute_output_shape(self, input_shape: Any) -> Any:
            if self.return_sequences:
                return (input_shape[0], input_shape[1], self.units)
            return (input_shape[0], self.units)

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "units": self.units,
                "return_sequences": self.return_sequences,
                "use_bias": self.use_bias,
            }

        def float_intermediates(self, inputs: np.ndarray) -> dict[str, tuple[float, float]]:
            """(min, max) of each role's tensor in the float LSTM over ``inputs`` (one batch)."""
            x = np.asarray(inputs, dtype=np.float32)
            w, uk = self.kernel.numpy(), self.recurrent_kernel.numpy()
            b = self.bias.numpy() if self.bias is not None else 0.0
            seen: dict[str, list[np.ndarray]] = {role: [] for role in ROLES}
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

        def calibrate(self, batches: list[np.ndarray]) -> None:
            """Set every activation range to the mean over ``batches`` of the batch min/max."""
            per_batch = [self.float_intermediates(batch) for batch in batches]
            for role, (low_var, high_var) in self.ranges.items():
                lows = [r[role][0] for r in per_batch if role in r]
                highs = [r[role][1] for r in per_batch if role in r]
                if lows:
                    low_var.assign(min(float(np.mean(lows)), 0.0))
                    high_var.assign(max(float(np.mean(highs)), 0.0))
            self.kernel_max.assign(float(np.abs(self.kernel.numpy()).max()))
            self.recurrent_kernel_max.assign(float(np.abs(self.recurrent_kernel.numpy()).max()))

    return QuantizedLSTM
