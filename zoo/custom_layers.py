"""Custom Keras layers of the zoo Transformer.

The Transformer is built from plain ``Dense`` projections (query, key, value, output)
around a weightless attention core, instead of ``keras.layers.MultiHeadAttention``.
That keeps the architecture the same while every weight sits in a layer that pruning,
clustering and quantization tools know how to handle.
"""

from __future__ import annotations

from typing import Any

from edgesmith.zoo.tfkeras import keras, tf

_LAYERS: dict[str, type] | None = None


def custom_objects() -> dict[str, type]:
    """The zoo's custom layers by name, for ``keras.models.load_model``."""
    global _LAYERS
    if _LAYERS is None:
        _LAYERS = _define_layers()
    return dict(_LAYERS)


def _define_layers() -> dict[str, type]:
    k = keras()
    tensorflow = tf()

    @k.utils.register_keras_serializable(package="edgesmith")
    class PositionEmbedding(k.layers.Layer):
        """Adds a learned embedding of each position to a ``(batch, length, dim)`` input."""

        def build(self, input_shape: Any) -> None:
            length, dim = int(input_shape[-2]), int(input_shape[-1])
            self.positions = self.add_weight(
                name="positions",
                shape=(length, dim),
                initializer=k.initializers.RandomNormal(stddev=0.02),
            )
            super().build(input_shape)

        def call(self, inputs: Any) -> Any:
            return inputs + self.positions

    @k.utils.register_keras_serializable(package="edgesmith")
    class AttentionCore(k.layers.Layer):
        """Multi-head scaled dot-product attention over projected ``[query, key, value]``.

        Holds no weights: the projections around it are ordinary ``Dense`` layers.
        """

        def __init__(self, num_heads: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.num_heads = int(num_heads)

        def call(self, inputs: Any) -> Any:
            query, key, value = inputs
            dim = query.shape[-1]
            if dim % self.num_heads:
                raise ValueError(f"width {dim} is not divisible by {self.num_heads} heads")
            head_dim = dim // self.num_heads
            length = query.shape[-2]

            def split_heads(x: Any) -> Any:
                x = tensorflow.reshape(x, (-1, length, self.num_heads, head_dim))
                return tensorflow.transpose(x, (0, 2, 1, 3))

            q, kk, v = split_heads(query), split_heads(key), split_heads(value)
            scores = tensorflow.matmul(q, kk, transpose_b=True) * (head_dim**-0.5)
            weights = tensorflow.nn.softmax(scores, axis=-1)
            context = tensorflow.transpose(tensorflow.matmul(weights, v), (0, 2, 1, 3))
            return tensorflow.reshape(context, (-1, length, dim))

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape[0]

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "num_heads": self.num_heads}

    return {"PositionEmbedding": PositionEmbedding, "AttentionCore": AttentionCore}
