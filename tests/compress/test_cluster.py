"""Clustering on every family: at most N distinct values per kernel, sparsity kept, wrappers gone."""

from __future__ import annotations

import pytest

from edgesmith.compress import cluster, prune
from edgesmith.compress.measure import weight_summary
from edgesmith.core.errors import ConfigError
from tests.compress.conftest import FAMILIES, custom_layer_model

MUST_CLUSTER = {
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


@pytest.mark.parametrize("family", FAMILIES)
def test_clustered_kernels_hold_at_most_n_values(family, tiny):
    case = tiny[family]
    result = cluster.run(case.model, case.data, cluster.ClusterConfig(clusters=8, epochs=1))
    clustered = result.model
    assert not [layer for layer in clustered.layers if "Cluster" in type(layer).__name__]
    assert MUST_CLUSTER[family] <= set(result.details["plan"]["targets"])
    assert result.clustered == tuple(result.details["plan"]["targets"])
    summary = weight_summary(clustered, unique_in=result.details["plan"]["targets"])
    for name in result.details["plan"]["targets"]:
        assert summary["layers"][name]["unique_weights"] <= 8, name
    assert 1 < summary["unique_weights_max"] <= 8


def test_clustering_a_pruned_model_keeps_its_zeros(tiny):
    case = tiny["cnn"]
    pruned = prune.run(case.model, case.data, prune.PruneConfig(sparsity=0.6, epochs=1)).model
    config = cluster.ClusterConfig(clusters=16, epochs=1, exclude="^logits$")
    result = cluster.run(pruned, case.data, config)
    summary = weight_summary(result.model, unique_in=list(result.clustered))
    assert summary["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert summary["unique_weights_max"] <= 16
    # The excluded layer is not clustered, and fine-tuning did not regrow its zeros.
    assert summary["layers"]["logits"]["unique_weights"] > 16
    assert summary["layers"]["logits"]["sparsity"] == pytest.approx(0.6, abs=0.01)


def test_depthwise_kernels_are_clustered_too(tiny):
    from edgesmith.zoo.builders import build_model

    data = tiny["cnn"].data
    model = build_model("dscnn", input_shape=data.input_shape, num_classes=10, width=0.5, depth=1)
    result = cluster.run(model, data, cluster.ClusterConfig(clusters=4, epochs=1))
    assert "dw1" in result.details["plan"]["targets"]
    assert weight_summary(result.model)["layers"]["dw1"]["unique_weights"] <= 4


def test_unsupported_custom_layer_fails_with_a_clear_message(tiny):
    with pytest.raises(ConfigError, match=r"cluster: cannot handle layer\(s\) 'my_scale'"):
        cluster.run(custom_layer_model(), tiny["lstm"].data, cluster.ClusterConfig())
