"""Every layer type users bring goes through prune, QAT (to full int8) and clustering.

Tiny synthetic models, one per group of layers, are trained a few epochs on random
inputs with a learnable rule (each class a band of a fixed linear score, far from the
band edges); each technique then runs for one epoch on them.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from edgesmith.compress import cluster, prune, qat
from edgesmith.compress.layer_plan import kernels
from edgesmith.core.errors import ConfigError

CLASSES = 4
SAMPLES = 240  # 160 train, 20 validation, 60 test
BASE_EPOCHS = 8


def _keras() -> Any:
    from edgesmith.zoo.tfkeras import keras

    return keras()


@functools.lru_cache(maxsize=1)
def hard_swish_class() -> type:
    """A weightless custom layer (hard swish, x * relu6(x + 3) / 6) no rule knows by name."""
    from edgesmith.zoo.tfkeras import tf

    k, t = _keras(), tf()

    @k.utils.register_keras_serializable(package="edgesmith_tests")
    class TestHardSwish(k.layers.Layer):
        def call(self, inputs: Any) -> Any:
            return inputs * t.nn.relu6(inputs + 3.0) * (1.0 / 6.0)

    return TestHardSwish


def conv2d_model() -> Any:
    """Rescaling, Normalization, ZeroPadding2D, Conv2D, BatchNormalization, ReLU(6),
    DepthwiseConv2D, swish, SeparableConv2D, Add, the 2-D poolings, a squeeze-excite
    Multiply with Reshape, Dropout."""
    k = _keras()
    layers = k.layers
    inputs = k.Input((12, 12, 3))
    x = layers.Rescaling(0.5, offset=0.1)(inputs)
    x = layers.Normalization(mean=0.0, variance=1.5)(x)
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(8, 3, name="conv")(x)
    x = layers.BatchNormalization()(x)
    skip = layers.ReLU(max_value=6.0)(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(skip)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("swish")(x)
    x = layers.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    x = layers.Add()([x, skip])
    x = layers.MaxPooling2D()(x)
    x = layers.AveragePooling2D()(x)
    x = layers.Conv2D(8, 1, activation="relu", name="pw")(x)
    squeeze = layers.GlobalAveragePooling2D()(x)
    squeeze = layers.Dense(8, activation="sigmoid", name="excite")(squeeze)
    x = layers.Multiply()([x, layers.Reshape((1, 1, 8))(squeeze)])
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dropout(0.1)(x)
    return k.Model(inputs, layers.Dense(CLASSES, activation="softmax", name="logits")(x))


def conv1d_model() -> Any:
    """Conv1D, LayerNormalization, gelu, SeparableConv1D, Subtract, ZeroPadding1D, the
    1-D poolings, Permute, Flatten, Concatenate."""
    k = _keras()
    layers = k.layers
    inputs = k.Input((16, 4))
    conv = layers.Conv1D(8, 3, padding="same", name="conv1")(inputs)
    x = layers.LayerNormalization()(conv)
    x = layers.Activation("gelu")(x)
    x = layers.SeparableConv1D(8, 3, padding="same", name="sep1")(x)
    x = layers.Subtract()([x, conv])
    x = layers.ZeroPadding1D(1)(x)
    x = layers.MaxPooling1D()(x)
    x = layers.AveragePooling1D()(x)
    mean = layers.GlobalAveragePooling1D()(x)
    peak = layers.GlobalMaxPooling1D()(x)
    x = layers.Flatten()(layers.Permute((2, 1))(x))
    x = layers.Dense(8, activation="relu", name="hidden")(x)
    x = layers.Concatenate()([x, mean, peak])
    return k.Model(inputs, layers.Dense(CLASSES, activation="softmax", name="logits")(x))


ACTIVATIONS = ("relu", "tanh", "sigmoid", "swish", "gelu", "hard_sigmoid")


def activations_model() -> Any:
    """Activation layers of every name, ReLU(max_value=6), a custom hard swish, softmax."""
    k = _keras()
    layers = k.layers
    inputs = k.Input((12,))
    x = inputs
    for index, name in enumerate(ACTIVATIONS):
        x = layers.Dense(12, name=f"dense{index}")(x)
        x = layers.Activation(name, name=f"act_{name}")(x)
    x = layers.ReLU(6.0, name="relu6")(layers.Dense(12, name="dense_relu6")(x))
    x = hard_swish_class()(name="hard_swish")(layers.Dense(12, name="dense_hs")(x))
    x = layers.Dense(CLASSES, name="logits")(x)
    return k.Model(inputs, layers.Activation("softmax")(x))


VOCABULARY = 20


def embedding_model() -> Any:
    k = _keras()
    inputs = k.Input((10,))
    x = k.layers.Embedding(VOCABULARY, 8, name="embed")(inputs)
    x = k.layers.GlobalAveragePooling1D()(x)
    return k.Model(inputs, k.layers.Dense(CLASSES, activation="softmax", name="logits")(x))


def recurrent_model(kind: str, bidirectional: bool = False) -> Any:
    """Two stacked recurrent layers (a sequence, then the last state), optionally Bidirectional."""
    k = _keras()
    layers = k.layers
    inputs = k.Input((8, 4))
    cls = getattr(layers, kind)
    first, second = cls(8, return_sequences=True, name="rnn0"), cls(8, name="rnn1")
    if bidirectional:
        first = layers.Bidirectional(first, name="bi0")
        second = layers.Bidirectional(second, merge_mode="sum", name="bi1")
    x = second(first(inputs))
    return k.Model(inputs, layers.Dense(CLASSES, activation="softmax", name="logits")(x))


BUILDERS = {
    "conv2d": conv2d_model,
    "conv1d": conv1d_model,
    "activations": activations_model,
    "embedding": embedding_model,
    "lstm": lambda: recurrent_model("LSTM"),
    "gru": lambda: recurrent_model("GRU"),
    "simple_rnn": lambda: recurrent_model("SimpleRNN"),
    "bi_lstm": lambda: recurrent_model("LSTM", True),
    "bi_gru": lambda: recurrent_model("GRU", True),
    "bi_simple_rnn": lambda: recurrent_model("SimpleRNN", True),
}
GROUPS = tuple(BUILDERS)


def synthetic_data(model: Any, seed: int = 0) -> Any:
    """A DatasetSplits whose class is the band of a fixed linear score (or token count)."""
    from edgesmith.zoo.datasets import DatasetSplits

    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape[1:])
    pool = 3 * SAMPLES
    if any(type(layer).__name__ == "Embedding" for layer in model.layers):
        x = rng.integers(0, VOCABULARY, size=(pool, *shape)).astype(np.float32)
        score = (x < VOCABULARY // 2).sum(axis=1) + rng.uniform(-0.3, 0.3, size=pool)
    else:
        x = rng.normal(size=(pool, *shape)).astype(np.float32)
        weights = np.random.default_rng(seed + 1).normal(size=int(np.prod(shape)))
        score = x.reshape(pool, -1) @ weights
    edges = np.quantile(score, [0.25, 0.5, 0.75])
    # Keep the samples farthest from a band edge: the classes have a margin.
    keep = np.sort(np.argsort(-np.abs(score[:, None] - edges[None]).min(axis=1))[:SAMPLES])
    x, y = x[keep], np.digitize(score[keep], edges).astype(np.int64)
    order = rng.permutation(SAMPLES)
    x, y = x[order], y[order]
    return DatasetSplits(
        name="synthetic",
        task="classification",
        x_train=x[:160],
        y_train=y[:160],
        x_val=x[160:180],
        y_val=y[160:180],
        x_test=x[180:],
        y_test=y[180:],
        class_names=tuple(str(c) for c in range(CLASSES)),
        preprocessing={},
    )


_TRAINED: dict[str, tuple[Any, Any]] = {}


def trained(group: str) -> tuple[Any, Any]:
    """The group's model trained for a few epochs on its synthetic data (once per run)."""
    if group not in _TRAINED:
        from edgesmith.zoo.tfkeras import set_seed
        from edgesmith.zoo.train import train_loop

        set_seed(0)
        model = BUILDERS[group]()
        data = synthetic_data(model)
        train_loop(model, data, epochs=BASE_EPOCHS, learning_rate=1e-2, batch_size=32, task="train")
        _TRAINED[group] = (model, data)
    return _TRAINED[group]


def kernel_layers(model: Any) -> set[str]:
    return {layer.name for layer in model.layers if kernels(layer)}


def kernel_values(model: Any, name: str) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for _, v in kernels(model.get_layer(name))]


# -- plans: fast, no training ----------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS)
def test_every_technique_plans_every_layer(group):
    """No group stops a technique: kernel layers are targets, the rest pass or are left."""
    model = BUILDERS[group]()
    normalisation = {"BatchNormalization", "LayerNormalization", "Normalization"}
    expected = {layer.name for layer in model.layers if kernels(layer)} - {
        layer.name for layer in model.layers if type(layer).__name__ in normalisation
    }
    for technique, config in (
        (prune, prune.PruneConfig(sparsity=0.5, epochs=1)),
        (cluster, cluster.ClusterConfig(clusters=16, epochs=1)),
    ):
        plan = technique.plan(model, config)
        assert set(plan.targets) == expected, technique.__name__
        assert not plan.unsupported
    plan = qat.plan(model, qat.QATConfig(epochs=1))
    weighted = {layer.name for layer in model.layers if layer.weights}
    assert weighted <= set(plan.targets)
    assert not plan.unsupported


def test_qat_gives_an_unknown_weightless_layer_an_output_quantizer():
    from edgesmith.compress.qat import _registry, annotation

    model = activations_model()
    found = annotation(model.get_layer("hard_swish"), _registry())
    assert found.how == "own" and found.config == {"weights": [], "output": True}
    # An Activation name tfmot refuses gets the same; one it knows stays tfmot's.
    assert annotation(model.get_layer("act_hard_sigmoid"), _registry()).how == "own"
    assert annotation(model.get_layer("act_swish"), _registry()).how == "tfmot"


def test_qat_refuses_a_recurrent_layer_it_cannot_unroll():
    k = _keras()
    inputs = k.Input((6, 3))
    outputs = k.layers.GRU(4, reset_after=False, name="old_gru")(inputs)
    with pytest.raises(ConfigError, match=r"GRU 'old_gru' has reset_after=False") as info:
        qat.plan(k.Model(inputs, outputs), qat.QATConfig())
    assert "exclude='^old_gru$'" in str(info.value)


@pytest.mark.parametrize(
    ("kind", "options"),
    [("GRU", {}), ("SimpleRNN", {}), ("LSTM", {"go_backwards": True}), ("GRU", {"bi": "concat"})],
)
def test_quantized_rnn_computes_the_keras_layer_up_to_int8_rounding(kind, options):
    from edgesmith.compress.qat_rnn import calibrate, rnn_twin
    from edgesmith.zoo.tfkeras import set_seed

    k = _keras()
    set_seed(0)
    options = dict(options)
    merge = options.pop("bi", None)
    layer = getattr(k.layers, kind)(8, return_sequences=True, **options)
    if merge:
        layer = k.layers.Bidirectional(layer, merge_mode=merge)
    k.Model(inputs := k.Input((6, 3)), layer(inputs))
    x = np.random.default_rng(0).normal(size=(16, 6, 3)).astype(np.float32)
    expected = np.asarray(layer(x))
    twin = rnn_twin(layer)
    object.__setattr__(twin, "collecting", {})
    exact = np.asarray(twin(x))  # the float replay calibration reads is the Keras layer
    object.__setattr__(twin, "collecting", None)
    np.testing.assert_allclose(exact, expected, atol=1e-5)
    calibrate(twin, [x])
    got = np.asarray(twin(x, training=False))
    assert got.shape == expected.shape
    assert 0 < np.abs(got - expected).max() < 0.1  # it rounds, a few int8 steps at most


def test_a_quantized_rnn_round_trips_through_a_saved_file(tmp_path):
    from edgesmith.compress.qat_rnn import calibrate, rnn_twin
    from edgesmith.zoo.quantized import quantize_scope

    k = _keras()
    layer = k.layers.Bidirectional(k.layers.GRU(4), merge_mode="ave", name="bi")
    k.Model(inputs := k.Input((5, 3)), layer(inputs))
    x = np.random.default_rng(1).normal(size=(8, 5, 3)).astype(np.float32)
    twin = rnn_twin(layer)
    calibrate(twin, [x])
    inputs = k.Input((5, 3))
    model = k.Model(inputs, twin(inputs))
    model.save(tmp_path / "rnn.h5", save_format="h5")
    with quantize_scope():
        loaded = k.models.load_model(tmp_path / "rnn.h5", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# -- the techniques, one epoch each ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_prune_prunes_every_kernel_and_strips(group):
    model, data = trained(group)
    result = prune.run(model, data, prune.PruneConfig(sparsity=0.5, epochs=1))
    pruned = result.model
    assert not any("PruneLowMagnitude" in type(layer).__name__ for layer in pruned.layers)
    targets = set(result.details["plan"]["targets"])
    assert targets == kernel_layers(model) - set(result.details["plan"]["left"])
    for name in targets:
        for values in kernel_values(pruned, name):
            assert np.mean(values == 0) == pytest.approx(0.5, abs=0.1), name
    assert pruned.predict(data.x_test, verbose=0).shape == (len(data.x_test), CLASSES)


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_cluster_clusters_every_kernel_it_can(group):
    model, data = trained(group)
    result = cluster.run(model, data, cluster.ClusterConfig(clusters=16, epochs=1))
    assert set(result.clustered) == kernel_layers(model) - set(result.details["plan"]["left"])
    for name in result.clustered:
        for values in kernel_values(result.model, name):
            assert len(np.unique(values)) <= 16, name
