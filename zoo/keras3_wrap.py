"""A tf-keras layer that runs a Keras 3 layer: the rebuild of a layer with no translation.

:func:`~edgesmith.zoo.keras3.to_tf_keras` translates Keras 3 layers it knows into tf-keras
ones. A user's own layer class (given with ``--custom-objects``) or a ``Lambda`` (with
``--trust-model``) has no translation; with ``wrap_unknown=True`` it becomes a
:class:`Keras3Layer` (see :func:`keras3_layer_class`) that calls the Keras 3 layer object:
Keras 3 on the TensorFlow backend computes on tf tensors. The Keras 3 layer's variables
are the wrapper's weights (counted, trained, read and set by tf-keras); tfmot leaves the
layer float (no prunable weights).

Such a model lives in memory: copies (``clone_model``) copy the Keras 3 layer, but it
cannot be written as a tf-keras file (saving raises :class:`WrappedLayerNotSaveable`,
a ``ModelFileError``); converting it to TFLite or ONNX works.

Example:
    >>> import keras
    >>> from edgesmith.zoo.keras3 import to_tf_keras
    >>> inputs = keras.Input((3,))
    >>> model3 = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    >>> model2, check = to_tf_keras(model3, wrap_unknown=True)
    >>> type(model2.layers[1]).__name__, check["passed"]
    ('Keras3Layer', True)
"""

from __future__ import annotations

import inspect
from typing import Any

from edgesmith.core.errors import ModelFileError

WRAPPED_CLASS = "Keras3Layer"
_CLASS: type | None = None


class WrappedLayerNotSaveable(ModelFileError, ValueError):
    """A model holding wrapped Keras 3 layers was asked to write itself as a tf-keras file.

    A ``ValueError`` too: tf-keras' in-memory copies (tfmot's wrappers serialise their
    inner layer's config) catch ``ValueError`` and keep the object as it is, so copying
    still works while every file format stops with this message.
    """


class _Held:
    """The Keras 3 layer, out of sight of tf-keras' attribute tracking.

    tf-keras would otherwise treat the Keras 3 layer as a sub-layer or trackable and walk
    its attributes; the wrapper tracks the layer's variables itself.
    """

    def __init__(self, layer: Any, weights: list[Any] | None = None) -> None:
        self.layer = layer
        self.weights = weights  # copied into the layer once it is built (see build)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Held:
        # tf-keras deep-copies configs before writing them (.h5): the copy that matters is
        # from_config's; reaching get_config below then gives the clear error.
        return self

    def get_config(self) -> dict[str, Any]:
        raise WrappedLayerNotSaveable(
            f"layer {self.layer.name} ({type(self.layer).__name__}) is a Keras 3 layer "
            "wrapped in the tf-keras rebuild: a model with wrapped Keras 3 layers cannot be "
            "written as a tf-keras file",
            expected="a model whose layers all have a tf-keras rebuild",
            fix="convert the model (TFLite/ONNX work), or replace the layer with standard "
            "Keras layers to compress and save it",
        )


def keras3_layer_class() -> type:
    """The tf-keras ``Keras3Layer`` class (defined once tf-keras is imported)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _define()
    return _CLASS


def wrap_keras3_layer(layer3: Any, name: str) -> Any:
    """A tf-keras layer named ``name`` that calls Keras 3 ``layer3`` (sharing its variables)."""
    return keras3_layer_class()(_Held(layer3), name=name, trainable=layer3.trainable)


def can_wrap(op: Any, k3: Any) -> bool:
    """Whether Keras 3 ``op`` is a layer a wrapper can call (not an operation, a nested
    model or a quantized layer)."""
    from keras.src.models.functional import Functional

    if not isinstance(op, k3.layers.Layer) or isinstance(op, (Functional, k3.Sequential)):
        return False
    return not getattr(getattr(op, "dtype_policy", None), "quantization_mode", None)


def is_wrapped(layer: Any) -> bool:
    """Whether ``layer`` is a :class:`Keras3Layer` wrapper."""
    return type(layer).__name__ == WRAPPED_CLASS and hasattr(layer, "keras3_layer")


def _define() -> type:
    from edgesmith.zoo.tfkeras import keras, tf

    k2, t = keras(), tf()

    class Keras3Layer(k2.layers.Layer):
        """Runs a Keras 3 layer inside a tf-keras model; its variables are this layer's."""

        def __init__(self, keras3_layer: _Held, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._held = keras3_layer
            layer3 = keras3_layer.layer
            params = inspect.signature(layer3.call).parameters
            self._takes_training = "training" in params
            if layer3.built and keras3_layer.weights is None:
                self._track(layer3)

        @property
        def keras3_layer(self) -> Any:
            """The Keras 3 layer this layer runs."""
            return self._held.layer

        def _track(self, layer3: Any) -> None:
            # The tf.Variables behind the Keras 3 variables: tf-keras reads, sets and
            # trains these, and the Keras 3 layer computes with the same ones.
            if self._trainable_weights or self._non_trainable_weights:
                return
            for variable in layer3.trainable_variables:
                self._trainable_weights.append(_tf_variable(t, variable, layer3))
            for variable in layer3.non_trainable_variables:
                self._non_trainable_weights.append(_tf_variable(t, variable, layer3))

        def build(self, input_shape: Any) -> None:
            layer3 = self._held.layer
            if not layer3.built:
                import keras as keras3

                if isinstance(input_shape, (list, tuple)) and all(
                    _is_shape(s) for s in input_shape
                ):
                    specs: Any = [keras3.KerasTensor(_dims(t, s)) for s in input_shape]
                else:
                    specs = keras3.KerasTensor(_dims(t, input_shape))
                layer3(specs)  # a symbolic call builds the layer's variables
            if self._held.weights is not None:
                layer3.set_weights(self._held.weights)
                self._held.weights = None
            self._track(layer3)
            super().build(input_shape)

        def call(self, inputs: Any, training: Any = None) -> Any:
            if self._takes_training and training is not None:
                return self._held.layer(inputs, training=training)
            return self._held.layer(inputs)

        def get_prunable_weights(self) -> list[Any]:
            return []  # its own code: tfmot leaves it float

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "keras3_layer": self._held}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            # tf-keras copies (clone_model) come here: a copy gets its own Keras 3 layer
            # with the same weights, so training the copy leaves the original as it was.
            config = dict(config)
            held = config.pop("keras3_layer")
            if not isinstance(held, _Held):
                raise WrappedLayerNotSaveable(
                    f"layer {config.get('name')}: a {WRAPPED_CLASS} read from a file",
                    expected="a model built in this process by the Keras 3 rebuild",
                    fix="open the original Keras 3 model again",
                )
            return cls(_Held(_copy_keras3(held.layer), held.layer.get_weights()), **config)

    return Keras3Layer


def _is_shape(value: Any) -> bool:
    return hasattr(value, "as_list") or (
        isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value)
    )


def _dims(t: Any, shape: Any) -> tuple[int | None, ...]:
    return tuple(t.TensorShape(shape).as_list())


def _tf_variable(t: Any, variable: Any, layer3: Any) -> Any:
    inner = getattr(variable, "_value", None)
    if isinstance(inner, t.Variable):
        return inner
    raise ModelFileError(
        f"layer {layer3.name}: variable {variable.name} is not a TensorFlow variable",
        expected="Keras 3 running on the TensorFlow backend (KERAS_BACKEND=tensorflow)",
        fix="unset KERAS_BACKEND or set it to tensorflow",
    )


def _copy_keras3(layer3: Any) -> Any:
    """An unbuilt Keras 3 layer with ``layer3``'s settings (its weights are set on build)."""
    import keras as keras3

    if isinstance(layer3, keras3.layers.Lambda):
        # The same function object: its bytecode need not go through a config.
        return keras3.layers.Lambda(
            layer3.function,
            output_shape=layer3._output_shape,
            mask=layer3.mask,
            arguments=dict(layer3.arguments),
            name=layer3.name,
        )
    try:
        # The user opted in to running this layer's code; its config may name functions.
        with keras3.saving.custom_object_scope({type(layer3).__name__: type(layer3)}):
            from keras.src.saving.serialization_lib import SafeModeScope

            with SafeModeScope(False):
                return type(layer3).from_config(layer3.get_config())
    except Exception as exc:
        raise ModelFileError(
            f"layer {layer3.name} ({type(layer3).__name__}): cannot copy the Keras 3 layer "
            f"from its config ({exc})"[:400],
            expected="a layer whose get_config() holds every constructor argument",
            fix="give the layer class a get_config() returning its __init__ arguments",
        ) from exc
