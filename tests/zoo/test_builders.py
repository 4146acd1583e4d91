"""Every architecture builds, runs a forward pass and honours its width/depth knobs."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.core.errors import ConfigError, UnknownNameError
from edgesmith.zoo.builders import build_model

CASES = {
    "cnn": ("cnn", (8, 8, 1), {}),
    "dscnn": ("dscnn", (49, 10, 1), {}),
    "lstm": ("lstm", (49, 10), {}),
    "transformer-frames": ("transformer", (49, 10), {}),
    "transformer-tokens": ("transformer", (32,), {"vocab_size": 50}),
}


def _sample(shape, kwargs, n=3):
    rng = np.random.default_rng(0)
    if "vocab_size" in kwargs:
        return rng.integers(0, kwargs["vocab_size"], size=(n, *shape)).astype(np.int32)
    return rng.standard_normal((n, *shape)).astype(np.float32)


@pytest.mark.parametrize("case", CASES)
def test_forward_pass_gives_class_probabilities(case):
    arch, shape, kwargs = CASES[case]
    model = build_model(arch, input_shape=shape, num_classes=7, **kwargs)
    probs = model(_sample(shape, kwargs), training=False).numpy()
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer("logits").units == 7


@pytest.mark.parametrize("case", CASES)
def test_half_width_student_is_smaller(case):
    arch, shape, kwargs = CASES[case]
    full = build_model(arch, input_shape=shape, num_classes=10, **kwargs)
    half = build_model(arch, input_shape=shape, num_classes=10, width=0.5, **kwargs)
    assert half.count_params() < 0.6 * full.count_params()


@pytest.mark.parametrize("arch", ["cnn", "dscnn", "lstm", "transformer"])
def test_depth_adds_blocks(arch):
    shape = {"cnn": (8, 8, 1), "dscnn": (49, 10, 1)}.get(arch, (8, 8))
    shallow = build_model(arch, input_shape=shape, num_classes=10, depth=1)
    deep = build_model(arch, input_shape=shape, num_classes=10, depth=2)
    assert len(deep.layers) > len(shallow.layers)


def test_transformer_uses_plain_dense_projections():
    model = build_model("transformer", input_shape=(8, 8), num_classes=10, depth=1)
    names = {layer.name: type(layer).__name__ for layer in model.layers}
    for part in ("query", "key", "value", "attn_out"):
        assert names[f"block0_{part}"] == "Dense"
    assert "MultiHeadAttention" not in names.values()


def test_bad_builder_arguments_are_clear():
    with pytest.raises(UnknownNameError, match="architecture 'rnn'"):
        build_model("rnn", input_shape=(8, 8), num_classes=10)
    with pytest.raises(ConfigError, match="width=0"):
        build_model("cnn", input_shape=(8, 8, 1), num_classes=10, width=0)
    with pytest.raises(ConfigError, match="Transformer input shape"):
        build_model("transformer", input_shape=(8, 8, 1), num_classes=10)
