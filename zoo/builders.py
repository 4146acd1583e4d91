"""Model builders with width and depth knobs, one per architecture.

``width`` scales every channel/unit count (0.5 gives the half-width student used for
distillation); ``depth`` sets the number of repeated blocks. Every model ends in a
``Dense`` layer named ``logits`` followed by a ``Softmax`` named ``probs``, so
distillation can read the logits and converters see a classifier.

Example:
    >>> from edgesmith.zoo.builders import build_model
    >>> model = build_model("cnn", input_shape=(8, 8, 1), num_classes=10, width=0.5)
    >>> model.output_shape
    (None, 10)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgesmith.core.errors import ConfigError, UnknownNameError
from edgesmith.zoo.tfkeras import keras

ARCHITECTURES = ("cnn", "dscnn", "lstm", "transformer")


def build_model(
    arch: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: float = 1.0,
    depth: int | None = None,
    vocab_size: int | None = None,
    name: str | None = None,
    **options: Any,
) -> Any:
    """Build an untrained Keras model of architecture ``arch``.

    Args:
        arch: one of ``cnn``, ``dscnn``, ``lstm``, ``transformer``.
        input_shape: shape of one sample, without the batch axis.
        num_classes: number of output classes.
        width: multiplier on channels/units (> 0).
        depth: number of repeated blocks (architecture default when None).
        vocab_size: for token inputs (Transformer over text): size of the vocabulary.
        name: the Keras model name.
        options: architecture-specific settings (for example ``heads`` for Transformers).
    """
    builders: dict[str, Callable[..., Any]] = {
        "cnn": _build_cnn,
        "dscnn": _build_dscnn,
        "lstm": _build_lstm,
        "transformer": _build_transformer,
    }
    if arch not in builders:
        raise UnknownNameError(
            f"architecture {arch!r}", expected=f"one of {', '.join(ARCHITECTURES)}"
        )
    if not width > 0:
        raise ConfigError(f"width={width}", expected="a positive multiplier such as 0.5 or 1.0")
    if depth is not None and depth < 1:
        raise ConfigError(f"depth={depth}", expected="at least 1 block")
    k = keras()
    inputs = k.Input(shape=tuple(input_shape), name="input")
    x = builders[arch](k, inputs, width=width, depth=depth, vocab_size=vocab_size, **options)
    logits = k.layers.Dense(num_classes, name="logits")(x)
    probs = k.layers.Softmax(name="probs")(logits)
    return k.Model(inputs, probs, name=name or arch)


def _units(base: int, width: float, multiple: int = 4) -> int:
    return max(multiple, round(base * width / multiple) * multiple)


def _build_cnn(k: Any, x: Any, *, width: float, depth: int | None, **_: Any) -> Any:
    """A LeNet-class image classifier: ``depth`` conv stages, then one hidden dense layer."""
    depth = depth or 2
    for stage in range(depth):
        filters = _units(32 * 2**stage, width)
        x = k.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}a")(x)
        x = k.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}b")(x)
        x = k.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = k.layers.Flatten(name="flatten")(x)
    x = k.layers.Dropout(0.3, name="dropout")(x)
    return k.layers.Dense(_units(128, width), activation="relu", name="hidden")(x)


def _build_dscnn(k: Any, x: Any, *, width: float, depth: int | None, **_: Any) -> Any:
    """Depthwise-separable CNN in the MLPerf Tiny keyword-spotting shape."""
    depth = depth or 4
    filters = _units(64, width)
    x = k.layers.Conv2D(filters, (10, 4), strides=2, padding="same", use_bias=False, name="conv0")(
        x
    )
    x = k.layers.BatchNormalization(name="conv0_bn")(x)
    x = k.layers.ReLU(name="conv0_relu")(x)
    for block in range(1, depth + 1):
        x = k.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{block}")(x)
        x = k.layers.BatchNormalization(name=f"dw{block}_bn")(x)
        x = k.layers.ReLU(name=f"dw{block}_relu")(x)
        x = k.layers.Conv2D(filters, 1, use_bias=False, name=f"pw{block}")(x)
        x = k.layers.BatchNormalization(name=f"pw{block}_bn")(x)
        x = k.layers.ReLU(name=f"pw{block}_relu")(x)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    return k.layers.Dropout(0.2, name="dropout")(x)


def _build_lstm(k: Any, x: Any, *, width: float, depth: int | None, **_: Any) -> Any:
    """Stacked unidirectional LSTM over the time axis; the last state feeds the classifier."""
    depth = depth or 1
    units = _units(64, width)
    for layer in range(depth):
        last = layer == depth - 1
        x = k.layers.LSTM(units, return_sequences=not last, name=f"lstm{layer}")(x)
    return k.layers.Dropout(0.2, name="dropout")(x)


def _build_transformer(
    k: Any,
    x: Any,
    *,
    width: float,
    depth: int | None,
    vocab_size: int | None = None,
    heads: int = 4,
    dim: int = 64,
    mlp_ratio: int = 2,
    dropout: float = 0.1,
    **_: Any,
) -> Any:
    """Pre-norm encoder: embed tokens (ids or feature frames), add positions, attend."""
    from edgesmith.zoo.custom_layers import custom_objects

    layers = custom_objects()
    depth = depth or 2
    d = _units(dim, width, multiple=heads * 4)
    if vocab_size is not None:
        x = k.layers.Embedding(vocab_size, d, name="embed")(x)
    else:
        if len(x.shape) != 3:
            raise ConfigError(
                f"Transformer input shape {tuple(x.shape[1:])}",
                expected="(length, features) frames, or token ids with vocab_size set",
            )
        x = k.layers.Dense(d, name="embed")(x)
    x = layers["PositionEmbedding"](name="positions")(x)
    for b in range(depth):
        h = k.layers.LayerNormalization(epsilon=1e-5, name=f"block{b}_ln1")(x)
        q = k.layers.Dense(d, name=f"block{b}_query")(h)
        kk = k.layers.Dense(d, name=f"block{b}_key")(h)
        v = k.layers.Dense(d, name=f"block{b}_value")(h)
        a = layers["AttentionCore"](heads, name=f"block{b}_attention")([q, kk, v])
        a = k.layers.Dense(d, name=f"block{b}_attn_out")(a)
        a = k.layers.Dropout(dropout, name=f"block{b}_attn_drop")(a)
        x = k.layers.Add(name=f"block{b}_attn_add")([x, a])
        h = k.layers.LayerNormalization(epsilon=1e-5, name=f"block{b}_ln2")(x)
        h = k.layers.Dense(d * mlp_ratio, activation="relu", name=f"block{b}_mlp_in")(h)
        h = k.layers.Dense(d, name=f"block{b}_mlp_out")(h)
        h = k.layers.Dropout(dropout, name=f"block{b}_mlp_drop")(h)
        x = k.layers.Add(name=f"block{b}_mlp_add")([x, h])
    x = k.layers.LayerNormalization(epsilon=1e-5, name="final_ln")(x)
    return k.layers.GlobalAveragePooling1D(name="pool")(x)
