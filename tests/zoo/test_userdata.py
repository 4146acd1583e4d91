"""Users' own data: .npz files, image folders, arrays and tf.data sets, checked against models."""

from __future__ import annotations

import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from edgesmith.core.errors import ConfigError, DataError
from edgesmith.zoo.datasets import load_dataset
from edgesmith.zoo.imagefolder import resize_bilinear
from edgesmith.zoo.userdata import (
    check_data_for_model,
    data_from_arrays,
    data_from_tf_dataset,
    is_user_data,
    load_user_data,
)

RNG = np.random.default_rng(7)


def _disjoint_and_complete(data, total: int) -> None:
    parts = [set(data.indices[s].tolist()) for s in ("train", "val", "test")]
    assert all(parts)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(range(total))


def _xy(n: int = 100, classes: int = 3, shape: tuple[int, ...] = (4, 4)):
    x = RNG.normal(size=(n, *shape)).astype(np.float32)
    y = np.arange(n) % classes
    return x, y


def _png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _image_folder(root, classes=("cat", "dog"), per_class=6, size=(10, 12), rgb=True):
    for label, name in enumerate(classes):
        for i in range(per_class):
            shape = (*size, 3) if rgb else size
            pixels = np.full(shape, 40 * label + i, np.uint8)
            _png(root / name / f"{i:02d}.png", pixels)
    return root


# --- .npz ----------------------------------------------------------------------------------


def test_npz_with_all_splits_keeps_them_and_its_class_names(tmp_path):
    file = tmp_path / "d.npz"
    x, y = _xy(60, 2)
    np.savez(
        file,
        x_train=x[:40],
        y_train=y[:40],
        x_val=x[40:50],
        y_val=y[40:50],
        x_test=x[50:],
        y_test=y[50:],
        class_names=np.array(["ok", "defect"]),
    )
    data = load_user_data(file, input_shape=(4, 4))
    assert data.sizes == {"train": 40, "val": 10, "test": 10}
    np.testing.assert_array_equal(data.x_val, x[40:50])
    np.testing.assert_array_equal(data.y_test, y[50:])
    assert data.class_names == ("ok", "defect")
    assert data.name == str(file) and data.task == "classification"
    assert "d.npz" in data.source
    prep = data.preprocessing
    assert prep["source"] == "npz" and prep["path"] == str(file)
    assert len(prep["sha256"]) == 64 and prep["seed"] == 0
    _disjoint_and_complete(data, 60)


def test_npz_x_y_is_split_by_seed_stratified(tmp_path):
    file = tmp_path / "xy.npz"
    x, y = _xy(200, 4)
    np.savez(file, x=x, y=y)
    a, b = load_user_data(file, seed=3), load_user_data(file, seed=3)
    other = load_user_data(file, seed=4)
    assert a.sizes == {"train": 140, "val": 30, "test": 30}
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.indices["test"], b.indices["test"])
    assert not np.array_equal(a.indices["test"], other.indices["test"])
    for split in ("val", "test"):
        _, counts = np.unique(a.split(split)[1], return_counts=True)
        assert len(counts) == 4 and counts.max() - counts.min() <= 1  # stratified
    assert a.preprocessing["stratified"] is True
    assert a.preprocessing["split"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    _disjoint_and_complete(a, 200)
    np.testing.assert_array_equal(a.x_val, x[a.indices["val"]])


def test_too_few_samples_of_a_class_falls_back_to_an_unstratified_split(tmp_path):
    file = tmp_path / "rare.npz"
    x, _ = _xy(60)
    y = np.zeros(60, np.int64)
    y[:2] = 1  # two samples of class 1 cannot reach train, val and test
    np.savez(file, x=x, y=y)
    data = load_user_data(file)
    assert data.preprocessing["stratified"] is False
    _disjoint_and_complete(data, 60)


def test_missing_val_is_split_off_train(tmp_path):
    file = tmp_path / "d.npz"
    x, y = _xy(100, 2)
    np.savez(file, x_train=x[:85], y_train=y[:85], x_test=x[85:], y_test=y[85:])
    data = load_user_data(file)
    assert data.sizes == {"train": 70, "val": 15, "test": 15}
    np.testing.assert_array_equal(data.x_test, x[85:])
    train_and_val = np.concatenate([data.indices["train"], data.indices["val"]])
    assert sorted(train_and_val.tolist()) == list(range(85))


def test_split_fractions_come_from_preprocessing(tmp_path):
    file = tmp_path / "d.npz"
    np.savez(file, x=np.ones((100, 3)), y=np.arange(100) % 2)
    prep = {"source": "npz", "split": {"train": 0.8, "val": 0.1, "test": 0.1}}
    assert load_user_data(file, preprocessing=prep).sizes == {"train": 80, "val": 10, "test": 10}
    with pytest.raises(ConfigError, match="add up to 1"):
        load_user_data(file, preprocessing={"split": {"train": 0.8, "val": 0.3, "test": 0.1}})


def test_one_hot_and_whole_float_labels_become_integers(tmp_path):
    file = tmp_path / "d.npz"
    y = np.arange(60) % 3
    np.savez(file, x=np.ones((60, 2)), y=np.eye(3, dtype=np.float32)[y])
    data = load_user_data(file)
    assert data.y_train.dtype == np.int64 and data.class_names == ("0", "1", "2")
    np.testing.assert_array_equal(data.split("all")[1][np.argsort(_all_index(data))], y)
    np.savez(file, x=np.ones((60, 2)), y=y.astype(np.float64))
    assert load_user_data(file).y_val.dtype == np.int64


def _all_index(data):
    return np.concatenate([data.indices[s] for s in ("train", "val", "test")])


def test_channel_axis_is_added_and_dtype_cast(tmp_path):
    file = tmp_path / "d.npz"
    np.savez(file, x=np.arange(60 * 4).reshape(60, 2, 2).astype(np.float64), y=np.arange(60) % 2)
    data = load_user_data(file, input_shape=(2, 2, 1))
    assert data.input_shape == (2, 2, 1) and data.x_train.dtype == np.float32
    tokens = load_user_data(file, input_shape=(2, 2), input_dtype="int32")
    assert tokens.x_train.dtype == np.int32


@pytest.mark.parametrize(
    ("arrays", "fragments"),
    [
        ({"a": np.ones(3), "b": np.ones(3)}, ["has arrays ['a', 'b']", "x_train and y_train"]),
        ({"x_train": np.ones((9, 2))}, ["has arrays ['x_train']"]),
        (
            {"x_train": np.ones((9, 2)), "y_train": np.arange(9) % 2, "x_val": np.ones((3, 2))},
            ["has x_val but no y_val"],
        ),
        ({"x": np.ones((10, 2)), "y": np.arange(9) % 2}, ["x has 10 samples", "y has 9 labels"]),
        ({"x": np.array(["a", "b"] * 10), "y": np.arange(20) % 2}, ["x holds <U1", "model input"]),
        ({"x": np.ones((20, 2)), "y": np.zeros(20)}, ["fewer than 2 classes"]),
        ({"x": np.ones((20, 2)), "y": np.arange(20) % 2 - 1}, ["10 negative labels"]),
        ({"x": np.ones((20, 2)), "y": (np.arange(20) % 2) + 0.5}, ["20 fractional labels"]),
        ({"x": np.ones((20, 2)), "y": np.ones((20, 3))}, ["rows are not one-hot"]),
        ({"x": np.ones((3, 2)), "y": np.arange(3) % 2}, ["leave the val split empty"]),
        ({"x": np.ones(20), "y": np.arange(20) % 2}, ["x has shape (20,)"]),
        (
            {"x": np.ones((20, 2)), "y": np.arange(20) % 3, "class_names": np.array(["a", "b"])},
            ["labels go up to 2 but there are 2 class names"],
        ),
    ],
)
def test_bad_npz_contents_name_the_file_and_the_problem(tmp_path, arrays, fragments):
    file = tmp_path / "bad.npz"
    np.savez(file, **arrays)
    with pytest.raises(DataError) as info:
        load_user_data(file)
    message = str(info.value)
    assert str(file) in message
    for fragment in fragments:
        assert fragment in message


def test_nan_and_inf_are_counted_in_the_array_that_holds_them(tmp_path):
    file = tmp_path / "nan.npz"
    x, y = _xy(40, 2)
    x_test = x[:10].copy()
    x_test[2, 0, 0] = np.nan
    x_test[5, 1, 1] = np.inf
    x_test[5, 1, 2] = np.nan
    np.savez(file, x_train=x, y_train=y, x_test=x_test, y_test=y[:10])
    with pytest.raises(DataError, match=r"x_test holds 3 NaN/inf values in 2 of 10 samples"):
        load_user_data(file)
    np.savez(file, x=x, y=np.where(np.arange(40) == 3, np.nan, y))
    with pytest.raises(DataError, match=r"bad.npz|nan.npz: y holds 1 NaN/inf"):
        load_user_data(file)


def test_wrong_dims_for_the_model_input(tmp_path):
    file = tmp_path / "d.npz"
    x, y = _xy(40, 2)
    np.savez(file, x=x, y=y)
    with pytest.raises(DataError, match=r"d.npz: x has 3 dims .* needs 4"):
        load_user_data(file, input_shape=(4, 4, 3))
    with pytest.raises(DataError, match=r"d.npz: x has samples of shape \(4, 4\)"):
        load_user_data(file, input_shape=(5, None))
    assert load_user_data(file, input_shape=(None, 4)).input_shape == (4, 4)


def test_corrupt_and_truncated_npz_are_data_errors(tmp_path):
    good = tmp_path / "good.npz"
    x, y = _xy(40, 2)
    np.savez(good, x=x, y=y)
    raw = good.read_bytes()
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    garbage = tmp_path / "junk.npz"
    garbage.write_bytes(b"not an archive at all")
    for file in (truncated, garbage):
        with pytest.raises(DataError, match=str(file)):
            load_user_data(file)
    with zipfile.ZipFile(tmp_path / "pickle.npz", "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY garbage header")
    with pytest.raises(DataError, match=r"no valid \.npy header"):
        load_user_data(tmp_path / "pickle.npz")


def test_missing_path_and_unknown_source(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_user_data(tmp_path / "none.npz")
    with pytest.raises(ConfigError, match="arrays"):
        load_user_data(tmp_path, preprocessing={"source": "arrays"})


# --- image folders ---------------------------------------------------------------------------


def test_rgb_images_to_a_grayscale_model_resized_and_scaled(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    data = load_user_data(root, input_shape=(5, 6, 1), image_scale=1 / 255)
    assert data.input_shape == (5, 6, 1) and data.x_train.dtype == np.float32
    assert data.class_names == ("cat", "dog") and sum(data.sizes.values()) == 12
    # Uniform images stay uniform: value (40 * label + i) / 255.
    x, y = data.split("all")
    order = np.argsort(_all_index(data))
    expected = np.array([40 * label + i for label in (0, 1) for i in range(6)]) / 255
    np.testing.assert_allclose(x[order][:, 2, 3, 0], expected, rtol=1e-5)
    np.testing.assert_array_equal(y[order], [0] * 6 + [1] * 6)
    prep = data.preprocessing
    assert prep["source"] == "images" and prep["image_size"] == [5, 6]
    assert prep["color_mode"] == "grayscale" and prep["class_names"] == ["cat", "dog"]
    assert prep["image_scale"] == pytest.approx(1 / 255) and len(prep["sha256"]) == 64


def test_rgb_model_gets_three_channels_in_0_255_and_grayscale_is_replicated(tmp_path):
    root = tmp_path / "imgs"
    colours = {"red": (200, 10, 10), "blue": (10, 10, 200)}
    for name, colour in colours.items():
        for i in range(5):
            _png(root / name / f"{i}.png", np.tile(np.array(colour, np.uint8), (4, 4, 1)))
    _png(root / "red" / "gray.png", np.full((4, 4), 77, np.uint8))
    data = load_user_data(root, input_shape=(4, 4, 3))
    x, y = data.split("all")
    assert x.shape[1:] == (4, 4, 3) and x.max() == 200.0
    # blue sorts before red: label 0 is blue.
    assert data.class_names == ("blue", "red")
    pixels = {tuple(sample[0, 0].tolist()) for sample in x}
    assert pixels == {(200.0, 10.0, 10.0), (10.0, 10.0, 200.0), (77.0, 77.0, 77.0)}
    assert all(sample[0, 0, 2] == 200.0 for sample in x[y == 0])


def test_resize_samples_like_tensorflow():
    from edgesmith.zoo.tfkeras import tf

    image = RNG.integers(0, 256, (13, 9, 3)).astype(np.float32)
    for size in ((5, 4), (20, 31), (13, 3)):
        expected = tf().image.resize(image, size, method="bilinear").numpy()
        np.testing.assert_allclose(resize_bilinear(image, *size), expected, atol=1e-3)


def test_jpeg_bmp_gif_are_read_and_a_corrupt_file_is_a_named_skip(tmp_path):
    root = _image_folder(tmp_path / "imgs", per_class=5)
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(root / "cat" / "a.jpg")
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(root / "cat" / "b.BMP")
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(root / "dog" / "c.gif")
    (root / "dog" / "notes.txt").write_text("not an image, not counted")
    broken = root / "dog" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    data = load_user_data(root, input_shape=(8, 8, 1))
    assert any("skipped 1 unreadable image" in note for note in data.notes)
    assert sum(data.sizes.values()) == 13
    assert len(data.skipped) == 1 and data.skipped[0].startswith(f"{broken}: ")
    assert "1 skipped" in data.source and data.notes


def test_train_val_test_layout_gives_the_splits(tmp_path):
    root = tmp_path / "set"
    _image_folder(root / "train", per_class=4)
    _image_folder(root / "val", per_class=2)
    _image_folder(root / "test", per_class=3)
    data = load_user_data(root, input_shape=(4, 4, 1))
    assert data.sizes == {"train": 8, "val": 4, "test": 6}
    assert data.preprocessing["layout"] == "train/val/test"
    assert data.y_test.tolist() == [0, 0, 0, 1, 1, 1]


def test_layout_without_val_splits_it_off_train(tmp_path):
    root = tmp_path / "set"
    _image_folder(root / "train", per_class=10)
    _image_folder(root / "test", per_class=2)
    data = load_user_data(root, input_shape=(4, 4, 1))
    assert data.sizes["test"] == 4 and data.sizes["val"] >= 2
    assert data.sizes["train"] + data.sizes["val"] == 20


def test_image_folder_errors_name_the_folder(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "bird").mkdir()
    with pytest.raises(DataError, match=r"imgs/bird: empty class folder"):
        load_user_data(root, input_shape=(4, 4, 1))
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DataError, match=r"nothing: no class subfolders"):
        load_user_data(empty, input_shape=(4, 4, 1))
    broken = tmp_path / "broken"
    for name in ("a", "b"):
        (broken / name).mkdir(parents=True)
        (broken / name / "x.png").write_bytes(b"junk")
    unreadable = r"broken: no readable image \(2 of 2 files skipped"
    with pytest.raises(DataError, match=unreadable), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_user_data(broken, input_shape=(4, 4, 1))
    with pytest.raises(DataError, match="input shape"):
        load_user_data(tmp_path / "imgs", input_shape=(16,))
    with pytest.raises(DataError, match="input shape"):
        load_user_data(tmp_path / "imgs", input_shape=(4, 4, 2))


# --- reproducing from preprocessing --------------------------------------------------------


def test_preprocessing_round_trip_reproduces_arrays_and_split(tmp_path):
    import json

    file = tmp_path / "d.npz"
    x, y = _xy(90, 3)
    np.savez(file, x=x, y=y)
    folder = _image_folder(tmp_path / "imgs", per_class=8)
    for first in (
        load_user_data(file, input_shape=(4, 4, 1), seed=11),
        load_user_data(folder, input_shape=(6, 6, 3), image_scale=0.5, seed=5),
    ):
        stored = json.loads(json.dumps(first.preprocessing))  # JSON-able
        for again in (
            load_user_data(first.name, preprocessing=stored),
            load_dataset(first.name, preprocessing=stored),
        ):
            for split in ("train", "val", "test"):
                np.testing.assert_array_equal(again.split(split)[0], first.split(split)[0])
                np.testing.assert_array_equal(again.split(split)[1], first.split(split)[1])
            assert again.class_names == first.class_names and not again.notes


def test_stored_class_names_keep_labels_on_other_data(tmp_path):
    first = load_user_data(_image_folder(tmp_path / "a", ("cat", "dog")), input_shape=(4, 4, 1))
    only_dogs_and_cats = _image_folder(tmp_path / "b", ("dog", "cat"), per_class=7)
    other = load_user_data(only_dogs_and_cats, preprocessing=first.preprocessing)
    assert any("differ from those the preprocessing" in note for note in other.notes)
    assert other.class_names == ("cat", "dog")
    (tmp_path / "b" / "bird").mkdir()
    with pytest.raises(DataError, match="bird are not among the classes cat, dog"):
        load_user_data(tmp_path / "b", preprocessing=first.preprocessing)


def test_load_dataset_dispatches_paths_and_keeps_zoo_names(tmp_path, monkeypatch):
    file = tmp_path / "mine.npz"
    x, y = _xy(40, 2)
    np.savez(file, x=x, y=y)
    assert is_user_data(file) and is_user_data(tmp_path) and not is_user_data("digits")
    assert not is_user_data(tmp_path / "other.npz")
    data = load_dataset(file, options={"input_shape": (4, 4, 1), "seed": 2})
    assert data.input_shape == (4, 4, 1) and data.preprocessing["seed"] == 2
    assert load_dataset("mine.npz", data_dir=tmp_path).sizes == data.sizes
    with pytest.raises(DataError, match=r"missing\.npz: not found"):
        load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(ConfigError, match="vocabulary"):
        load_dataset(str(file), options={"vocabulary": 3})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()  # a folder named like a zoo set does not shadow it
    assert load_dataset("digits").input_shape == (8, 8)


# --- arrays and tf.data ---------------------------------------------------------------------


def test_data_from_arrays_splits_what_is_missing():
    x, y = _xy(100, 2)
    data = data_from_arrays(x, y, class_names=["no", "yes"], seed=1)
    assert data.sizes == {"train": 70, "val": 15, "test": 15}
    assert data.class_names == ("no", "yes") and data.preprocessing["source"] == "arrays"
    given = data_from_arrays(x[:80], y[:80], x_val=x[80:], y_val=y[80:], name="mine")
    assert given.sizes == {
        "train": 66,
        "val": 20,
        "test": 14,
    }  # 0.15 / 0.85 of 80 and given.name == "mine"
    with pytest.raises(DataError, match="mine: x_test given without y_test"):
        data_from_arrays(x, y, x_test=x, name="mine")
    with pytest.raises(DataError, match="arrays: x holds object"):
        data_from_arrays(np.array([None] * 20, dtype=object).reshape(20, 1), np.arange(20) % 2)


@pytest.mark.parametrize("how", ["unbatched", "batched", "batched-prefetched", "one-hot"])
def test_data_from_tf_dataset(how):
    from edgesmith.zoo.tfkeras import tf

    x, y = _xy(60, 3, (5,))
    labels = np.eye(3, dtype=np.float32)[y] if how == "one-hot" else y
    ds = tf().data.Dataset.from_tensor_slices((x, labels))
    if how.startswith("batched"):
        ds = ds.batch(16)
    if how.endswith("prefetched"):
        ds = ds.prefetch(2)
    data = data_from_tf_dataset(ds, name="ds", seed=0)
    assert data.input_shape == (5,) and sum(data.sizes.values()) == 60
    x_all, y_all = data.split("all")
    order = np.argsort(_all_index(data))
    np.testing.assert_allclose(x_all[order], x)
    np.testing.assert_array_equal(y_all[order], y)
    with pytest.raises(DataError, match="ds: elements are"):
        data_from_tf_dataset(tf().data.Dataset.from_tensor_slices(x), name="ds")


# --- data against the model -----------------------------------------------------------------


def test_check_data_for_model():
    x, y = _xy(60, 3, (4, 2))
    data = data_from_arrays(x, y, name="d.npz")
    ok = {"output_units": 3, "output_kind": "softmax", "where": "model m"}
    check_data_for_model(data, input_shape=(4, 2), **ok)
    check_data_for_model(data, input_shape=(None, 2), **ok)
    check_data_for_model(data, input_shape=(None, None, 2), **ok)  # with the batch axis
    with pytest.raises(DataError, match=r"d.npz: train samples have shape \(4, 2\) but model m"):
        check_data_for_model(data, input_shape=(4, 3), **ok)
    with pytest.raises(DataError, match=r"labels go up to 2 but model m has 2 output classes"):
        check_data_for_model(data, input_shape=(4, 2), **{**ok, "output_units": 2})
    with pytest.raises(DataError, match="one sigmoid unit"):
        check_data_for_model(data, input_shape=(4, 2), **{**ok, "output_kind": "sigmoid"})
    with pytest.raises(DataError, match="one logit"):
        check_data_for_model(
            data, input_shape=(4, 2), output_units=1, output_kind="logits", where="m"
        )
    with pytest.raises(DataError, match="fractional values but model m takes int32"):
        check_data_for_model(data, input_shape=(4, 2), input_dtype="int32", **ok)
    binary = data_from_arrays(np.arange(40 * 3).reshape(40, 3), np.arange(40) % 2)
    check_data_for_model(
        binary,
        input_shape=(3,),
        output_units=1,
        output_kind="sigmoid",
        input_dtype="int32",
        where="m",
    )


# --- binary classifiers: one sigmoid unit or one logit ------------------------------------


def _separable(n: int = 120):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 2)).astype(np.float32) * 0.3
    x[:, 0] += np.where(y == 1, 2.0, -2.0)
    return data_from_arrays(x, y, class_names=["neg", "pos"], seed=0)


@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_single_output_binary_model_trains_and_is_scored_by_threshold(activation):
    from edgesmith.core.metrics import accuracy
    from edgesmith.zoo.tfkeras import keras, set_seed
    from edgesmith.zoo.train import evaluate_model, output_kind, predict, train_loop

    k = keras()
    data = _separable()
    set_seed(0)  # the initial weights do not depend on the tests that ran before
    model = k.Sequential([k.Input((2,)), k.layers.Dense(1, activation=activation)])
    kind = output_kind(model)
    assert kind == ("sigmoid" if activation else "logits")
    check_data_for_model(
        data, input_shape=model.input_shape, output_units=1, output_kind=kind, where="model"
    )
    history = train_loop(model, data, epochs=2, learning_rate=0.5, batch_size=8)
    assert history["accuracy"][-1] > 0.9 and history["val_accuracy"][-1] > 0.9, history
    loss = model.loss
    assert type(loss).__name__ == "BinaryCrossentropy"
    assert loss.get_config()["from_logits"] is (activation is None)
    result = evaluate_model(model, data)
    scores = predict(model, data.x_test)
    threshold = 0.5 if activation else 0.0
    by_hand = float(np.mean((scores[:, 0] >= threshold).astype(int) == data.y_test))
    assert result["accuracy"] == pytest.approx(by_hand) and result["accuracy"] > 0.9
    assert result["accuracy"] == accuracy(data.y_test, scores, logits=activation is None)
    assert set(result) == {"accuracy", "pos_f1", "samples", "split"}


def test_softmax_and_multi_logit_models_keep_sparse_cross_entropy():
    from edgesmith.zoo.tfkeras import keras
    from edgesmith.zoo.train import _default_objective

    k = keras()
    softmax = k.Sequential([k.Input((2,)), k.layers.Dense(3, activation="softmax")])
    loss, metrics = _default_objective(k, softmax, ("accuracy",))
    assert type(loss).__name__ == "SparseCategoricalCrossentropy"
    assert loss.get_config()["from_logits"] is False and metrics == ("accuracy",)
    logits = k.Sequential([k.Input((2,)), k.layers.Dense(3)])
    loss, metrics = _default_objective(k, logits, ("accuracy",))
    assert loss.get_config()["from_logits"] is True and metrics == ("accuracy",)


def test_output_kind_reads_the_last_layer_through_wrappers():
    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.tfkeras import keras, tfmot
    from edgesmith.zoo.train import output_kind

    k, mot = keras(), tfmot()
    inputs = k.Input((4,))
    cases = {
        "softmax": [
            k.Sequential([inputs, k.layers.Dense(3, activation="softmax")]),
            k.Sequential([k.Input((4,)), k.layers.Dense(3), k.layers.Activation("softmax")]),
            k.Sequential(
                [k.Input((4,)), k.layers.Dense(3), k.layers.Softmax(), k.layers.Dropout(0.2)]
            ),
            build_model("cnn", input_shape=(8, 8, 1), num_classes=4, width=0.5, depth=1),
        ],
        "sigmoid": [k.Sequential([k.Input((4,)), k.layers.Dense(1, activation="sigmoid")])],
        "logits": [
            k.Sequential([k.Input((4,)), k.layers.Dense(1)]),
            k.Sequential([k.Input((4,)), k.layers.Dense(3, activation="relu")]),
        ],
    }
    for kind, models in cases.items():
        for model in models:
            assert output_kind(model) == kind, model.layers[-1].name
            nested = k.Sequential([k.Input(model.input_shape[1:]), model])
            assert output_kind(nested) == kind
    quantized = mot.quantization.keras.quantize_model(cases["softmax"][3])
    pruned = mot.sparsity.keras.prune_low_magnitude(cases["sigmoid"][0])
    assert output_kind(quantized) == "softmax" and output_kind(pruned) == "sigmoid"
