"""Tests for edgesmith.zoo.idx: the MNIST IDX format."""

from __future__ import annotations

import gzip
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edgesmith.core.errors import DataError
from edgesmith.zoo.idx import find_idx_pairs, load_idx_pair, read_idx, write_idx
from tests.mutate import mutants

REPO_ROOT = Path(__file__).resolve().parents[2]


def _data_root() -> Path:
    env = os.environ.get("EDGESMITH_DATA")
    root = Path(env) if env else Path("../shared/data")
    return root if root.is_absolute() else (REPO_ROOT / root).resolve()


MNIST_DIR = _data_root() / "mnist"


def _images(n: int = 5, h: int = 4, w: int = 3) -> np.ndarray:
    return np.arange(n * h * w, dtype=np.uint8).reshape(n, h, w)


def _write_pair(folder: Path, prefix: str, n: int = 5, gz: str = ".gz") -> tuple[Path, Path]:
    images = folder / f"{prefix}-images-idx3-ubyte{gz}"
    labels = folder / f"{prefix}-labels-idx1-ubyte{gz}"
    write_idx(images, _images(n))
    write_idx(labels, (np.arange(n) % 10).astype(np.uint8))
    return images, labels


@pytest.mark.parametrize("name", ["x-images-idx3-ubyte", "x-images-idx3-ubyte.gz"])
def test_round_trip_uint8(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    array = _images()
    write_idx(path, array)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    else:
        assert path.read_bytes()[:4] == bytes([0, 0, 0x08, 3])
    back = read_idx(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_other_dtypes(tmp_path: Path, dtype: type) -> None:
    path = tmp_path / "values.idx.gz"
    array = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype)
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_header_is_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([1, 2, 3], dtype=np.uint8))
    assert struct.unpack(">I", path.read_bytes()[:4])[0] == 2049
    assert struct.unpack(">I", path.read_bytes()[4:8])[0] == 3


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(DataError, match="magic") as err:
        read_idx(path)
    assert path.name in str(err.value)


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = tmp_path / "odd-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(DataError, match="dtype code 0x07") as err:
        read_idx(path)
    assert path.name in str(err.value)


@pytest.mark.parametrize("size", [0, 3, 9])
def test_short_header(tmp_path: Path, size: int) -> None:
    path = tmp_path / "short-images-idx3-ubyte"
    path.write_bytes((b"\x00\x00\x08\x03" + struct.pack(">3I", 1, 2, 2))[:size])
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert path.name in str(err.value)


def test_truncated_payload(tmp_path: Path) -> None:
    path = tmp_path / "x-images-idx3-ubyte.gz"
    header = b"\x00\x00\x08\x03" + struct.pack(">3I", 10000, 28, 28)
    path.write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(DataError) as err:
        read_idx(path)
    message = str(err.value)
    assert path.name in message
    assert "payload holds 1000 bytes, header promises 7840000" in message


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x-labels-idx1-ubyte"
    write_idx(path, np.array([1, 2, 3], dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError, match="payload holds 4 bytes, header promises 3") as err:
        read_idx(path)
    assert path.name in str(err.value)


def test_corrupt_gzip(tmp_path: Path) -> None:
    good = gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 100) + bytes(range(100)))
    path = tmp_path / "x-labels-idx1-ubyte.gz"
    path.write_bytes(good[:-12])  # cut off the tail and the CRC trailer
    with pytest.raises(DataError, match="gzip") as err:
        read_idx(path)
    assert path.name in str(err.value)

    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="gzip") as err:
        read_idx(path)
    assert path.name in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope-images-idx3-ubyte"
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert path.name in str(err.value)


def test_load_pair(tmp_path: Path) -> None:
    images, labels = _write_pair(tmp_path, "train", n=12)
    x, y = load_idx_pair(images, labels)
    assert x.dtype == np.uint8 and x.shape == (12, 4, 3)
    assert y.dtype == np.int64 and y.shape == (12,)
    np.testing.assert_array_equal(y, np.arange(12) % 10)


def test_count_mismatch(tmp_path: Path) -> None:
    images, labels = _write_pair(tmp_path, "train", n=5)
    write_idx(labels, np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match=r"5 images .* 4 labels") as err:
        load_idx_pair(images, labels)
    assert images.name in str(err.value)
    assert labels.name in str(err.value)


def test_label_out_of_range(tmp_path: Path) -> None:
    images, labels = _write_pair(tmp_path, "train", n=5)
    write_idx(labels, np.array([0, 1, 10, 3, 4], dtype=np.uint8))
    with pytest.raises(DataError, match="label 10 at index 2") as err:
        load_idx_pair(images, labels)
    assert labels.name in str(err.value)


def test_swapped_pair(tmp_path: Path) -> None:
    images, labels = _write_pair(tmp_path, "train", n=5)
    with pytest.raises(DataError, match="3-D uint8") as err:
        load_idx_pair(labels, images)
    assert labels.name in str(err.value)


def test_images_wrong_dtype(tmp_path: Path) -> None:
    images, labels = _write_pair(tmp_path, "train", n=5)
    write_idx(images, _images().astype(np.float32))
    with pytest.raises(DataError, match="float32") as err:
        load_idx_pair(images, labels)
    assert images.name in str(err.value)


def test_find_pairs(tmp_path: Path) -> None:
    train = _write_pair(tmp_path, "train", gz=".gz")
    t10k = _write_pair(tmp_path, "t10k", gz="")
    (tmp_path / "README.txt").write_text("not data")
    assert find_idx_pairs(tmp_path) == sorted([train, t10k])


def test_find_pairs_dot_variant_and_mixed_compression(tmp_path: Path) -> None:
    images = tmp_path / "train-images.idx3-ubyte"
    labels = tmp_path / "train-labels.idx1-ubyte.gz"
    write_idx(images, _images())
    write_idx(labels, np.zeros(5, dtype=np.uint8))
    assert find_idx_pairs(tmp_path) == [(images, labels)]


def test_find_pairs_raw_and_gz_copy_counted_once(tmp_path: Path) -> None:
    raw = _write_pair(tmp_path, "train", gz="")
    _write_pair(tmp_path, "train", gz=".gz")
    assert find_idx_pairs(tmp_path) == [raw]


def test_find_pairs_missing_labels(tmp_path: Path) -> None:
    _write_pair(tmp_path, "train")
    orphan = tmp_path / "extra-images-idx3-ubyte.gz"
    write_idx(orphan, _images())
    with pytest.raises(DataError) as err:
        find_idx_pairs(tmp_path)
    message = str(err.value)
    assert orphan.name in message
    assert "extra-labels-idx1-ubyte.gz" in message


def test_find_pairs_missing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "no-such-folder"
    with pytest.raises(DataError, match="does not exist") as err:
        find_idx_pairs(folder)
    assert folder.name in str(err.value)


def test_find_pairs_empty_folder(tmp_path: Path) -> None:
    assert find_idx_pairs(tmp_path) == []


@pytest.mark.skipif(
    not MNIST_DIR.is_dir(),
    reason=f"real MNIST subset not found at {MNIST_DIR} (set EDGESMITH_DATA to the shared data)",
)
def test_real_mnist8k() -> None:
    pairs = find_idx_pairs(MNIST_DIR)
    assert [images.name for images, _ in pairs] == ["mnist8k-images-idx3-ubyte.gz"]
    x, y = load_idx_pair(*pairs[0])
    assert x.shape == (8000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (8000,) and y.dtype == np.int64
    assert set(np.unique(y).tolist()) == set(range(10))
    assert 0 < x.mean() < 255


@pytest.mark.parametrize("gz", ["", ".gz"])
def test_huge_declared_dims_do_not_allocate(tmp_path: Path, gz: str) -> None:
    """A header declaring 2**32 x 2**32 x 2**32 bytes is refused without reading that much."""
    path = tmp_path / f"liar-images-idx3-ubyte{gz}"
    data = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    data += bytes(100)
    path.write_bytes(gzip.compress(data) if gz else data)
    tracemalloc.start()
    try:
        with pytest.raises(
            DataError, match=r"liar-images.*payload holds 100 bytes, header promises"
        ):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_gzip_payload_longer_than_declared_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2]) + bytes(50)))
    with pytest.raises(DataError, match=r"long-labels.*payload holds 3 bytes, header promises 2"):
        read_idx(path)


def test_zero_dimension_and_zero_length(tmp_path: Path) -> None:
    empty = tmp_path / "empty-images-idx3-ubyte"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty-images-idx3-ubyte: file holds 0 bytes"):
        read_idx(empty)
    nodims = tmp_path / "nodims"
    nodims.write_bytes(bytes([0, 0, 8, 0]))
    with pytest.raises(DataError, match="nodims: IDX header declares 0 dimensions"):
        read_idx(nodims)


def test_wrong_extension_is_read_by_content(tmp_path: Path) -> None:
    path = tmp_path / "digits.png"
    write_idx(path, _images(2))
    assert read_idx(path).shape == (2, 4, 3)
    text = tmp_path / "readme-images-idx3-ubyte"
    text.write_text("hello world")
    with pytest.raises(DataError, match="readme-images-idx3-ubyte: bad IDX magic"):
        read_idx(text)


@pytest.mark.parametrize("gz", ["", ".gz"])
def test_mutated_idx_files_give_data_error_or_an_array(tmp_path: Path, gz: str) -> None:
    """Fuzz: every mutant of a valid IDX file reads as an array or raises DataError naming it."""
    valid = tmp_path / f"valid-images-idx3-ubyte{gz}"
    write_idx(valid, _images(6, 5, 4))
    outcomes: dict[str, int] = {}
    for i, (kind, blob) in enumerate(mutants(valid.read_bytes(), 150, seed=7)):
        path = tmp_path / f"m{i}_{kind}-images-idx3-ubyte{gz}"
        path.write_bytes(blob)
        try:
            array = read_idx(path)
        except DataError as exc:
            assert path.name in str(exc)
            outcomes["error"] = outcomes.get("error", 0) + 1
        else:
            assert isinstance(array, np.ndarray) and array.nbytes <= len(blob) * 1100
            outcomes["read"] = outcomes.get("read", 0) + 1
    assert sum(outcomes.values()) == 150 and outcomes.get("error", 0) > 0
