"""QAT to full int8 on every layer group of tests/compress/test_layer_coverage.py.

A file of its own so that the test workers run it beside the prune and cluster tests; the
Bidirectional groups, the slowest to quantize, are in test_layer_coverage_qat_bidirectional.py
so that two workers share them out.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.compress import qat
from tests.compress.test_layer_coverage import GROUPS, trained

BIDIRECTIONAL = tuple(group for group in GROUPS if group.startswith("bi_"))


@pytest.mark.slow
@pytest.mark.parametrize("group", [g for g in GROUPS if g not in BIDIRECTIONAL])
def test_qat_converts_to_full_int8_tflite(group, tmp_path):
    check_qat_to_full_int8(group, tmp_path)


def check_qat_to_full_int8(group, tmp_path):
    """QAT of the group's trained model converts to a full-int8 file that agrees with it."""
    from edgesmith.convert import convert_keras
    from edgesmith.convert.config import ConversionConfig
    from edgesmith.convert.parity import predict_file
    from edgesmith.convert.tflite import int8_report

    model, data = trained(group)
    qat_model = qat.run(model, data, qat.QATConfig(epochs=1)).model
    blob = convert_keras(qat_model, ConversionConfig(quant="int8"), data.x_train, qat=True)
    report = int8_report(blob)
    if group == "embedding":  # float token ids stay float and are cast for the lookup
        assert report["float_ops"] == ["CAST"] and report["input_type"] == "FLOAT32"
    else:
        assert report["float_ops"] == [] and report["input_type"] == "INT8"
    assert report["output_type"] == "INT8"
    assert "WHILE" not in report["ops"]
    path = tmp_path / "model.tflite"
    path.write_bytes(blob)
    keras_out = qat_model.predict(data.x_test, verbose=0)
    int8_out = predict_file(path, data.x_test)
    agreement = np.mean(keras_out.argmax(-1) == int8_out.argmax(-1))
    assert agreement >= 0.85, f"int8 agrees with the QAT model on {agreement:.0%}"
