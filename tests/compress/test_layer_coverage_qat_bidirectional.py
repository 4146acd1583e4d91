"""QAT to full int8 of the Bidirectional layer groups (the test is in
test_layer_coverage_qat.py; this file lets a second test worker take these slow groups)."""

from __future__ import annotations

import pytest

from tests.compress.test_layer_coverage_qat import BIDIRECTIONAL, check_qat_to_full_int8


@pytest.mark.slow
@pytest.mark.parametrize("group", BIDIRECTIONAL)
def test_qat_of_bidirectional_layers_converts_to_full_int8_tflite(group, tmp_path):
    check_qat_to_full_int8(group, tmp_path)
