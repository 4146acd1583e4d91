"""Measurements from weights: m:n groups as TFLite lays kernels out, distinct values per channel."""

from __future__ import annotations

import numpy as np

from edgesmith.compress.measure import (
    input_channels,
    m_by_n_groups,
    m_by_n_violations,
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
