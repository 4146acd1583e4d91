"""--calibration / --eval files of a bare Keras model: broken files are DataErrors naming them."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.convert.source import _read_npz
from edgesmith.core.errors import DataError


def test_valid_calibration_and_eval_files(tmp_path):
    np.savez(tmp_path / "cal.npz", x=np.zeros((4, 8, 8, 1), np.float32))
    assert _read_npz(tmp_path / "cal.npz", "x")["x"].shape == (4, 8, 8, 1)
    np.savez(tmp_path / "ev.npz", x=np.zeros((2, 3), np.float32), y=np.eye(2)[[1, 0]])
    assert _read_npz(tmp_path / "ev.npz", "x", labels=True)["y"].tolist() == [1, 0]


@pytest.mark.parametrize(
    ("arrays", "labels", "message"),
    [
        (None, False, "file not found"),
        (b"", False, r"file is empty \(0 bytes\)"),
        (b"garbage!", False, "not a zip archive"),
        ({"y": np.zeros(2, np.int64)}, False, "no x array"),
        ({"x": np.array([None, 1], dtype=object)}, False, "holds Python objects"),
        ({"x": np.array([[np.nan, 1.0]])}, False, "x holds NaN or inf in 1 of 1 samples"),
        ({"x": np.array(["a", "b"])}, False, "x holds <U1 values"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, 1])}, True, "one label per sample"),
        ({"x": np.zeros((2, 2)), "y": np.array([0.5, 1.0])}, True, "not integer class labels"),
        ({"x": np.zeros((2, 2)), "y": np.array([0, -3])}, True, "negative labels"),
    ],
)
def test_broken_files_are_data_errors_naming_the_file(tmp_path, arrays, labels, message):
    path = tmp_path / "data.npz"
    if isinstance(arrays, bytes):
        path.write_bytes(arrays)
    elif arrays is not None:
        np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as err:
        _read_npz(path, "x", labels=labels)
    assert str(path) in str(err.value)


def test_calibration_file_labels_are_not_checked(tmp_path):
    """--calibration only uses x: stray labels in it are not the user's problem."""
    np.savez(tmp_path / "cal.npz", x=np.zeros((2, 3), np.float32), y=np.array(["a", "b"]))
    assert _read_npz(tmp_path / "cal.npz", "x")["x"].shape == (2, 3)
