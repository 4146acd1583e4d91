"""The recurrent layer groups (LSTM, GRU, SimpleRNN, Bidirectional) convert with parity: the
test of test_layer_coverage_convert.py, in a file of its own so a second test worker takes it."""

from __future__ import annotations

import pytest

from tests.convert.test_layer_coverage_convert import MODES, RECURRENT, check_conversion_parity


@pytest.mark.slow
@pytest.mark.parametrize("group", RECURRENT)
@pytest.mark.parametrize(("fmt", "quant"), MODES, ids=[f"{f}-{q}" for f, q in MODES])
def test_every_recurrent_group_converts_with_parity(group, fmt, quant, tmp_path):
    check_conversion_parity(group, fmt, quant, tmp_path)
