"""Copying models, wrapping chosen layers, and turning tfmot's errors into clear ones."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from edgesmith.core.errors import ConfigError


def copy_model(model: Any, *, float_inputs: bool = False) -> Any:
    """A copy of ``model`` with its own weights (the input is never trained in place).

    ``float_inputs``: integer inputs (token ids) become float32 ones, which an Embedding
    casts back: tfmot puts a fake-quantizer after every model input, and it takes floats
    only (the zoo's token models take float ids for the same reason).
    """
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    tensors = None
    if float_inputs and any(t.dtype.is_integer for t in model.inputs):
        tensors = [
            k.Input(tuple(t.shape[1:]), dtype="float32", name=t.name.split(":")[0])
            if t.dtype.is_integer
            else k.Input(tuple(t.shape[1:]), dtype=t.dtype, name=t.name.split(":")[0])
            for t in model.inputs
        ]
    clone = k.models.clone_model(model, input_tensors=tensors)
    clone.set_weights(model.get_weights())
    return clone


def rewrap(model: Any, wrap: Callable[[Any], Any]) -> Any:
    """A model of the same graph where each layer is replaced by ``wrap(layer)``."""
    from edgesmith.zoo.tfkeras import keras

    return keras().models.clone_model(model, clone_function=wrap)


@contextlib.contextmanager
def tfmot_errors(step: str) -> Iterator[None]:
    """Re-raise an error thrown inside tfmot as one :class:`ConfigError` line."""
    try:
        yield
    except (ValueError, RuntimeError, TypeError, AttributeError) as exc:
        if not _raised_in_tfmot(exc):
            raise
        raise ConfigError(
            f"{step}: tensorflow-model-optimization refused the model ({_summary(exc)})",
            expected="layers the step supports",
            fix="leave the layer it names out of the step with exclude='NAME'",
        ) from exc


def _raised_in_tfmot(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return any("tensorflow_model_optimization" in frame.filename for frame in frames)


def _summary(exc: BaseException) -> str:
    """The informative part of an error: Keras wraps call errors in a header and a footer."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [
        line
        for line in lines
        if not line.startswith(
            ("Exception encountered when calling", "Call arguments received", "•")
        )
    ]
    text = " ".join(lines) or type(exc).__name__
    return text[:400]
