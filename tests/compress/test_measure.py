"""Measurements from weights: m:n groups as TFLite lays kernels out, distinct values per channel."""

from __future__ import annotations

import numpy as np

from edgesmith.compress.measure import (
    input_channels,
    m_by_n_groups,
    m_by_n_violations,
    macs,
    unique_per_channel,
)


def test_groups_run_along_the_input_axis_of_dense_and_conv_kernels():
    dense = np.arange(8 * 3, dtype=float).reshape(8, 3)  # (in, out)
    groups = m_by_n_groups(dense, 4)
    assert groups.shape == (6, 4)
    np.testing.assert_array_equal(groups[0], dense[:4, 0])
    conv = np.arange(2 * 2 * 8 * 3, dtype=float).reshape(2, 2, 8, 3)  # (h, w, in, out)
    groups = m_by_n_groups(conv, 4)
    assert groups.shape == (2 * 2 * 3 * 2, 4)
    np.testing.assert_array_equal(groups[0], conv[0, 0, :4, 0])
    assert input_channels(dense.shape) == 8 and input_channels(conv.shape) == 8


def test_violations_count_groups_with_too_few_zeros():
    kernel = np.ones((8, 2))
    assert m_by_n_violations(kernel, 2, 4) == 4
    kernel[[0, 1, 4, 6], :] = 0.0
    assert m_by_n_violations(kernel, 2, 4) == 0
    kernel[6, 1] = 5.0
    assert m_by_n_violations(kernel, 2, 4) == 1


def test_distinct_values_per_output_channel():
    kernel = np.array([[1.0, 5.0], [2.0, 5.0], [1.0, 6.0]])
    assert unique_per_channel(kernel) == 2
    assert len(np.unique(kernel)) == 4


def test_macs_counts_convolutions_dense_and_recurrent_layers():
    from edgesmith.zoo.tfkeras import keras

    k = keras()
    inputs = k.Input((6, 6, 2))
    x = k.layers.Conv2D(4, 3, name="conv")(inputs)  # 4x4 positions x 3*3*2*4
    x = k.layers.Reshape((16, 4), name="seq")(x)
    x = k.layers.LSTM(5, name="lstm")(x)  # 16 steps x (4*20 + 5*20)
    counted = macs(k.Model(inputs, k.layers.Dense(3, name="out")(x)))  # 5*3
    assert counted["layers"] == {"conv": 16 * 72, "lstm": 16 * 180, "out": 15}
    assert counted["total"] == 16 * 72 + 16 * 180 + 15


def test_macs_of_attention_and_separable_layers():
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.tfkeras import keras

    model = build_model("transformer", input_shape=(6, 4), num_classes=3, width=0.5, heads=2)
    counted = macs(model)["layers"]
    width = model.get_layer("block0_query").units
    assert counted["block0_attention"] == 6 * 6 * (width + width)
    assert counted["block0_query"] == 6 * width * width
    k = keras()
    inputs = k.Input((5, 5, 3))
    out = k.layers.SeparableConv2D(4, 3, padding="same", name="sep")(inputs)
    assert macs(k.Model(inputs, out))["total"] == 25 * (3 * 3 * 3 + 3 * 4)
