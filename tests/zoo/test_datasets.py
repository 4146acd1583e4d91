"""Data sets: deterministic, disjoint splits; preprocessing fitted on train only; clear errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgesmith.core.errors import ConfigError, DataError, UnknownNameError
from edgesmith.zoo.datasets import load_dataset, read_sms_collection, tokenize
from edgesmith.zoo.idx import write_idx
from edgesmith.zoo.wav import write_wav
from tests.conftest import DATA, needs_data


def _assert_disjoint_and_complete(data, total: int) -> None:
    parts = [set(data.indices[s].tolist()) for s in ("train", "val", "test")]
    assert all(parts), "every split holds samples"
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(range(total))
    for split, part in zip(("train", "val", "test"), parts, strict=True):
        assert len(part) == data.sizes[split]


def test_digits_split_is_deterministic_stratified_and_disjoint():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.input_shape == (8, 8)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    _assert_disjoint_and_complete(a, 1797)
    assert set(np.unique(a.y_test)) == set(range(10))
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
    x_all, y_all = a.split("all")
    assert len(x_all) == len(y_all) == 1797


@pytest.mark.parametrize(
    ("layout", "shape"), [("image", (8, 8, 1)), ("sequence", (8, 8)), ("tokens", (8, 8))]
)
def test_layout_shapes_samples_for_each_family(layout, shape):
    assert load_dataset("digits").with_layout(layout).input_shape == shape


def test_unknown_dataset_and_split_are_clear_errors():
    with pytest.raises(UnknownNameError, match="digits"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match="split 'holdout'"):
        load_dataset("digits").split("holdout")


def test_missing_data_folder_names_the_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        load_dataset("mnist", data_dir=missing)
    with pytest.raises(DataError, match="no mnist files"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_single_pair_is_split_80_10_10(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10, dtype=np.uint8), 20)
    x = rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "mnist" / "small-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "mnist" / "small-labels-idx1-ubyte.gz", y)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert data.sizes == {"train": 160, "val": 20, "test": 20}
    assert data.x_train.dtype == np.float32 and data.x_train.max() <= 1.0
    _assert_disjoint_and_complete(data, 200)


def test_mnist_official_files_keep_t10k_as_test(tmp_path):
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 100), ("t10k", 30)):
        write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert data.sizes == {"train": 90, "val": 10, "test": 30}


def test_corrupt_idx_error_names_the_file(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "bad-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    write_idx(folder / "bad-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="bad-images-idx3-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


def _fake_fsdd(folder, takes=range(12), speakers=("ann", "bob"), rate=8000):
    rng = np.random.default_rng(2)
    for digit in range(10):
        for speaker in speakers:
            for take in takes:
                tone = np.sin(2 * np.pi * (200 + 60 * digit) * np.arange(rate // 2) / rate)
                write_wav(
                    folder / f"{digit}_{speaker}_{take}.wav",
                    0.5 * tone + 0.01 * rng.standard_normal(rate // 2),
                    rate,
                )


def test_fsdd_split_by_take_and_normalised_on_train(tmp_path):
    _fake_fsdd(tmp_path / "fsdd" / "recordings")
    data = load_dataset("fsdd", data_dir=tmp_path)
    # takes 0-4 test, 5-9 val, 10+ train; 10 digits x 2 speakers each
    assert data.sizes == {"test": 100, "val": 100, "train": 40}
    assert data.input_shape == (49, 10)
    assert np.allclose(data.x_train.mean(axis=(0, 1)), 0, atol=1e-4)
    # reusing stored preprocessing reproduces the same inputs
    again = load_dataset("fsdd", data_dir=tmp_path, preprocessing=data.preprocessing)
    np.testing.assert_allclose(again.x_test, data.x_test, rtol=1e-5, atol=1e-5)


def test_fsdd_takes_never_cross_sides(tmp_path):
    folder = tmp_path / "fsdd"
    _fake_fsdd(folder, takes=(0, 3, 7, 20), speakers=("ann",))
    data = load_dataset("fsdd", data_dir=folder)
    assert data.sizes == {"test": 20, "val": 10, "train": 10}


def test_corrupt_wav_is_skipped_with_a_counted_warning(tmp_path):
    folder = tmp_path / "fsdd"
    _fake_fsdd(folder, takes=(0, 6, 12), speakers=("ann",))
    (folder / "3_ann_40.wav").write_bytes(b"RIFF not really")
    data = load_dataset("fsdd", data_dir=folder)
    assert re.search(r"skipped 1 unreadable WAV.*3_ann_40\.wav", " ".join(data.notes))
    assert sum(data.sizes.values()) == 30
    # The count is in what the loader returns, each entry naming the file and why.
    assert len(data.skipped) == 1 and "3_ann_40.wav" in data.skipped[0]
    assert "30 of 31 WAV files" in data.source


def test_fsdd_folder_of_only_bad_recordings_is_one_clear_error(tmp_path):
    folder = tmp_path / "fsdd"
    folder.mkdir()
    (folder / "3_ann_0.wav").write_bytes(b"")
    (folder / "4_ann_0.wav").write_bytes(b"RIFF\xff\xff\xff\x7fWAVEfmt ")
    with pytest.raises(DataError, match=r"no readable FSDD recordings \(2 of 2 .*3_ann_0\.wav"):
        load_dataset("fsdd", data_dir=folder)


def test_mnist_too_few_samples_to_split_is_a_data_error(tmp_path):
    folder = tmp_path / "mnist"
    write_idx(folder / "tiny-images-idx3-ubyte", np.zeros((3, 28, 28), dtype=np.uint8))
    write_idx(folder / "tiny-labels-idx1-ubyte", np.array([0, 1, 1], dtype=np.uint8))
    with pytest.raises(DataError, match=r"tiny-images-idx3-ubyte: 3 samples .*cannot be split"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_empty_images_file_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    write_idx(folder / "e-images-idx3-ubyte", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(folder / "e-labels-idx1-ubyte", np.zeros(0, dtype=np.uint8))
    with pytest.raises(DataError, match="e-images-idx3-ubyte: holds no image data"):
        load_dataset("mnist", data_dir=tmp_path)


def test_sms_with_too_few_messages_is_a_data_error(tmp_path):
    path = tmp_path / "sms-spam" / "SMSSpamCollection"
    path.parent.mkdir()
    path.write_text("ham\thello\nspam\tWIN\n", encoding="utf-8")
    with pytest.raises(DataError, match="SMSSpamCollection: 2 samples"):
        load_dataset("sms-spam", data_dir=tmp_path)


def test_fsdd_bad_option_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="n_mfc"):
        load_dataset("fsdd", data_dir=tmp_path, options={"n_mfc": 3})


def _fake_sms(path, n=200):
    rng = np.random.default_rng(3)
    lines = []
    for i in range(n):
        spam = i % 5 == 0
        words = ["win", "free", "prize", "call", "now"] if spam else ["see", "you", "at", "home"]
        text = " ".join(rng.choice(words, size=6)) + (f" uniq{i}" if i % 2 else "")
        lines.append(("spam" if spam else "ham") + "\t" + text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_sms_vocabulary_comes_from_train_only(tmp_path):
    _fake_sms(tmp_path / "sms-spam" / "SMSSpamCollection")
    data = load_dataset("sms-spam", data_dir=tmp_path, options={"min_count": 1})
    texts, _ = read_sms_collection(tmp_path / "sms-spam" / "SMSSpamCollection")
    train_words = {t for i in data.indices["train"] for t in tokenize(texts[i])}
    test_only = {t for i in data.indices["test"] for t in tokenize(texts[i])} - train_words
    vocab = set(data.preprocessing["vocabulary"])
    assert vocab <= train_words
    assert test_only and not (test_only & vocab)
    assert 1 in data.x_test  # test-only words map to the unknown-word id
    assert data.class_names == ("ham", "spam")
    assert data.x_train.dtype == np.int32 and data.input_shape == (64,)
    assert tokenize("WIN £100 now!") == ["win", "£", "100", "now", "!"]


def test_sms_malformed_line_names_file_and_line(tmp_path):
    bad = tmp_path / "sms-spam" / "SMSSpamCollection"
    bad.parent.mkdir()
    bad.write_text("ham\thello\nmaybe hello there\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"SMSSpamCollection, line 2"):
        load_dataset("sms-spam", data_dir=tmp_path)


def test_offline_download_fails_with_a_clear_message(monkeypatch, tmp_path):
    import edgesmith.zoo.datasets as datasets

    monkeypatch.delenv("EDGESMITH_DATA", raising=False)
    monkeypatch.setitem(
        datasets.PUBLIC_SOURCES, "mnist", ["http://127.0.0.1:9/train-images-idx3-ubyte.gz"]
    )
    with pytest.raises(DataError, match=r"127\.0\.0\.1.*could not be fetched"):
        load_dataset("mnist")


def test_public_download_path_reads_fetched_files(monkeypatch, tmp_path):
    """The online path: files fetched from (here, file://) URLs load like a local copy."""
    import edgesmith.zoo.datasets as datasets

    source = tmp_path / "mirror"
    write_idx(source / "train-images-idx3-ubyte.gz", np.zeros((100, 28, 28), np.uint8))
    write_idx(source / "train-labels-idx1-ubyte.gz", np.arange(100, dtype=np.uint8) % 10)
    write_idx(source / "t10k-images-idx3-ubyte.gz", np.zeros((20, 28, 28), np.uint8))
    write_idx(source / "t10k-labels-idx1-ubyte.gz", np.arange(20, dtype=np.uint8) % 10)
    urls = [f"file://{p}" for p in sorted(source.iterdir())]
    monkeypatch.delenv("EDGESMITH_DATA", raising=False)
    monkeypatch.setitem(datasets.PUBLIC_SOURCES, "mnist", urls)
    data = load_dataset("mnist")
    assert data.sizes["test"] == 20


@needs_data
@pytest.mark.parametrize(
    ("name", "total", "shape"),
    [("mnist", 8000, (28, 28)), ("fsdd", 2700, (49, 10)), ("sms-spam", 4995, (64,))],
)
def test_real_sets_load_with_expected_sizes(name, total, shape):
    data = load_dataset(name, data_dir=DATA)
    assert sum(data.sizes.values()) == total
    assert data.input_shape == shape
    if name == "fsdd":
        assert data.sizes["test"] == 300  # takes 0-4: 10 digits x 6 speakers x 5
