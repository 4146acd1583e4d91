"""A user's own data as a data source: an .npz file, a folder of images, arrays, a tf.data set.

Every source gives a :class:`~edgesmith.zoo.datasets.DatasetSplits` like the zoo's sets,
so training, compression, conversion and evaluation take it unchanged. The data are
checked when read (a :class:`~edgesmith.core.errors.DataError` naming the file and the
problem) and again against the model that will eat them (:func:`check_data_for_model`).

- An ``.npz`` with ``x_train``/``y_train`` (optionally ``x_val``/``y_val``,
  ``x_test``/``y_test``), or just ``x``/``y``; what is missing is split off the training
  samples, stratified by label and seeded. Optional ``class_names``.
- A folder of class subfolders of images (``zoo/imagefolder.py``), optionally under
  ``train/``, ``val/``, ``test/``.

Every reader hands its raw arrays to :func:`edgesmith.zoo.arraysplits.build_splits`, which
validates them and splits off what is missing.

The ``preprocessing`` dict of the result holds every setting (source, path, content hash,
seed, split fractions, image size...): ``load_user_data(path, preprocessing=that)``
reads the same arrays into the same split. A new kind of source is one reader module
plus one :func:`register_source` line at the bottom of this file (the ``SOURCES`` table).

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    >>> data = data_from_arrays(x, np.arange(40) % 2)
    >>> data.sizes, data.class_names
    ({'train': 28, 'val': 6, 'test': 6}, ('0', '1'))
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError, DataError
from edgesmith.core.npzfile import read_npz
from edgesmith.zoo.arraysplits import (
    DEFAULT_SPLIT,
    SPLIT_NAMES,
    build_splits,
    check_whole,
    file_sha256,
    note_changed,
    shape_text,
    split_fractions,
)
from edgesmith.zoo.datasets import DATASETS, DatasetSplits
from edgesmith.zoo.imagefolder import is_image_folder, read_image_folder

NPZ_EXPECTED = (
    "an .npz with x_train and y_train (optionally x_val, y_val, x_test, y_test), or x and y"
)
NPZ_FIX = "write it with numpy.savez(path, x=inputs, y=labels)"
ARRAYS_FIX = "pass numeric inputs x and integer labels y, one label per sample"


@dataclass(frozen=True)
class Source:
    """One kind of user data: how to recognise a path of it and how to read it."""

    kind: str
    detect: Callable[[Path], bool]
    read: Callable[[Path, dict[str, Any]], DatasetSplits]
    description: str


SOURCES: dict[str, Source] = {}


def register_source(
    kind: str,
    detect: Callable[[Path], bool],
    read: Callable[[Path, dict[str, Any]], DatasetSplits],
    description: str,
) -> None:
    """Make ``kind`` a data source: ``detect(path)`` recognises it, ``read(path, settings)`` loads.

    ``settings`` is the preprocessing dict (defaults filled in); the reader returns
    DatasetSplits whose ``preprocessing`` reproduces it.
    """
    SOURCES[kind] = Source(kind, detect, read, description)


def is_user_data(ref: str | os.PathLike[str]) -> bool:
    """Whether ``ref`` names a user's data (an existing .npz file or folder), not a zoo set.

    Example:
        >>> is_user_data("digits"), is_user_data("/no/such.npz")
        (False, False)
    """
    if str(ref) in DATASETS:
        return False
    path = Path(ref).expanduser()
    return any(source.detect(path) for source in SOURCES.values())


def load_user_data(
    path: str | os.PathLike[str],
    *,
    input_shape: Sequence[int | None] | None = None,
    input_dtype: str = "float32",
    image_scale: float | None = None,
    seed: int = 0,
    preprocessing: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Read a user's data (an .npz file or a folder of images) into train / val / test.

    Args:
        path: the .npz file or the image folder.
        input_shape: the model's input shape per sample (``None`` entries are free); an
            image folder needs it (height, width, channels) to size and colour the images.
        input_dtype: what the model eats (``int32`` for token ids); inputs are cast to it.
        image_scale: multiplies image values 0-255 (``1/255`` for a model expecting 0-1).
        seed: the seed of the split of what the source does not split itself.
        preprocessing: the ``preprocessing`` of an earlier result: its settings are used
            unchanged (the arguments above are then ignored), for the same arrays and split.

    Example:
        >>> import numpy as np, tempfile, os
        >>> file = os.path.join(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(file, x=np.zeros((30, 4)), y=np.arange(30) % 3)
        >>> load_user_data(file, input_shape=(4,)).sizes
        {'train': 20, 'val': 5, 'test': 5}
    """
    given = dict(preprocessing or {})
    file = Path(path).expanduser()
    kind = given.get("source") or next((s.kind for s in SOURCES.values() if s.detect(file)), None)
    if kind not in SOURCES:
        if kind is None:
            problem = "not found" if not file.exists() else "not an .npz file nor a folder"
            raise DataError(
                f"{file}: {problem}",
                expected="an .npz file or a folder of class subfolders of images",
                fix="check the path",
            )
        raise ConfigError(
            f"preprocessing source {kind!r}",
            expected=f"one of {', '.join(SOURCES)} (in-memory arrays cannot be read again)",
        )
    settings = {
        "source": kind,
        "seed": seed,
        "split": dict(DEFAULT_SPLIT),
        "input_shape": None if input_shape is None else list(input_shape),
        "input_dtype": input_dtype,
        **({"image_scale": image_scale} if image_scale is not None else {}),
        **given,
    }
    settings["split"] = split_fractions(settings["split"])
    return SOURCES[kind].read(file, settings)


def data_from_arrays(
    x: Any,
    y: Any,
    *,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    name: str = "arrays",
    class_names: Sequence[str] | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """DatasetSplits of in-memory arrays; missing validation and test sets are split off ``x``.

    Example:
        >>> import numpy as np
        >>> data = data_from_arrays(np.ones((10, 2)), np.arange(10) % 2, x_test=np.ones((4, 2)),
        ...                         y_test=np.array([0, 1, 0, 1]), class_names=["no", "yes"])
        >>> data.sizes
        {'train': 8, 'val': 2, 'test': 4}
    """
    pairs = {"train": (x, y), "val": (x_val, y_val), "test": (x_test, y_test)}
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (xs, ys) in pairs.items():
        if (xs is None) != (ys is None):
            raise DataError(
                f"{name}: x_{split} given without y_{split}"
                if ys is None
                else f"{name}: y_{split} given without x_{split}",
                expected="inputs and labels of a split given together",
                fix=ARRAYS_FIX,
            )
        if xs is not None:
            arrays[split] = (np.asarray(xs), np.asarray(ys))
    names = None if class_names is None else [str(c) for c in class_names]
    settings = {"source": "arrays", "seed": seed, "split": dict(DEFAULT_SPLIT)}
    settings["sha256"] = _hash_arrays(arrays)
    keys = {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}
    return build_splits(
        name, arrays, settings, names, source=f"{name}: arrays", fix=ARRAYS_FIX, keys=keys
    )


def data_from_tf_dataset(dataset: Any, *, name: str = "tf.data", seed: int = 0) -> DatasetSplits:
    """DatasetSplits of a finite ``tf.data.Dataset`` of ``(x, y)`` pairs, batched or not.

    All elements are read into memory, then split like :func:`data_from_arrays`.

    Example:
        >>> import numpy as np, tensorflow as tf  # doctest: +SKIP
        >>> ds = tf.data.Dataset.from_tensor_slices((np.ones((20, 3)), np.arange(20) % 2))  # doctest: +SKIP
        >>> data_from_tf_dataset(ds.batch(8)).sizes  # doctest: +SKIP
        {'train': 14, 'val': 3, 'test': 3}
    """
    spec = getattr(dataset, "element_spec", None)
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(
            f"{name}: elements are {spec!r}",
            expected="a tf.data.Dataset of (x, y) pairs",
            fix="map the dataset to (inputs, labels) pairs: ds.map(lambda f: (f['x'], f['y']))",
        )
    batched = _is_batched(dataset)
    xs, ys = [], []
    for x, y in dataset.as_numpy_iterator():
        xs.append(np.asarray(x) if batched else np.asarray(x)[np.newaxis])
        ys.append(np.asarray(y) if batched else np.asarray(y)[np.newaxis])
    if not xs:
        raise DataError(f"{name}: the dataset is empty", expected="(x, y) pairs", fix=ARRAYS_FIX)
    try:
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    except ValueError as exc:
        raise DataError(
            f"{name}: elements of different shapes ({exc})",
            expected="samples of one shape",
            fix="pad or resize the samples to one shape before passing the dataset",
        ) from None
    data = data_from_arrays(x_all, y_all, name=name, seed=seed)
    data.source = f"{name}: tf.data ({len(y_all)} samples{', batched' if batched else ''})"
    data.preprocessing["source"] = "tf.data"
    return data


def check_data_for_model(
    data: DatasetSplits,
    *,
    input_shape: Sequence[int | None],
    output_units: int,
    output_kind: str,
    input_dtype: str = "float32",
    where: str,
) -> None:
    """Refuse data that ``model`` (named ``where``) cannot eat, with a DataError saying why.

    ``input_shape`` is the model's input shape per sample (``model.input_shape`` with its
    batch axis is accepted too), ``None`` matching any size. Integer inputs (an Embedding)
    must be whole numbers; labels must be below ``output_units`` for class scores, and 0
    or 1 for a single sigmoid unit or logit (``output_kind`` as :func:`~edgesmith.zoo.train.output_kind`).

    Example:
        >>> import numpy as np
        >>> data = data_from_arrays(np.ones((20, 3)), np.arange(20) % 3)
        >>> check_data_for_model(data, input_shape=(3,), output_units=2, output_kind="softmax",
        ...                      where="model m")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edgesmith.core.errors.DataError: arrays: labels go up to 2 but model m has 2 output classes ...
    """
    shape = tuple(input_shape)
    fix = "give data made for this model, or a model made for this data"
    for split in SPLIT_NAMES:
        x, y = data.split(split)
        if not len(y):
            continue
        if len(shape) == x.ndim and x.ndim > 1 and shape[0] is None:
            shape = shape[1:]  # the model's shape with its batch axis
        sample = tuple(x.shape[1:])
        fits = len(sample) == len(shape) and all(
            s is None or s == d for s, d in zip(shape, sample, strict=True)
        )
        if not fits:
            raise DataError(
                f"{data.name}: {split} samples have shape {sample} but {where} takes "
                f"{shape_text(shape)}",
                expected=f"samples of shape {shape_text(shape)}",
                fix=fix,
            )
        if np.dtype(input_dtype).kind in "iu":
            check_whole(data.name, f"x_{split}", x, f"{where} takes {input_dtype} inputs", fix)
        top = int(y.max())
        if output_kind == "sigmoid" or (output_kind == "logits" and output_units == 1):
            if top > 1:
                raise DataError(
                    f"{data.name}: {split} labels go up to {top} but {where} has one "
                    f"{'sigmoid unit' if output_kind == 'sigmoid' else 'logit'} (two classes)",
                    expected="labels 0 and 1",
                    fix=fix,
                )
        elif top >= output_units:
            raise DataError(
                f"{data.name}: labels go up to {top} but {where} has {output_units} output "
                f"classes ({int((y >= output_units).sum())} {split} labels >= {output_units})",
                expected=f"labels 0..{output_units - 1}",
                fix=fix,
            )


def _hash_arrays(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for split, pair in sorted(arrays.items()):
        for array in pair:
            array = np.ascontiguousarray(array)
            digest.update(f"{split}{array.dtype}{array.shape}".encode())
            if array.dtype.kind in "iubf":
                digest.update(array.tobytes())
    return digest.hexdigest()


def _is_batched(dataset: Any) -> bool:
    """Whether a tf.data set yields batches: the outermost batch or unbatch step decides."""
    node = dataset
    for _ in range(1000):
        if node is None:
            break
        kind = type(node).__name__
        if "Unbatch" in kind:
            return False
        if "Batch" in kind:
            return True
        node = getattr(node, "_input_dataset", None)
    # No batch step found (a generator, say): labels with a leading unknown axis are batches.
    _, label = dataset.element_spec
    return len(label.shape) >= 1 and label.shape[0] is None


# --- .npz files ---------------------------------------------------------------------------


def _is_npz(path: Path) -> bool:
    return path.suffix.lower() == ".npz" and path.is_file()


def _read_npz_source(path: Path, settings: dict[str, Any]) -> DatasetSplits:
    arrays = read_npz(path, expected=NPZ_EXPECTED, fix=NPZ_FIX)
    if {"x_train", "y_train"} <= set(arrays):
        keys = {s: (f"x_{s}", f"y_{s}") for s in SPLIT_NAMES}
    elif {"x", "y"} <= set(arrays):
        keys = {"train": ("x", "y")}
    else:
        raise DataError(
            f"{path}: has arrays {sorted(arrays) or 'none'}", expected=NPZ_EXPECTED, fix=NPZ_FIX
        )
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (kx, ky) in keys.items():
        if (kx in arrays) != (ky in arrays):
            have, lack = (kx, ky) if kx in arrays else (ky, kx)
            raise DataError(
                f"{path}: has {have} but no {lack} (arrays: {sorted(arrays)})",
                expected=NPZ_EXPECTED,
                fix=NPZ_FIX,
            )
        if kx in arrays:
            pairs[split] = (arrays[kx], arrays[ky])
    names = settings.get("class_names")
    if names is None and "class_names" in arrays:
        stored = arrays["class_names"]
        if stored.dtype.kind not in "US" or stored.ndim != 1:
            raise DataError(
                f"{path}: class_names is {stored.dtype} of shape {stored.shape}",
                expected="a 1-D array of strings",
                fix=NPZ_FIX,
            )
        names = [str(c) for c in stored]
    settings = {**settings, "path": str(path)}
    settings.pop("stratified", None)
    data = build_splits(str(path), pairs, settings, names, source="", fix=NPZ_FIX, keys=keys)
    note_changed(data, settings, file_sha256(path))
    if "x" in keys["train"]:
        given = f"x/y split by seed {settings['seed']}"
    else:
        given = "/".join(s for s in SPLIT_NAMES if s in pairs) + " in the file"
    data.source = f"{path.name}: {sum(data.sizes.values())} samples ({given})"
    return data


# The table of sources: a new kind of user data is one reader module and one line here.
register_source("npz", _is_npz, _read_npz_source, "an .npz file of arrays")
register_source(
    "images", is_image_folder, read_image_folder, "a folder of class subfolders of images"
)
