"""The Keras objects a quantization-aware model file written by edgesmith refers to.

``edgesmith compress`` (its ``qat`` step) writes models holding tfmot's quantize wrappers
around edgesmith's own quantize config (:class:`EdgesmithQuantizeConfig`, for layers
tfmot's default scheme refuses) and :class:`QuantizedLSTM` (an LSTM unrolled into
int8-simulating ops). Loading such a file needs these classes and nothing of the QAT
algorithm, so they live here, at the base of the TensorFlow side: the store, ``convert``
and the CLI load QAT models without importing ``edgesmith.compress``.

Classes are defined on first use, so importing this module imports no TensorFlow.

Example:
    >>> from edgesmith.zoo.quantized import quantize_scope  # doctest: +SKIP
    >>> with quantize_scope():  # doctest: +SKIP
    ...     model = keras().models.load_model("out/model.keras", compile=False)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

# The roles of a QuantizedLSTM whose ranges are learned, in the order their variables are
# created (a saved file's weight order depends on it).
LSTM_ROLES = (
    "input_proj",
    "recurrent_proj",
    "gates",
    "forget_cell",
    "input_gate",
    "cell",
    "hidden",
)
# The roles of a QuantizedRNN per cell kind (per direction), in creation order.
RNN_ROLES = {
    "lstm": LSTM_ROLES,
    "gru": (
        "input_proj",
        "recurrent_proj",
        "gates",
        "reset_hidden",
        "candidate_sum",
        "keep",
        "update",
        "hidden",
    ),
    "simple": ("input_proj", "recurrent_proj", "gates"),
}
RNN_MERGE_MODES = ("concat", "sum", "ave", "mul")
# tfmot's MovingAverageQuantizer decay.
_EMA_DECAY = 0.999
# TFLite int8 LOGISTIC and TANH output ranges (fixed by the kernels).
SIGMOID_RANGE = (0.0, 255.0 / 256.0)
TANH_RANGE = (-1.0, 127.0 / 128.0)


def custom_objects() -> dict[str, Any]:
    """Everything a QAT file refers to besides tfmot's own objects: these and the zoo layers."""
    from edgesmith.zoo.custom_layers import custom_objects as zoo_objects

    return {
        "EdgesmithQuantizeConfig": quantize_config_class(),
        "QuantizedLSTM": quantized_lstm_class(),
        "QuantizedRNN": quantized_rnn_class(),
        **zoo_objects(),
    }


@contextlib.contextmanager
def quantize_scope() -> Iterator[None]:
    """Keras custom-object scope in which QAT models written by edgesmith load."""
    from edgesmith.zoo.tfkeras import tfmot

    with tfmot().quantization.keras.quantize_scope(custom_objects()):
        yield


@functools.lru_cache(maxsize=1)
def quantize_config_class() -> type:
    """``EdgesmithQuantizeConfig``: fake-quantizes named weights and, optionally, the output."""
    from edgesmith.zoo.tfkeras import tfmot

    quantization = tfmot().quantization.keras
    quantizers = quantization.quantizers

    class EdgesmithQuantizeConfig(quantization.QuantizeConfig):
        """Fake-quantizes named weights (of the layer, or of its RNN cell) and the output."""

        def __init__(
            self, weights: list[str] | None = None, cell: bool = False, output: bool = True
        ) -> None:
            self.weights = list(weights or [])
            # ``cell``: weights live on the layer's RNN cell. No config of this version sets
            # it (the LSTM became a QuantizedLSTM); QAT files of earlier versions do.
            self.cell = bool(cell)
            self.output = bool(output)

        def _owner(self, layer: Any) -> Any:
            return layer.cell if self.cell else layer

        def _weight_quantizer(self) -> Any:
            return quantizers.LastValueQuantizer(
                num_bits=8, per_axis=False, symmetric=True, narrow_range=True
            )

        def get_weights_and_quantizers(self, layer: Any) -> list[tuple[Any, Any]]:
            owner = self._owner(layer)
            return [(getattr(owner, name), self._weight_quantizer()) for name in self.weights]

        def set_quantize_weights(self, layer: Any, quantize_weights: list[Any]) -> None:
            owner = self._owner(layer)
            for name, weight in zip(self.weights, quantize_weights, strict=True):
                setattr(owner, name, weight)

        def get_activations_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def set_quantize_activations(self, layer: Any, quantize_activations: list[Any]) -> None:
            return None

        def get_output_quantizers(self, layer: Any) -> list[Any]:
            if not self.output:
                return []
            return [
                quantizers.MovingAverageQuantizer(
                    num_bits=8, per_axis=False, symmetric=False, narrow_range=False
                )
            ]

        def get_config(self) -> dict[str, Any]:
            return {"weights": self.weights, "cell": self.cell, "output": self.output}

    return EdgesmithQuantizeConfig


@functools.lru_cache(maxsize=1)
def quantized_lstm_class() -> type:
    """``QuantizedLSTM``: an LSTM unrolled over its fixed time steps into the ops TFLite keeps.

    Every op's output is fake-quantized as the int8 kernels will round it: kernels
    symmetric per tensor from the current weights; projections, gate sums and states with
    a moving-average range per role (shared by all time steps); sigmoid and tanh outputs
    with TFLite's fixed ranges. ``edgesmith.compress.qat_lstm`` builds one from a Keras
    LSTM and calibrates its ranges.
    """
    from edgesmith.zoo.tfkeras import keras, tf

    k, t = keras(), tf()

    class QuantizedLSTM(k.layers.Layer):
        """An LSTM unrolled into int8-simulating ops (see :func:`quantized_lstm_class`)."""

        def __init__(
            self, units: int, return_sequences: bool = False, use_bias: bool = True, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.units = int(units)
            self.return_sequences = bool(return_sequences)
            self.use_bias = bool(use_bias)

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
                for role in LSTM_ROLES
            }
            super().build(input_shape)

        def _weight(self, weight: Any, limit: Any, training: bool) -> Any:
            return fake_quant_weight(t, weight, limit, training)

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
                if c is None:
                    # c0 = 0, so the first step has no use for the forget gate. A SPLIT
                    # with an unused output converts at random: the converter's quantize
                    # pattern needs every output to feed a quantize op, and whether it runs
                    # before the dead output's quantize op is erased varies from run to run
                    # (else SPLIT stays float, or the int8 pass finds two scales on it).
                    # Slicing out the three gates used (STRIDED_SLICE) leaves nothing unused.
                    u = self.units
                    zi, zg, zo = (z[:, k * u : (k + 1) * u] for k in (0, 2, 3))
                else:
                    zi, zf, zg, zo = t.split(z, 4, axis=-1)
                i = self._fixed(t.sigmoid(zi), SIGMOID_RANGE)
                g = self._fixed(t.tanh(zg), TANH_RANGE)
                o = self._fixed(t.sigmoid(zo), SIGMOID_RANGE)
                ig = self._act(i * g, "input_gate", training)
                if c is None:
                    c = ig  # c0 = 0: the forget term vanishes
                else:
                    f = self._fixed(t.sigmoid(zf), SIGMOID_RANGE)
                    c = self._act(self._act(f * c, "forget_cell", training) + ig, "cell", training)
                h = self._act(o * self._fixed(t.tanh(c), TANH_RANGE), "hidden", training)
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

    return QuantizedLSTM


@functools.lru_cache(maxsize=1)
def quantized_rnn_class() -> type:
    """``QuantizedRNN``: a GRU, SimpleRNN or LSTM, one- or two-directional, unrolled like
    :func:`quantized_lstm_class` (every product, gate and state fake-quantized as int8).

    ``cell`` is ``lstm``, ``gru`` (Keras' default ``reset_after=True`` form) or ``simple``
    (tanh); ``directions`` is ``forward``, ``backward`` (``go_backwards=True``) or
    ``both`` (a ``Bidirectional`` wrapper, its two outputs merged by ``merge_mode``).
    Each direction has its own weights and ranges. While ``collecting`` holds a dict the
    layer computes in float and records each role's batch (min, max) there instead of
    rounding: that is how :mod:`edgesmith.compress.qat_rnn` calibrates it.
    """
    from edgesmith.zoo.tfkeras import keras, tf

    k, t = keras(), tf()

    class QuantizedRNN(k.layers.Layer):
        """A recurrent layer unrolled into int8-simulating ops (see :func:`quantized_rnn_class`)."""

        def __init__(
            self,
            cell: str,
            units: int,
            return_sequences: bool = False,
            use_bias: bool = True,
            directions: str = "forward",
            merge_mode: str = "concat",
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self.cell = str(cell)
            self.units = int(units)
            self.return_sequences = bool(return_sequences)
            self.use_bias = bool(use_bias)
            self.directions = str(directions)
            self.merge_mode = str(merge_mode)
            # A plain attribute (not tracked by Keras): set only while calibrating.
            object.__setattr__(self, "collecting", None)

        @property
        def direction_names(self) -> tuple[str, ...]:
            return ("forward", "backward") if self.directions == "both" else (self.directions,)

        def build(self, input_shape: Any) -> None:
            features = int(input_shape[-1])
            self.steps = int(input_shape[1])
            gates = {"lstm": 4, "gru": 3, "simple": 1}[self.cell] * self.units
            bias_shape = (2, gates) if self.cell == "gru" else (gates,)
            limit = {"trainable": False, "initializer": "zeros"}
            self.params: dict[str, dict[str, Any]] = {}
            self.ranges: dict[str, tuple[Any, Any]] = {}
            for d in self.direction_names:
                own = {
                    "kernel": self.add_weight(f"{d}_kernel", shape=(features, gates)),
                    "recurrent_kernel": self.add_weight(
                        f"{d}_recurrent_kernel", shape=(self.units, gates)
                    ),
                    "bias": self.add_weight(f"{d}_bias", shape=bias_shape, initializer="zeros")
                    if self.use_bias
                    else None,
                    "kernel_max": self.add_weight(f"{d}_kernel_max", shape=(), **limit),
                    "recurrent_kernel_max": self.add_weight(
                        f"{d}_recurrent_kernel_max", shape=(), **limit
                    ),
                }
                self.params[d] = own
                for role in RNN_ROLES[self.cell]:
                    self.ranges[f"{d}_{role}"] = (
                        self.add_weight(f"{d}_{role}_min", shape=(), **limit),
                        self.add_weight(f"{d}_{role}_max", shape=(), **limit),
                    )
            if self.directions == "both" and self.merge_mode != "concat":
                self.ranges["merged"] = (
                    self.add_weight("merged_min", shape=(), **limit),
                    self.add_weight("merged_max", shape=(), **limit),
                )
            super().build(input_shape)

        # -- rounding as the int8 kernels do, or recording ranges while collecting ------

        def _weight(self, weight: Any, limit: Any, training: bool) -> Any:
            if self.collecting is not None:
                return weight
            return fake_quant_weight(t, weight, limit, training)

        def _act(self, x: Any, role: str, training: bool) -> Any:
            if self.collecting is not None:
                self.collecting.setdefault(role, []).append(
                    (float(t.reduce_min(x)), float(t.reduce_max(x)))
                )
                return x
            low, high = self.ranges[role]
            if training:
                low.assign(_EMA_DECAY * low + (1 - _EMA_DECAY) * t.minimum(t.reduce_min(x), 0.0))
                high.assign(_EMA_DECAY * high + (1 - _EMA_DECAY) * t.maximum(t.reduce_max(x), 0.0))
            return t.quantization.fake_quant_with_min_max_vars(x, low, high, num_bits=8)

        def _fixed(self, x: Any, bounds: tuple[float, float]) -> Any:
            if self.collecting is not None:
                return x
            return t.quantization.fake_quant_with_min_max_args(
                x, min=bounds[0], max=bounds[1], num_bits=8
            )

        # -- one direction over every time step -----------------------------------------

        def _run(self, inputs: Any, d: str, training: bool) -> list[Any]:
            own = self.params[d]
            kernel = self._weight(own["kernel"], own["kernel_max"], training)
            recurrent = self._weight(own["recurrent_kernel"], own["recurrent_kernel_max"], training)
            order = range(self.steps - 1, -1, -1) if d == "backward" else range(self.steps)
            step = {"lstm": self._lstm_step, "gru": self._gru_step, "simple": self._simple_step}
            state: Any = None
            outputs = []
            for index in order:
                x = inputs[:, index, :]
                h, state = step[self.cell](x, state, kernel, recurrent, own["bias"], d, training)
                outputs.append(h)
            return outputs

        def _input_projection(self, x: Any, kernel: Any, bias: Any, d: str, training: bool) -> Any:
            """x @ kernel + bias, fake-quantized as the input projection of direction d."""
            z = t.matmul(x, kernel)
            if bias is not None:
                z = t.nn.bias_add(z, bias)
            return self._act(z, f"{d}_input_proj", training)

        def _part(self, z: Any, index: int) -> Any:
            # Slices (STRIDED_SLICE), never SPLIT: see QuantizedLSTM.call on unused outputs.
            return z[:, index * self.units : (index + 1) * self.units]

        def _lstm_step(
            self, x: Any, state: Any, kernel: Any, recurrent: Any, bias: Any, d: str, training: bool
        ) -> tuple[Any, Any]:
            role = lambda name: f"{d}_{name}"  # noqa: E731
            z = self._input_projection(x, kernel, bias, d, training)
            if state is not None:
                h, c = state
                r = self._act(t.matmul(h, recurrent), role("recurrent_proj"), training)
                z = self._act(z + r, role("gates"), training)
            i = self._fixed(t.sigmoid(self._part(z, 0)), SIGMOID_RANGE)
            g = self._fixed(t.tanh(self._part(z, 2)), TANH_RANGE)
            o = self._fixed(t.sigmoid(self._part(z, 3)), SIGMOID_RANGE)
            ig = self._act(i * g, role("input_gate"), training)
            if state is None:
                c = ig
            else:
                f = self._fixed(t.sigmoid(self._part(z, 1)), SIGMOID_RANGE)
                fc = self._act(f * c, role("forget_cell"), training)
                c = self._act(fc + ig, role("cell"), training)
            h = self._act(o * self._fixed(t.tanh(c), TANH_RANGE), role("hidden"), training)
            return h, (h, c)

        def _gru_step(
            self, x: Any, state: Any, kernel: Any, recurrent: Any, bias: Any, d: str, training: bool
        ) -> tuple[Any, Any]:
            role = lambda name: f"{d}_{name}"  # noqa: E731
            u = self.units
            zx = t.matmul(x, kernel)
            if bias is not None:
                zx = zx + bias[0]
            zx = self._act(zx, role("input_proj"), training)
            if state is None:
                # h0 = 0: the recurrent product is its bias alone.
                zh = bias[1] if bias is not None else None
            else:
                zh = t.matmul(state, recurrent)
                if bias is not None:
                    zh = zh + bias[1]
                zh = self._act(zh, role("recurrent_proj"), training)
            gates = zx[:, : 2 * u]
            if zh is not None:
                gates = self._act(gates + zh[..., : 2 * u], role("gates"), training)
            z = self._fixed(t.sigmoid(gates[:, :u]), SIGMOID_RANGE)
            r = self._fixed(t.sigmoid(gates[:, u:]), SIGMOID_RANGE)
            candidate = self._part(zx, 2)
            if zh is not None:
                reset = self._act(r * zh[..., 2 * u :], role("reset_hidden"), training)
                candidate = self._act(candidate + reset, role("candidate_sum"), training)
            hh = self._fixed(t.tanh(candidate), TANH_RANGE)
            update = self._act(self._fixed(1.0 - z, (0.0, 1.0)) * hh, role("update"), training)
            if state is None:
                h = update
            else:
                keep = self._act(z * state, role("keep"), training)
                h = self._act(keep + update, role("hidden"), training)
            return h, h

        def _simple_step(
            self, x: Any, state: Any, kernel: Any, recurrent: Any, bias: Any, d: str, training: bool
        ) -> tuple[Any, Any]:
            role = lambda name: f"{d}_{name}"  # noqa: E731
            z = self._input_projection(x, kernel, bias, d, training)
            if state is not None:
                r = self._act(t.matmul(state, recurrent), role("recurrent_proj"), training)
                z = self._act(z + r, role("gates"), training)
            h = self._fixed(t.tanh(z), TANH_RANGE)
            return h, h

        def call(self, inputs: Any, training: Any = None) -> Any:
            training = bool(training) and self.collecting is None
            results = []
            for d in self.direction_names:
                outputs = self._run(inputs, d, training)
                if self.return_sequences:
                    if d == "backward" and self.directions == "both":
                        outputs = outputs[::-1]  # Bidirectional aligns the backward pass in time
                    results.append(t.stack(outputs, axis=1))
                else:
                    results.append(outputs[-1])
            if len(results) == 1:
                return results[0]
            forward, backward = results
            if self.merge_mode == "concat":
                return t.concat([forward, backward], axis=-1)
            if self.merge_mode == "sum":
                merged = forward + backward
            elif self.merge_mode == "ave":
                merged = (forward + backward) * 0.5
            else:
                merged = forward * backward
            return self._act(merged, "merged", training)

        def compute_output_shape(self, input_shape: Any) -> Any:
            width = self.units * (
                2 if self.directions == "both" and self.merge_mode == "concat" else 1
            )
            if self.return_sequences:
                return (input_shape[0], input_shape[1], width)
            return (input_shape[0], width)

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "cell": self.cell,
                "units": self.units,
                "return_sequences": self.return_sequences,
                "use_bias": self.use_bias,
                "directions": self.directions,
                "merge_mode": self.merge_mode,
            }

    return QuantizedRNN


def fake_quant_weight(t: Any, weight: Any, limit: Any, training: bool) -> Any:
    """A weight rounded as int8 kernels round it: symmetric, narrow range, per tensor.

    ``limit`` holds the largest magnitude; training updates it from the weight.
    """
    if training:
        limit.assign(t.reduce_max(t.abs(weight)))
    m = t.maximum(limit, 1e-8)
    return t.quantization.fake_quant_with_min_max_vars(weight, -m, m, num_bits=8, narrow_range=True)
