"""Quantizer ranges of a QAT model set from data, and BatchNormalization held still.

tfmot starts every activation range at [-6, 6] and moves it by 0.1% a step, which a short
fine-tuning never corrects; :func:`calibrate_ranges` sets the ranges from the float
model's outputs instead. :func:`freeze_batch_norm` keeps training-mode passes (the
calibration's and the fine-tuning's) on the moving statistics those ranges came from.

Example:
    >>> from edgesmith.compress.qat_calibrate import calibrate_ranges  # doctest: +SKIP
    >>> calibrate_ranges(qat_model, float_model, x_train[:512], batch_size=32)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesmith.compress.layer_plan import inner_layer, model_layers


def freeze_batch_norm(qat_model: Any) -> list[Any]:
    """Put every trainable BatchNormalization in inference mode; the layers changed.

    The quantizer ranges are calibrated on the float model's inference outputs. A model
    trained briefly (or on other data) can have moving statistics far from a batch's:
    training-mode normalization then pushes activations outside those ranges, the
    clipped activations shrink layer after layer, and dividing by their tiny batch
    deviations multiplies the gradients until they overflow (EfficientNet's 80-odd
    BatchNormalization layers reach 1e21 in one step).
    """
    frozen = []
    for layer in model_layers(qat_model):
        inner = inner_layer(layer)
        if type(inner).__name__ == "BatchNormalization" and inner.trainable:
            inner.trainable = False
            frozen.append(inner)
    return frozen


def calibrate_ranges(qat_model: Any, float_model: Any, x: np.ndarray, batch_size: int) -> None:
    """Set every quantizer range from data instead of tfmot's initial [-6, 6].

    Weight ranges: one training-mode pass (tfmot's LastValue quantizers read the
    weights). Activation and output ranges: the mean over batches of each batch's
    min and max of the float model's matching layer output (what tfmot's moving average
    converges to), the input range from the inputs themselves.
    """
    from edgesmith.compress.wrapping import copy_model
    from edgesmith.zoo.tfkeras import keras

    if len(x) == 0:
        return
    # A fresh copy: layers of a stripped model belong to several graphs, so their
    # ``.output`` may not be this model's.
    float_model = copy_model(float_model)
    # Training mode makes tfmot's weight quantizers read the kernels; BatchNormalization
    # must not take this batch into its moving statistics meanwhile.
    frozen = freeze_batch_norm(qat_model)
    qat_model(x[:batch_size], training=True)
    for layer in frozen:
        layer.trainable = True
    targets: dict[str, list[tuple[Any, Any]]] = {}
    for layer in qat_model.layers:
        pairs = _range_variables(layer)
        if not pairs:
            continue
        key = "__input__" if type(layer).__name__ == "QuantizeLayer" else inner_layer(layer).name
        targets.setdefault(key, []).extend(pairs)
    _calibrate_lstms(qat_model, float_model, x, batch_size)
    float_names = {layer.name for layer in float_model.layers}
    names = [n for n in targets if n in float_names]
    probe = keras().Model(float_model.inputs, [float_model.get_layer(n).output for n in names])
    lows: dict[str, list[float]] = {n: [] for n in [*names, "__input__"]}
    highs: dict[str, list[float]] = {n: [] for n in [*names, "__input__"]}
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        outputs = probe(batch, training=False) if names else []
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for name, value in [*zip(names, outputs, strict=True), ("__input__", batch)]:
            value = np.asarray(value)
            lows[name].append(float(value.min()))
            highs[name].append(float(value.max()))
    for name, pairs in targets.items():
        if not lows.get(name):
            continue
        low, high = min(float(np.mean(lows[name])), 0.0), max(float(np.mean(highs[name])), 0.0)
        if high - low < 1e-6:
            continue
        for min_var, max_var in pairs:
            min_var.assign(np.full(min_var.shape, low, dtype=min_var.dtype.as_numpy_dtype))
            max_var.assign(np.full(max_var.shape, high, dtype=max_var.dtype.as_numpy_dtype))


def _calibrate_lstms(qat_model: Any, float_model: Any, x: np.ndarray, batch_size: int) -> None:
    """Each QuantizedLSTM's / QuantizedRNN's ranges from what the float layer of the same name reads."""
    from edgesmith.compress import qat_lstm, qat_rnn
    from edgesmith.zoo.tfkeras import keras

    twins = [inner_layer(layer) for layer in qat_model.layers]
    twins = [t for t in twins if type(t).__name__ in ("QuantizedLSTM", "QuantizedRNN")]
    if not twins:
        return
    probe = keras().Model(
        float_model.inputs, [float_model.get_layer(twin.name).input for twin in twins]
    )
    batches: list[list[np.ndarray]] = [[] for _ in twins]
    for start in range(0, len(x), batch_size):
        outputs = probe(x[start : start + batch_size], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for found, value in zip(batches, outputs, strict=True):
            found.append(np.asarray(value))
    for twin, found in zip(twins, batches, strict=True):
        module = qat_lstm if type(twin).__name__ == "QuantizedLSTM" else qat_rnn
        module.calibrate(twin, found)


def _range_variables(layer: Any) -> list[tuple[Any, Any]]:
    """(min, max) variable pairs of activation/output/input quantizers in ``layer``."""
    by_name = {}
    for variable in layer.weights:
        short = variable.name.split("/")[-1].split(":")[0]
        by_name[short] = variable
    pairs = []
    for short, variable in by_name.items():
        if not short.endswith("_min"):
            continue
        stem = short[: -len("_min")]
        is_activation = stem in ("post_activation", "output") or (
            type(layer).__name__ == "QuantizeLayer"
        )
        if is_activation and f"{stem}_max" in by_name:
            pairs.append((variable, by_name[f"{stem}_max"]))
    return pairs
