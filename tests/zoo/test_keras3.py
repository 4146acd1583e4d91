"""Keras 3 models rebuilt as tf-keras models (and back) compute the same outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgesmith.core.errors import ModelFileError
from edgesmith.zoo.keras3 import rebuild_supported, to_keras3, to_tf_keras, unsupported_layers

ATOL = 1e-5


def _k3() -> Any:
    from edgesmith.zoo.tfkeras import keras

    keras()  # TensorFlow first, with tf.keras = Keras 2
    import keras as keras3

    keras3.utils.set_random_seed(0)
    return keras3


def _outputs(model: Any, x: Any) -> list[np.ndarray]:
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _max_diff(a: Any, b: Any, x: Any) -> float:
    got, want = _outputs(a, x), _outputs(b, x)
    assert [g.shape for g in got] == [w.shape for w in want]
    return max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))


def _random_x(model: Any, vocab: int = 0, n: int = 4) -> Any:
    rng = np.random.default_rng(1)
    xs = []
    for spec in model.inputs:
        shape = (n, *(d or 7 for d in spec.shape[1:]))
        if vocab:
            xs.append(rng.integers(0, vocab, size=shape).astype("int32"))
        else:
            xs.append(rng.uniform(-2, 2, size=shape).astype("float32"))
    return xs[0] if len(xs) == 1 else xs


# --- Keras 3 models of each family --------------------------------------------------


def cnn(k: Any) -> Any:
    inputs = k.Input((12, 12, 3))
    x = k.layers.Conv2D(8, 3, padding="same", activation="hard_swish", name="stem")(inputs)
    x = k.layers.BatchNormalization(name="stem_bn")(x)
    x = k.layers.ReLU(6.0, name="stem_relu6")(x)
    y = k.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw")(x)
    y = k.layers.BatchNormalization(name="dw_bn")(y)
    y = k.layers.Activation("hard_swish", name="dw_hswish")(y)
    y = k.layers.SeparableConv2D(8, 3, padding="same", activation="swish", name="sep")(y)
    x = k.layers.Add(name="residual")([x, y])
    x = k.layers.Concatenate(name="concat")([x, k.layers.ReLU(negative_slope=0.1)(y)])
    x = k.layers.ZeroPadding2D(1)(x)
    x = k.layers.MaxPooling2D(name="pool")(x)
    x = k.layers.AveragePooling2D(2, name="avg")(x)
    x = k.layers.UpSampling2D()(x)
    x = k.layers.Cropping2D(1)(x)
    x = k.layers.SpatialDropout2D(0.1)(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    x = k.layers.Dropout(0.2)(x)
    return k.Model(inputs, k.layers.Dense(5, activation="softmax", name="head")(x), name="cnn")


def conv1d(k: Any) -> Any:
    inputs = k.Input((20, 4))
    x = k.layers.Rescaling(0.5, offset=0.1)(inputs)
    x = k.layers.Conv1D(8, 3, padding="causal", activation="relu", name="c1")(x)
    x = k.layers.SeparableConv1D(8, 3, padding="same", activation="gelu", name="s1")(x)
    x = k.layers.DepthwiseConv1D(3, activation="tanh", name="d1")(x)
    x = k.layers.ZeroPadding1D(2)(x)
    x = k.layers.MaxPooling1D()(x)
    x = k.layers.Permute((2, 1))(x)
    x = k.layers.Flatten()(x)
    x = k.layers.Reshape((8, -1))(x)
    x = k.layers.GlobalMaxPooling1D()(x)
    x = k.layers.Subtract()([x, k.layers.Dense(x.shape[-1], activation="sigmoid")(x)])
    return k.Model(inputs, k.layers.Dense(3, activation="relu6")(x), name="conv1d")


def transformer(k: Any) -> Any:
    """Token ids -> Embedding -> self-attention (causal), cross-attention, gelu MLP."""
    ids = k.Input((10,), dtype="int32", name="ids")
    memory = k.Input((6, 12), name="memory")
    x = k.layers.Embedding(50, 16, name="embed")(ids)
    h = k.layers.LayerNormalization(epsilon=1e-5, name="ln1")(x)
    mha = k.layers.MultiHeadAttention(num_heads=4, key_dim=4, name="self_mha")
    x = k.layers.Add()([x, mha(h, h, use_causal_mask=True)])
    h = k.layers.LayerNormalization(name="ln2")(x)
    cross = k.layers.MultiHeadAttention(num_heads=2, key_dim=5, value_dim=3, name="cross_mha")
    x = k.layers.Add()([x, cross(query=h, value=memory, key=memory)])
    h = k.layers.Dense(32, activation="gelu", name="mlp_in")(x)
    x = k.layers.Add()([x, k.layers.Dense(16, name="mlp_out")(h)])
    x = k.layers.GlobalAveragePooling1D()(x)
    return k.Model([ids, memory], k.layers.Dense(4, name="logits")(x), name="transformer")


def recurrent(k: Any) -> Any:
    inputs = k.Input((9, 5))
    x = k.layers.Normalization(mean=[0.1] * 5, variance=[2.0] * 5)(inputs)
    x = k.layers.Bidirectional(k.layers.GRU(6, return_sequences=True), name="bigru")(x)
    x = k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True), merge_mode="sum")(x)
    x = k.layers.GRU(5, reset_after=False, return_sequences=True, name="gru_v1")(x)
    x, state_h, _ = k.layers.LSTM(6, return_sequences=True, return_state=True, name="lstm")(x)
    x = k.layers.SimpleRNN(4, name="rnn")(x)
    x = k.layers.Concatenate()([x, state_h])
    return k.Model(inputs, k.layers.Dense(3)(x), name="recurrent")


def sequential(k: Any) -> Any:
    return k.Sequential(
        [
            k.Input((8, 8, 1)),
            k.layers.Conv2D(4, 3, activation="elu"),
            k.layers.BatchNormalization(),
            k.layers.Flatten(),
            k.layers.Dense(6, activation="leaky_relu"),
            k.layers.Softmax(),
        ],
        name="seq",
    )


def mobilenet(k: Any) -> Any:
    return k.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=10)


def mobilenet_nested(k: Any) -> Any:
    base = k.applications.MobileNetV3Small(
        weights=None, input_shape=(32, 32, 3), include_top=False, pooling="avg"
    )
    inputs = k.Input((32, 32, 3))
    x = base(inputs)
    return k.Model(inputs, k.layers.Dense(3, name="user_head")(x), name="user_model")


def efficientnet(k: Any) -> Any:
    return k.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=4)


FAMILIES = {
    "cnn": cnn,
    "conv1d": conv1d,
    "transformer": transformer,
    "recurrent": recurrent,
    "sequential": sequential,
    "mobilenet_v3": mobilenet,
    "mobilenet_v3_nested": mobilenet_nested,
}


def _x_for(name: str, model: Any) -> Any:
    if name == "transformer":
        rng = np.random.default_rng(2)
        return [rng.integers(0, 50, size=(4, 10)).astype("int32"), _random_x(model)[1]]
    return _random_x(model)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rebuild_and_round_trip_keep_outputs(family: str) -> None:
    k = _k3()
    model3 = FAMILIES[family](k)
    x = _x_for(family, model3)
    assert unsupported_layers(model3) == []
    model2, check = to_tf_keras(model3, check_x=x)
    assert check["passed"] and check["max_abs_diff"] <= ATOL and check["samples"] == 4
    assert type(model2).__module__.startswith("tf_keras")
    assert _max_diff(model2, model3, x) <= ATOL
    # no nested models are left for tfmot
    assert not any(hasattr(layer, "layers") for layer in model2.layers)
    back = to_keras3(model2, like=model3)
    assert type(back).__module__.startswith("keras")
    assert _max_diff(back, model3, x) <= ATOL


def test_default_check_samples_cover_integer_inputs() -> None:
    model3 = transformer(_k3())
    _, check = to_tf_keras(model3)
    assert check["samples"] == 8 and check["passed"]


def test_efficientnet_b0() -> None:
    model3 = efficientnet(_k3())
    model2, check = to_tf_keras(model3)
    assert check["passed"]
    assert _max_diff(model2, model3, _random_x(model3)) <= ATOL


def test_attention_is_rewritten_into_named_dense_projections_and_back() -> None:
    k = _k3()
    model3 = transformer(k)
    model2, check = to_tf_keras(model3)
    names = {layer.name: type(layer).__name__ for layer in model2.layers}
    for role in ("query", "key", "value", "out"):
        assert names[f"self_mha_{role}"] == "Dense"
        assert names[f"cross_mha_{role}"] == "Dense"
    assert names["self_mha_attention"] == names["cross_mha_attention"] == "AttentionCore"
    assert model2.get_layer("self_mha_attention").causal
    assert not model2.get_layer("cross_mha_attention").causal
    assert model2.get_layer("cross_mha_value").units == 2 * 3  # value_dim != key_dim
    assert any(
        line.startswith("self_mha: MultiHeadAttention -> Dense") for line in check["rewrites"]
    )
    back = to_keras3(model2)
    kinds = {layer.name: type(layer).__name__ for layer in back.layers}
    assert kinds["self_mha"] == kinds["cross_mha"] == "MultiHeadAttention"


def test_padding_masks_reach_attention() -> None:
    """Embedding(mask_zero=True): masked keys are ignored the way MultiHeadAttention does."""
    k = _k3()
    ids = k.Input((8,), dtype="int32")
    x = k.layers.Embedding(20, 8, mask_zero=True)(ids)
    x = k.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    model3 = k.Model(ids, k.layers.GlobalAveragePooling1D()(x))
    x_ids = np.array([[3, 4, 5, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8]], dtype="int32")
    model2, _ = to_tf_keras(model3, check_x=x_ids)
    assert _max_diff(model2, model3, x_ids) <= ATOL
    assert _max_diff(to_keras3(model2), model3, x_ids) <= ATOL


def test_keras_file_saved_by_keras3_is_rebuilt(tmp_path: Any) -> None:
    from edgesmith.zoo.keras3_back import keras3_custom_objects
    from edgesmith.zoo.store import load_keras_model

    k = _k3()
    path = tmp_path / "user.keras"
    transformer(k).save(path)
    model3 = k.saving.load_model(path)
    model2, check = to_tf_keras(model3)
    assert check["passed"]
    model2.save(tmp_path / "rebuilt.keras")
    loaded = load_keras_model(tmp_path / "rebuilt.keras")
    x = _x_for("transformer", model3)
    assert _max_diff(loaded, model3, x) <= ATOL
    # the compressed result written back as a Keras 3 file loads in Keras 3 again
    back = to_keras3(loaded)
    back.save(tmp_path / "back.keras")
    again = k.saving.load_model(tmp_path / "back.keras", custom_objects=keras3_custom_objects())
    assert _max_diff(again, model3, x) <= ATOL


def test_pruning_accepts_the_rebuilt_attention_model() -> None:
    from edgesmith.zoo.tfkeras import tfmot

    model2, _ = to_tf_keras(transformer(_k3()))
    pruned = tfmot().sparsity.keras.prune_low_magnitude(model2)
    wrapped = {layer.name for layer in pruned.layers if type(layer).__name__ == "PruneLowMagnitude"}
    assert {"prune_low_magnitude_self_mha_query", "prune_low_magnitude_cross_mha_out"} <= wrapped
    stripped = tfmot().sparsity.keras.strip_pruning(pruned)
    assert {type(layer).__name__ for layer in to_keras3(stripped).layers} >= {"MultiHeadAttention"}


def test_zoo_transformer_goes_to_keras3_and_back() -> None:
    from edgesmith.zoo.builders import build_model

    zoo = build_model("transformer", input_shape=(6, 4), num_classes=3, depth=1, dim=16)
    model3 = to_keras3(zoo)
    kinds = {type(layer).__name__ for layer in model3.layers}
    assert {"AttentionCore", "PositionEmbedding"} <= kinds  # names do not form an MHA group
    model2, check = to_tf_keras(model3)
    x = _random_x(zoo)
    assert check["passed"] and _max_diff(model2, zoo, x) <= ATOL


def test_attention_core_loads_configs_saved_before_new_keys() -> None:
    from edgesmith.zoo.custom_layers import custom_objects

    core = custom_objects()["AttentionCore"].from_config({"name": "old", "num_heads": 2})
    assert (core.causal, core.dropout) == (False, 0.0)
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 3, 4)).astype("float32") for _ in range(3))
    out = np.asarray(core([q, k, v]))
    # the old formula: per head softmax(q k^T / sqrt(2)) v, heads concatenated
    want = []
    for h in range(2):
        s = q[0][:, 2 * h : 2 * h + 2] @ k[0][:, 2 * h : 2 * h + 2].T / np.sqrt(2)
        w = np.exp(s - s.max(-1, keepdims=True))
        want.append((w / w.sum(-1, keepdims=True)) @ v[0][:, 2 * h : 2 * h + 2])
    np.testing.assert_allclose(out[0], np.concatenate(want, axis=-1), atol=1e-6)


@pytest.mark.parametrize("kind", ["lambda", "custom_class"])
def test_layer_without_rebuild_is_named(kind: str) -> None:
    k = _k3()

    class Twice(k.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2

    inputs = k.Input((4,))
    x = k.layers.Dense(4)(inputs)
    if kind == "lambda":
        x = k.layers.Lambda(lambda t: t * 2, name="odd")(x)
    else:
        x = Twice(name="odd")(x)
    model3 = k.Model(inputs, k.layers.Dense(2)(x))
    cls = "Lambda" if kind == "lambda" else "Twice"
    assert unsupported_layers(model3) == [("odd", cls)]
    with pytest.raises(ModelFileError) as info:
        to_tf_keras(model3)
    message = str(info.value)
    assert "odd" in message and cls in message and "MultiHeadAttention" in message


@pytest.mark.parametrize("case", ["attention_mask", "scores", "rms", "axes"])
def test_settings_without_equivalent_are_refused(case: str) -> None:
    k = _k3()
    inputs = k.Input((5, 8))
    if case == "rms":
        out = k.layers.LayerNormalization(rms_scaling=True, name="ln")(inputs)
    elif case == "axes":
        out = k.layers.MultiHeadAttention(2, 4, attention_axes=(2,), name="mha")(inputs, inputs)
    else:
        mha = k.layers.MultiHeadAttention(2, 4, name="mha")
        if case == "attention_mask":
            mask = k.Input((5, 5), dtype="bool")
            out = mha(inputs, inputs, attention_mask=mask)
            inputs = [inputs, mask]
        else:
            out = mha(inputs, inputs, return_attention_scores=True)[0]
    with pytest.raises(ModelFileError, match=r"ln|mha") as info:
        to_tf_keras(k.Model(inputs, out))
    expected = {
        "attention_mask": "attention_mask",
        "scores": "return_attention_scores",
        "rms": "rms_scaling",
        "axes": "attention_axes",
    }[case]
    assert expected in str(info.value)


def test_mismatch_names_the_first_differing_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgesmith.zoo import keras3

    k = _k3()
    inputs = k.Input((4,))
    x = k.layers.Dense(4, name="first")(inputs)
    x = k.layers.Dense(4, name="second")(x)
    model3 = k.Model(inputs, k.layers.Dense(2, name="third")(x))
    original = keras3._Forward.set_weights

    def corrupt(self: Any) -> None:
        original(self)
        layer = next(layer for layer, _, _ in self.pending if layer.name == "second")
        layer.set_weights([w + 1.0 for w in layer.get_weights()])

    monkeypatch.setattr(keras3._Forward, "set_weights", corrupt)
    with pytest.raises(ModelFileError, match="first at layer second"):
        to_tf_keras(model3)


def test_supported_list_names_the_required_layers() -> None:
    supported = rebuild_supported()
    for name in (
        "Conv2D",
        "DepthwiseConv2D",
        "SeparableConv1D",
        "MultiHeadAttention",
        "LSTM",
        "GRU",
        "SimpleRNN",
        "Bidirectional",
        "Embedding",
        "Normalization",
        "ops.Add",
        "ops.Multiply",
        "ops.Mean",
        "Functional",
        "GlobalAveragePooling1D",
    ):
        assert supported[name]
