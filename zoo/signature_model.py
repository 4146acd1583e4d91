"""A SavedModel that holds no Keras model (``keras.Model.export``, ``tf.saved_model.save``)
as a tf-keras model that calls its serving signature, so that it converts like any other.

Such a folder holds TensorFlow graphs, not Python code: loading it runs nothing from the
file. It can be converted and benchmarked, but not compressed (there are no Keras layers
to prune or quantize); :func:`wrap_saved_model` records that in the returned model's
``edgesmith_convert_only`` attribute and callers refuse to compress it.

Example:
    >>> from edgesmith.zoo.signature_model import wrap_saved_model
    >>> model = wrap_saved_model("exported/")  # doctest: +SKIP
    >>> model.input_shape  # doctest: +SKIP
    (None, 8, 8, 1)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ModelFileError

SIGNATURE = "serving_default"


def wrap_saved_model(path: str | os.PathLike[str], *, signature: str = SIGNATURE) -> Any:
    """A tf-keras model whose one layer runs ``signature`` of the SavedModel at ``path``.

    The signature must take one tensor and return one; its variables become the layer's
    weights (so parameter counts are right), and its input's shape and dtype are the
    model's.
    """
    from edgesmith.zoo.tfkeras import keras, tf

    path = Path(path)
    try:
        loaded = tf().saved_model.load(str(path))
    except Exception as exc:  # TF raises many types for a broken folder: one clear error
        raise ModelFileError(
            f"{path}: cannot be loaded as a SavedModel ({type(exc).__name__}: {exc})"[:400],
            expected="a folder written by tf.saved_model.save or keras.Model.export",
        ) from None
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if signature not in signatures:
        raise ModelFileError(
            f"{path}: no {signature!r} signature (has {', '.join(signatures) or 'none'})",
            expected="a SavedModel with a serving signature, as keras.Model.export writes",
        )
    function = signatures[signature]
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(
            f"{path}: the {signature!r} signature takes {len(inputs)} inputs and returns "
            f"{len(outputs)} outputs",
            expected="one input tensor and one output tensor",
            fix="export a single-input, single-output model",
        )
    (input_name, spec), output_name = next(iter(inputs.items())), next(iter(outputs))
    if spec.shape.rank is None or spec.shape.rank < 2:
        raise ModelFileError(
            f"{path}: input {input_name!r} has shape {spec.shape}",
            expected="a batch axis and a known number of dimensions",
        )
    k = keras()
    layer = _signature_layer()(function, input_name, output_name, loaded, name="saved_model")
    model_input = k.Input(tuple(spec.shape[1:]), dtype=spec.dtype, name=input_name)
    model = k.Model(model_input, layer(model_input), name=path.name or "saved_model")
    model.edgesmith_convert_only = True
    return model


def is_convert_only(model: Any) -> bool:
    """Whether ``model`` wraps a SavedModel's graphs (convertible, not compressible)."""
    return bool(getattr(model, "edgesmith_convert_only", False))


_LAYER: type | None = None


def _signature_layer() -> type:
    """The layer class, defined once (tf-keras is imported lazily)."""
    global _LAYER
    if _LAYER is None:
        from edgesmith.zoo.tfkeras import keras

        class SavedModelSignature(keras().layers.Layer):
            """Calls one serving signature of a loaded SavedModel."""

            def __init__(
                self, function: Any, input_name: str, output_name: str, owner: Any, **kwargs: Any
            ) -> None:
                super().__init__(trainable=False, **kwargs)
                self._function = function
                self._input_name = input_name
                self._output_name = output_name
                self._owner = owner  # keeps the loaded object, and so its variables, alive
                # Tracked as weights: parameter counts then see them.
                self.graph_variables = list(owner.variables)

            def call(self, inputs: Any) -> Any:
                return self._function(**{self._input_name: inputs})[self._output_name]

        _LAYER = SavedModelSignature
    return _LAYER
