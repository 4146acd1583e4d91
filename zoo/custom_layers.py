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
        ``query`` and ``key`` are ``(batch, Lq, heads*key_dim)`` and ``(batch, Lk,
        heads*key_dim)``; ``value`` is ``(batch, Lk, heads*value_dim)``, so cross-attention
        and a value width other than the key width work. For each head,
        ``softmax(q k^T / sqrt(key_dim) masked) v``; the heads are concatenated.
        ``causal`` lets position i attend only to key positions j <= i; Keras masks on the
        inputs (from ``Embedding(mask_zero=True)``) mask query rows and key columns the
        way ``MultiHeadAttention`` does. ``dropout`` drops attention weights in training.
        """

        def __init__(
            self, num_heads: int, causal: bool = False, dropout: float = 0.0, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.num_heads = int(num_heads)
            # New keys default to the behaviour of files saved before they existed.
            self.causal = bool(causal)
            self.dropout = float(dropout)
            self.supports_masking = True

        def _head_dim(self, width: int, what: str) -> int:
            if width % self.num_heads:
                raise ValueError(f"{what} width {width} is not divisible by {self.num_heads} heads")
            return width // self.num_heads

        def call(self, inputs: Any, mask: Any = None, training: Any = None) -> Any:
            query, key, value = inputs
            key_dim = self._head_dim(query.shape[-1], "query")
            if key.shape[-1] != query.shape[-1]:
                raise ValueError(f"key width {key.shape[-1]} != query width {query.shape[-1]}")
            value_dim = self._head_dim(value.shape[-1], "value")

            def split_heads(x: Any, dim: int) -> Any:
                x = tensorflow.reshape(x, (-1, _length(x), self.num_heads, dim))
                return tensorflow.transpose(x, (0, 2, 1, 3))

            q, kk = split_heads(query, key_dim), split_heads(key, key_dim)
            v = split_heads(value, value_dim)
            scores = tensorflow.matmul(q, kk, transpose_b=True) * (key_dim**-0.5)
            allowed = self._allowed(query, key, mask)
            if allowed is not None:
                # Replacing (not adding to) the masked scores: a fully masked row becomes
                # uniform, as in MultiHeadAttention.
                scores = tensorflow.where(allowed, scores, tensorflow.constant(-1e9, scores.dtype))
            weights = tensorflow.nn.softmax(scores, axis=-1)
            if training and self.dropout > 0:
                weights = tensorflow.nn.dropout(weights, rate=self.dropout)
            context = tensorflow.transpose(tensorflow.matmul(weights, v), (0, 2, 1, 3))
            return tensorflow.reshape(context, (-1, _length(query), value.shape[-1]))

        def _allowed(self, query: Any, key: Any, mask: Any) -> Any:
            """Boolean ``(batch or 1, 1, Lq, Lk)`` of allowed query/key pairs, or None."""
            allowed = None
            masks = list(mask) if isinstance(mask, (list, tuple)) else [None, None, None]
            q_mask, k_mask, v_mask = [*masks, None, None, None][:3]
            if q_mask is not None:
                allowed = tensorflow.cast(q_mask, "bool")[:, None, :, None]
            for other in (k_mask, v_mask):
                if other is not None:
                    m = tensorflow.cast(other, "bool")[:, None, None, :]
                    allowed = m if allowed is None else tensorflow.logical_and(allowed, m)
            if self.causal:
                lq, lk = tensorflow.shape(query)[1], tensorflow.shape(key)[1]
                lower = tensorflow.linalg.band_part(tensorflow.ones((lq, lk), "bool"), -1, 0)
                lower = lower[None, None, :, :]
                allowed = lower if allowed is None else tensorflow.logical_and(allowed, lower)
            return allowed

        def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
            return mask[0] if isinstance(mask, (list, tuple)) else None

        def get_prunable_weights(self) -> list[Any]:
            # No weights: lets tfmot's prune_low_magnitude take a whole model with this layer.
            return []

        def compute_output_shape(self, input_shape: Any) -> Any:
            query, _, value = (tuple(tensorflow.TensorShape(s)) for s in input_shape)
            return tensorflow.TensorShape((*query[:-1], value[-1]))

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "num_heads": self.num_heads,
                "causal": self.causal,
                "dropout": self.dropout,
            }

    def _length(x: Any) -> Any:
        # The static length keeps shapes known downstream (Flatten); any length works.
        return x.shape[1] if x.shape[1] is not None else tensorflow.shape(x)[1]

    return {"PositionEmbedding": PositionEmbedding, "AttentionCore": AttentionCore}
