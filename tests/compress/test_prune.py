"""Pruning on every family: measured sparsity, 2:4 structure, wrappers stripped, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.compress import prune
from edgesmith.compress.measure import layer_kernels, m_by_n_groups, weight_summary
from edgesmith.core.errors import ConfigError
from tests.compress.conftest import FAMILIES, custom_layer_model

# The layers each family must have pruned: Conv, Dense, LSTM kernels, the Transformer's
# embedding and query/key/value/output projections.
MUST_PRUNE = {
    "cnn": {"conv0a", "conv0b", "hidden", "logits"},
    "lstm": {"lstm0", "logits"},
    "transformer": {
        "embed",
        "block0_query",
        "block0_key",
        "block0_value",
        "block0_attn_out",
        "logits",
    },
}


def _wrappers(model):
    return [layer.name for layer in model.layers if "Prune" in type(layer).__name__]


@pytest.mark.parametrize("schedule", ["constant", "poly"])
@pytest.mark.parametrize("family", FAMILIES)
def test_measured_sparsity_matches_the_target(family, schedule, tiny):
    case = tiny[family]
    before = [w.copy() for w in case.model.get_weights()]
    config = prune.PruneConfig(sparsity=0.7, schedule=schedule, epochs=1)
    result = prune.run(case.model, case.data, config)
    pruned = result.model
    assert not _wrappers(pruned)
    assert MUST_PRUNE[family] <= set(result.details["plan"]["targets"])
    summary = weight_summary(pruned)
    for name in result.details["plan"]["targets"]:
        assert abs(summary["layers"][name]["sparsity"] - 0.7) <= 0.01, name
    assert abs(summary["sparsity"] - 0.7) <= 0.01
    assert summary["nonzero_params"] < summary["params"]
    for old, new in zip(before, case.model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)  # the input model is not touched
    assert result.history["loss"], "fine-tuning ran"


@pytest.mark.parametrize("family", FAMILIES)
def test_two_four_pruned_kernels_have_two_zeros_in_every_group_of_four(family, tiny):
    case = tiny[family]
    result = prune.run(case.model, case.data, prune.PruneConfig(structure="2:4", epochs=1))
    kernels = layer_kernels(result.model)
    for name in result.details["plan"]["targets"]:
        for weight_name, values in kernels[name]:
            groups = m_by_n_groups(values, 4)
            assert len(groups) > 0
            zeros = np.sum(groups == 0, axis=1)
            assert zeros.min() >= 2, f"{name}/{weight_name}"
    # A layer whose input size is not a multiple of 4 is left dense, and says why.
    for name, why in result.details["plan"]["left"].items():
        assert "multiple of 4" in why or "kept dense" in why, name
    if family == "cnn":
        assert "conv0a" in result.details["plan"]["left"]  # one input channel


def test_depthwise_kernels_are_pruned_too(tiny):
    """tfmot prunes nothing in DepthwiseConv2D; here its kernel is pruned like any other."""
    from edgesmith.zoo.builders import build_model

    data = tiny["cnn"].data
    model = build_model("dscnn", input_shape=data.input_shape, num_classes=10, width=0.5, depth=1)
    result = prune.run(model, data, prune.PruneConfig(sparsity=0.6, epochs=1))
    assert "dw1" in result.details["plan"]["targets"]
    assert abs(weight_summary(result.model)["layers"]["dw1"]["sparsity"] - 0.6) <= 0.01


def test_exclude_leaves_matching_layers_dense(tiny):
    case = tiny["transformer"]
    config = prune.PruneConfig(sparsity=0.5, epochs=1, exclude="^(logits|embed)$")
    result = prune.run(case.model, case.data, config)
    layers = weight_summary(result.model)["layers"]
    assert layers["logits"]["sparsity"] == 0.0 and layers["embed"]["sparsity"] == 0.0
    assert result.details["plan"]["left"]["logits"] == "excluded"
    assert abs(layers["block0_query"]["sparsity"] - 0.5) <= 0.01


def test_unsupported_custom_layer_fails_with_a_clear_message(tiny):
    model = custom_layer_model()
    data = tiny["lstm"].data
    with pytest.raises(ConfigError) as info:
        prune.run(model, data, prune.PruneConfig(epochs=1))
    message = str(info.value)
    assert "'my_scale' (Scale)" in message and "exclude='^my_scale$'" in message
    config = prune.PruneConfig(sparsity=0.5, epochs=1, exclude="my_scale")
    pruned = prune.run(model, data, config).model
    assert weight_summary(pruned)["layers"]["hidden"]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_excluding_everything_is_refused(tiny):
    case = tiny["cnn"]
    with pytest.raises(ConfigError, match="no layer left to prune"):
        prune.run(case.model, case.data, prune.PruneConfig(exclude="."))


def test_a_long_constant_schedule_keeps_a_pruned_epoch_not_the_unpruned_first():
    """tfmot's first pruning step is ``frequency``: with frequency longer than an epoch the
    first epochs end unpruned, and keep_best must not pick them (it once returned 0%)."""
    from edgesmith.zoo.datasets import DatasetSplits
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = DatasetSplits("toy", "t", x[:64], y[:64], x[64:80], y[64:80], x[80:], y[80:],
                         ("0", "1"), {})  # fmt: skip
    inputs = k.Input((6,))
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(k.layers.Dense(16)(inputs)))
    # 2 steps an epoch, 30 epochs: frequency 6, the first pruning step in epoch 3.
    config = prune.PruneConfig(sparsity=0.5, schedule="constant", epochs=30, batch_size=32)
    result = prune.run(model, data, config)
    assert weight_summary(result.model)["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert result.history["kept_epoch"][0] >= 3
