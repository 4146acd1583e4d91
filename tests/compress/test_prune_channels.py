"""Channel pruning: groups found from the graph, a smaller dense rebuild equal to the zeroed
original, targets honoured, the pruned model converts, the step runs on every family."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgesmith.compress import prune
from edgesmith.compress.channel_groups import analyse
from edgesmith.compress.measure import macs
from edgesmith.compress.prune_channels import (
    importance,
    keep_counts,
    layer_widths,
    rebuild,
    select,
    share_for_target,
    zero_removed,
)
from edgesmith.compress.recipe import parse_recipe
from edgesmith.core.errors import ConfigError
from tests.compress.conftest import FAMILIES

ZOO = {
    "cnn": ("cnn", (8, 8, 1), {"width": 0.5, "depth": 2}),
    "lstm": ("lstm", (8, 8), {"width": 0.5, "depth": 2}),
    "transformer": ("transformer", (8, 8), {"width": 0.5, "depth": 1, "heads": 4}),
}


def _zoo(family: str) -> Any:
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.tfkeras import set_seed

    set_seed(0)
    arch, shape, options = ZOO[family]
    return build_model(arch, input_shape=shape, num_classes=10, **options)


def _residual() -> Any:
    """Conv + BN stem, two residual adds, a concatenation and a Flatten head."""
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    inputs = k.Input((8, 8, 3))
    x = k.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = k.layers.BatchNormalization(name="stem_bn")(x)
    x = k.layers.ReLU(name="stem_relu")(x)
    for i in range(2):
        y = k.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"res{i}a")(x)
        y = k.layers.Conv2D(8, 3, padding="same", name=f"res{i}b")(y)
        x = k.layers.Add(name=f"add{i}")([x, y])
    side = k.layers.Conv2D(6, 1, name="side")(x)
    x = k.layers.Concatenate(name="cat")([x, side])
    x = k.layers.MaxPooling2D(2, name="pool")(x)
    x = k.layers.Flatten(name="flat")(x)
    x = k.layers.Dense(12, activation="relu", name="hidden")(x)
    return k.Model(inputs, k.layers.Dense(10, activation="softmax", name="probs")(x))


def _separable() -> Any:
    """Separable and depthwise convolutions with batch normalisation between them."""
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    inputs = k.Input((8, 8, 2))
    x = k.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = k.layers.SeparableConv2D(12, 3, padding="same", name="sep")(x)
    x = k.layers.BatchNormalization(name="sep_bn")(x)
    x = k.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = k.layers.BatchNormalization(name="dw_bn")(x)
    x = k.layers.Conv2D(10, 1, activation="relu", name="pw")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    return k.Model(inputs, k.layers.Dense(4, name="logits")(x))


def _gru() -> Any:
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    inputs = k.Input((6, 5))
    x = k.layers.GRU(12, return_sequences=True, name="gru0")(inputs)
    x = k.layers.SimpleRNN(8, name="rnn1")(x)
    return k.Model(inputs, k.layers.Dense(3, name="logits")(x))


def _keras3_mha() -> Any:
    """A Keras 3 model with MultiHeadAttention, imported as tf-keras (Dense + AttentionCore)."""
    import keras as k3

    from edgesmith.zoo.keras3 import to_tf_keras

    inputs = k3.Input((6, 8))
    h = k3.layers.Dense(16, name="proj")(inputs)
    a = k3.layers.MultiHeadAttention(num_heads=4, key_dim=4, name="mha")(h, h)
    h = k3.layers.Add(name="res")([h, a])
    h = k3.layers.LayerNormalization(name="ln")(h)
    h = k3.layers.Dense(24, activation="relu", name="ffn_in")(h)
    h = k3.layers.Dense(16, name="ffn_out")(h)
    h = k3.layers.GlobalAveragePooling1D(name="pool")(h)
    model3 = k3.Model(inputs, k3.layers.Dense(5, name="logits")(h))
    model2, check = to_tf_keras(model3)
    assert check["passed"]
    return model2


MODELS = {
    **{family: (lambda f=family: _zoo(f)) for family in FAMILIES},
    "dscnn": lambda: _zoo_dscnn(),
    "residual": _residual,
    "separable": _separable,
    "gru": _gru,
    "keras3_mha": _keras3_mha,
}


def _zoo_dscnn() -> Any:
    from edgesmith.zoo.builders import build_model

    return build_model("dscnn", input_shape=(12, 8, 1), num_classes=5, width=0.25, depth=2)


def _x(model: Any, n: int = 4) -> np.ndarray:
    shape = tuple(d or 4 for d in model.input_shape[1:])
    return np.random.default_rng(1).normal(size=(n, *shape)).astype("float32")


def _randomise_normalisation(model: Any) -> None:
    """Give batch-norm statistics values other than the 0/1 they start with."""
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])


def _pruned(model: Any, share: float) -> tuple[Any, Any, list[np.ndarray]]:
    graph = analyse(model)
    kept = select(importance(model, graph), keep_counts(graph, share))
    return graph, rebuild(model, graph, kept), kept


@pytest.mark.parametrize("name", sorted(MODELS))
def test_rebuild_equals_the_original_with_removed_channels_zeroed(name):
    model = MODELS[name]()
    _randomise_normalisation(model)
    graph, small, kept = _pruned(model, 0.5)
    assert graph.groups, graph.left
    x = _x(model)
    zeroed = zero_removed(model, graph, kept)
    np.testing.assert_allclose(small(x).numpy(), zeroed(x).numpy(), rtol=1e-4, atol=1e-5)
    # the zeroing matters: the full model computes something else
    assert np.max(np.abs(model(x).numpy() - zeroed(x).numpy())) > 1e-6
    assert small.count_params() < model.count_params()
    assert macs(small)["total"] < macs(model)["total"]
    assert small.output_shape == model.output_shape


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_count_drops_as_expected(name):
    """Removing half the channels of every group: every pruned layer's width halves."""
    model = MODELS[name]()
    graph, small, _ = _pruned(model, 0.5)
    before, after = layer_widths(model), layer_widths(small)
    for group in graph.groups:
        for layer in group.layers:
            expected = before[layer] * max(1, round(group.items * 0.5)) // group.items
            assert after[layer] == expected, (layer, before[layer], after[layer])
    for layer in graph.left:
        if layer in before:
            assert after[layer] == before[layer], layer
    # a Dense layer between two pruned groups keeps about a quarter of its kernel
    assert small.count_params() < 0.6 * model.count_params()


def test_groups_follow_the_graph():
    residual = analyse(_residual())
    names = {g.name: g for g in residual.groups}
    # the stem and both residual branches' second convs are one group (joined by adds)
    assert set(names["stem"].layers) == {"stem", "res0b", "res1b"}
    assert "probs" in residual.left and "softmax" in residual.left["probs"]
    lstm = analyse(_zoo("lstm"))
    assert [g.kind for g in lstm.groups] == ["units", "units"]
    transformer = analyse(_zoo("transformer"))
    heads = [g for g in transformer.groups if g.kind == "heads"]
    assert len(heads) == 1 and heads[0].items == 4
    assert {"block0_query", "block0_key", "block0_value"} <= set(heads[0].layers)
    inner = [g for g in transformer.groups if g.kind == "channels"]
    assert [g.layers for g in inner] == [["block0_mlp_in"]]
    # the residual stream goes through LayerNormalization: left at full width, with why
    assert "LayerNormalization" in transformer.left["embed"]


def test_keras3_attention_heads_are_pruned_and_written_back():
    from edgesmith.zoo.keras3 import to_keras3

    model = _keras3_mha()
    _, small, _ = _pruned(model, 0.5)
    assert small.get_layer("mha_attention").num_heads == 2
    assert small.get_layer("mha_query").units == 8 and small.get_layer("mha_out").units == 16
    back = to_keras3(small)
    x = _x(model)
    np.testing.assert_allclose(np.asarray(back(x)), small(x).numpy(), atol=1e-5)


def test_unknown_layers_are_left_with_a_reason_not_a_crash():
    from tests.compress.conftest import custom_layer_model

    model = custom_layer_model()
    graph = analyse(model)
    assert "my_scale" in graph.left
    assert [g.layers for g in graph.groups] == [["hidden"]]
    small = rebuild(model, graph, select(importance(model, graph), keep_counts(graph, 0.5)))
    assert small.get_layer("hidden").units == 8


@pytest.mark.parametrize("family", FAMILIES)
def test_target_params_is_honoured(family):
    model = _zoo(family)
    target = int(model.count_params() * 0.6)
    graph = analyse(model)
    share = share_for_target(model, graph, params=target, macs=None)
    small = rebuild(model, graph, [np.arange(c) for c in keep_counts(graph, share)])
    assert small.count_params() <= target
    # the smallest share: a little less pruning would miss the target
    if share > 0.05:
        looser = rebuild(model, graph, [np.arange(c) for c in keep_counts(graph, share - 0.05)])
        assert looser.count_params() > target or keep_counts(graph, share - 0.05) == keep_counts(
            graph, share
        )


def test_target_macs_and_unreachable_targets():
    model = _residual()
    graph = analyse(model)
    target = int(macs(model)["total"] * 0.5)
    share = share_for_target(model, graph, params=None, macs=target)
    small = rebuild(model, graph, [np.arange(c) for c in keep_counts(graph, share)])
    assert macs(small)["total"] <= target
    with pytest.raises(ConfigError, match="cannot be reached"):
        share_for_target(model, graph, params=10, macs=None)


@pytest.mark.parametrize("name", ["cnn", "lstm", "transformer", "residual", "keras3_mha"])
def test_pruned_model_converts_to_tflite(name):
    from edgesmith.convert import convert_keras
    from edgesmith.convert.config import ConversionConfig

    _, small, _ = _pruned(MODELS[name](), 0.5)
    blob = convert_keras(small, ConversionConfig(format="tflite", quant="none"))
    assert blob[4:8] == b"TFL3"


def test_config_validation():
    config = prune.PruneConfig(structure="channels", target_params=1000)
    assert config.channels and config.rounds == 3
    assert prune.PruneConfig.from_dict({"structure": "channels", "criterion": "taylor"}).criterion
    with pytest.raises(ConfigError, match="structure=channels"):
        prune.PruneConfig(target_params=1000)
    with pytest.raises(ConfigError, match="one of sparsity"):
        prune.PruneConfig(structure="channels", sparsity=0.5, target_macs=10)
    with pytest.raises(ConfigError, match="criterion"):
        prune.PruneConfig(structure="channels", criterion="l1")
    with pytest.raises(ConfigError, match="rounds"):
        prune.PruneConfig(structure="channels", schedule="poly")
    with pytest.raises(ConfigError, match="distill= with structure=unstructured"):
        prune.PruneConfig(sparsity=0.5, distill=False)
    (labels_only,) = parse_recipe("prune:structure=channels,sparsity=0.5,distill=false").steps
    assert labels_only.distill is False
    assert parse_recipe(labels_only.to_text()).steps == (labels_only,)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_step_prunes_and_fine_tunes_every_family(family, tiny):
    case = tiny[family]
    config = prune.PruneConfig(structure="channels", sparsity=0.5, rounds=2, epochs=1)
    result = prune.run(case.model, case.data, config)
    small = result.model
    assert small.count_params() < case.model.count_params()
    details = result.details
    assert details["macs"]["after"] < details["macs"]["before"]
    assert any(after < before for before, after in details["widths"].values())
    assert [r["round"] for r in details["rounds"]] == [1, 2]
    assert not any("Prune" in type(layer).__name__ for layer in small.layers)


@pytest.mark.parametrize("family", [*FAMILIES, "tokens"])
def test_taylor_criterion_ranks_by_loss_change(family, tiny, token_tiny):
    # tokens: an Embedding's gradient comes as IndexedSlices, not a dense tensor
    case = token_tiny if family == "tokens" else tiny[family]
    graph = analyse(case.model)
    scores = importance(case.model, graph, "taylor", case.data)
    assert [len(s) for s in scores] == [g.items for g in graph.groups]
    assert all(np.all(s >= 0) and np.any(s > 0) for s in scores)


@pytest.mark.parametrize("teacher", [True, False])
def test_fine_tuning_learns_from_the_unpruned_model_when_asked(teacher, tiny, monkeypatch):
    from edgesmith.compress import prune_channels
    from edgesmith.compress import teacher as teacher_module

    case = tiny["cnn"]
    taught = []
    real = teacher_module.teacher_logits
    monkeypatch.setattr(
        teacher_module, "teacher_logits", lambda m, d: taught.append(m) or real(m, d)
    )
    config = prune.PruneConfig(structure="channels", sparsity=0.5, rounds=2, epochs=1)
    result = prune_channels.run_channels(case.model, case.data, config, teacher=teacher)
    details = result.details
    if teacher:
        assert taught == [case.model]  # the unpruned input, its logits computed once
        assert details["teacher"] == {
            "model": "the unpruned input",
            "temperature": 2.0,
            "alpha": prune_channels.TEACHER_ALPHA,
        }
        assert "soft_loss" in result.history
    else:
        assert taught == [] and details["teacher"] is None
        assert "soft_loss" not in result.history
    assert result.model.count_params() < case.model.count_params()
