"""A user's data files, mutated: every outcome is data, a counted skip or a DataError naming the file.

Seeded byte mutations (tests/mutate.py) of an .npz data set and of the images in a class
folder go through :func:`~edgesmith.zoo.userdata.load_user_data`, the reader behind every
command's ``--data``. Nothing else may escape: no numpy, zipfile, PIL or struct error.
``EDGESMITH_DATA_FUZZ_CASES=N`` runs N cases of each kind instead of 40.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgesmith.core.errors import DataError
from edgesmith.zoo.userdata import load_user_data
from tests.mutate import mutants

CASES = int(os.environ.get("EDGESMITH_DATA_FUZZ_CASES") or 40)


def _npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    np.savez(path, x=rng.random((60, 4, 4), dtype=np.float32), y=y)
    return path


def _image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / label / f"{i}{suffix}")
    return root


@pytest.mark.parametrize("case", range(CASES))
def test_mutated_npz_is_data_or_a_data_error_naming_the_file(tmp_path, case):
    seed = _npz(tmp_path / "seed.npz").read_bytes()
    kind, data = list(mutants(seed, CASES, seed=7))[case]
    path = tmp_path / "data.npz"
    path.write_bytes(data)
    try:
        splits = load_user_data(path, input_shape=(4, 4))
    except DataError as exc:
        assert str(path) in str(exc), kind
        assert "\n" not in str(exc).split(":", 1)[0]
        return
    assert sum(splits.sizes.values()) > 0
    assert np.isfinite(splits.x_train).all()


@pytest.mark.parametrize("case", range(CASES))
def test_a_mutated_image_is_skipped_and_named_or_still_an_image(tmp_path, case):
    root = _image_folder(tmp_path / "images")
    victim = root / "dog" / f"{case % 6}{'.png' if case % 2 else '.jpg'}"
    kind, data = list(mutants(victim.read_bytes(), CASES, seed=11))[case]
    victim.write_bytes(data)
    splits = load_user_data(root, input_shape=(8, 8, 3))
    total = sum(splits.sizes.values())
    if splits.skipped:
        assert total == 11, kind
        assert any(str(victim) in line for line in splits.skipped), splits.skipped
    else:
        assert total == 12, kind  # the damage fell where the decoder does not look
    assert splits.x_train.shape[1:] == (8, 8, 3)
    assert np.isfinite(splits.x_train).all()


def test_a_class_folder_whose_images_are_all_broken_is_an_error_naming_it(tmp_path):
    root = _image_folder(tmp_path / "images")
    for image in (root / "cat").iterdir():
        image.write_bytes(b"not an image")
    with pytest.raises(DataError) as err:
        load_user_data(root, input_shape=(8, 8, 3))
    assert "cat" in str(err.value)


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = _image_folder(tmp_path / "images")
    shutil.rmtree(root / "cat")
    (root / "cat").mkdir()
    with pytest.raises(DataError) as err:
        load_user_data(root, input_shape=(8, 8, 3))
    assert str(root / "cat") in str(err.value)
