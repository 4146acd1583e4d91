"""A user's own model and data, opened exactly like a zoo model so every stage takes them.

The zoo is one source of (model, data) among others. A model file of the user's (Keras 3
or tf-keras ``.keras``/``.h5``, a SavedModel holding a Keras model) or a live
``keras.Model`` becomes a :class:`~edgesmith.zoo.store.StoredModel` with a card written
for it, and the user's data (an ``.npz``, a folder of class folders of images, a zoo
set's name, arrays or a ``tf.data.Dataset``) becomes the
:class:`~edgesmith.zoo.datasets.DatasetSplits` the zoo's loaders return. From there
``compress``, ``convert`` and ``bench`` run the same code as for the zoo.

A Keras 3 model is rebuilt as an equivalent tf-keras model (tfmot needs Keras 2); the
rebuild is checked on real samples and the check is kept in the card's ``source``.

Example:
    >>> from edgesmith.zoo.user_model import open_model_and_data
    >>> stored, data = open_model_and_data("kws.keras", data="kws.npz")  # doctest: +SKIP
    >>> stored.card.source["keras"], stored.card.source["rebuild"]["passed"]  # doctest: +SKIP
    ('3.15.1', True)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError, DataError
from edgesmith.core.records import ModelCard, command_line, library_versions
from edgesmith.zoo.datasets import DatasetSplits
from edgesmith.zoo.store import CARD_FILE, StoredModel

# Where a card's data reference comes from when the model is a live object or arrays.
IN_MEMORY = "(in memory)"
# How many real samples the Keras 3 rebuild is compared on.
REBUILD_CHECK_SAMPLES = 64

DataArg = Any  # str | PathLike | DatasetSplits | (x, y) | tf.data.Dataset | None


def is_model_folder(model: str | os.PathLike[str]) -> bool:
    """A folder written by ``edgesmith zoo train`` or ``compress`` (it has a card)."""
    path = Path(model)
    return path.is_dir() and (path / CARD_FILE).is_file()


def is_user_model(model: Any) -> bool:
    """A live Keras model, or a path to a model file/SavedModel that is not a model folder."""
    if hasattr(model, "layers") and hasattr(model, "inputs"):
        return True
    if not isinstance(model, (str, os.PathLike)):
        return False
    path = Path(model)
    return path.is_file() or (path.is_dir() and not is_model_folder(path))


def check_model_path(model: Any) -> None:
    """A path that does not exist but looks like a file (not a zoo name): a clear error."""
    if not isinstance(model, (str, os.PathLike)) or Path(model).exists():
        return
    if Path(model).suffix or os.sep in str(model):
        from edgesmith.core.errors import ModelFileError

        raise ModelFileError(
            f"{model}: not found",
            expected="a zoo model name, a model folder, or a Keras .keras/.h5 file or SavedModel",
            fix="check the path; see `edgesmith zoo list` for zoo names",
        )


def open_model_and_data(
    model: Any,
    *,
    data: DataArg = None,
    data_dir: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    trust: bool = False,
    custom_objects: str | os.PathLike[str] | dict[str, Any] | None = None,
    image_scale: float | None = None,
    seed: int = 0,
    require_data: bool = True,
) -> tuple[StoredModel, DatasetSplits | None]:
    """The model (as a tf-keras model with its card) and its data, for any kind of source.

    ``model``: a zoo name, a model folder, a model file or a live Keras model. ``data``
    (see :func:`load_data_for`) overrides a zoo model's own set and is what a user's
    model is trained, calibrated and evaluated on; without it a user's model has no data
    (``require_data`` then raises a clear error). ``trust`` lets a model file run its
    own code (Lambda layers, unknown custom objects); ``custom_objects`` is a ``.py``
    file (or a dict) with the user's custom layers.
    """
    check_model_path(model)
    if not is_user_model(model):
        from edgesmith.zoo.evaluate import data_for, open_model

        stored = open_model(model, store=store)
        if data is None:
            return stored, data_for(stored, data_dir=data_dir)
        splits = load_data_for(stored.model, data, data_dir=data_dir, image_scale=image_scale)
        return _with_data(stored, splits), splits
    objects = _custom_objects(custom_objects)
    if isinstance(model, (str, os.PathLike)):
        from edgesmith.zoo.safe_load import inspect_model_file, load_model_file

        info = inspect_model_file(Path(model), custom_objects=objects)
        name = Path(model).stem if Path(model).is_file() else Path(model).name
        source = {
            "file": str(model),
            "sha256": content_hash(model),
            "format": info.format,
            "keras": info.keras_version,
        }
        if info.format == "savedmodel" and not info.has_keras_model:
            from edgesmith.zoo.signature_model import wrap_saved_model

            # Graphs only (keras.Model.export, tf.saved_model.save): it converts and
            # benchmarks; there are no Keras layers to compress.
            loaded = wrap_saved_model(Path(model))
            source["convert_only"] = True
        else:
            loaded, info = load_model_file(Path(model), trust=trust, custom_objects=objects)
        learning_rate = info.learning_rate
    else:
        loaded, name = model, getattr(model, "name", "model") or "model"
        source = {"file": IN_MEMORY, "format": "keras.Model", "keras": _keras_version(model)}
        learning_rate = _compiled_learning_rate(model)
    splits = None
    if data is not None:
        splits = load_data_for(loaded, data, data_dir=data_dir, image_scale=image_scale, seed=seed)
    elif require_data:
        raise ConfigError(
            f"{source['file']}: a model of your own with no data",
            expected="data to train, calibrate and evaluate it on",
            fix="pass --data PATH (an .npz with x_train/y_train/... or x/y, a folder of class "
            "folders of images, or a zoo data set name)",
        )
    # A user who trusted the file or gave its custom objects opted in to running its code:
    # layers with no tf-keras rebuild then run as wrapped Keras 3 layers.
    opted_in = trust or objects is not None
    tf_model = _as_tf_keras(loaded, splits, source, wrap_unknown=opted_in)
    # How it was trained, as far as the file says: fine-tuning starts at its rate.
    trained = {"train": {"learning_rate": learning_rate}} if learning_rate else {}
    card = user_card(tf_model, name=name, data=splits, source=source, seed=seed, builder=trained)
    preprocessing = dict(splits.preprocessing) if splits is not None else {}
    path = Path(model) if isinstance(model, (str, os.PathLike)) else Path(IN_MEMORY)
    return StoredModel(tf_model, card, preprocessing, path), splits


def import_model(
    model: Any,
    *,
    out: str | os.PathLike[str],
    name: str | None = None,
    data: DataArg,
    **options: Any,
) -> Path:
    """Write a model of the user's as a model folder (the zoo store's layout) at ``out``.

    ``options`` are :func:`open_model_and_data`'s. ``compress``, ``convert`` and
    ``zoo eval`` then take the folder as they take a zoo model; its preprocessing names
    the data file, which is read again (same split, same settings) wherever it is needed.
    """
    from dataclasses import replace

    from edgesmith.zoo.store import ModelStore

    stored, _ = open_model_and_data(model, data=data, **options)
    card = replace(stored.card, name=name) if name else stored.card
    out = Path(out)
    ModelStore(out.parent).save(stored.model, card, stored.preprocessing, name=out.name)
    return out


def load_data_for(
    model: Any,
    data: DataArg,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    image_scale: float | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """``data`` as splits shaped for ``model`` (Keras 2 or 3), checked against it.

    ``data``: a path to an ``.npz`` or an image folder, a zoo data set name, a
    :class:`DatasetSplits`, an ``(x, y)`` pair of arrays or a ``tf.data.Dataset`` of
    ``(x, y)``.
    """
    from edgesmith.zoo import userdata

    shape = tuple(model.input_shape[1:])
    dtype = _input_dtype(model)
    if isinstance(data, DatasetSplits):
        splits = data
    elif isinstance(data, tuple) and len(data) == 2:
        splits = userdata.data_from_arrays(*data, seed=seed)
    elif hasattr(data, "element_spec"):
        splits = userdata.data_from_tf_dataset(data, seed=seed)
    elif isinstance(data, (str, os.PathLike)) and userdata.is_user_data(data):
        splits = userdata.load_user_data(
            data, input_shape=shape, input_dtype=dtype, image_scale=image_scale, seed=seed
        )
    elif isinstance(data, str):
        from edgesmith.zoo.datasets import load_dataset

        splits = load_dataset(data, data_dir=data_dir)
        layout = "tokens" if dtype.startswith("int") else "image" if len(shape) == 3 else "sequence"
        splits = splits.with_layout(layout)
    else:
        raise DataError(
            f"--data {data!r}",
            expected="an .npz file, a folder of class folders of images, a zoo data set "
            "name, (x, y) arrays or a tf.data.Dataset of (x, y)",
            fix="check the path exists",
        )
    if splits.preprocessing is not None:
        splits.preprocessing.setdefault("input_shape", list(shape))
    from edgesmith.zoo.train import output_kind

    userdata.check_data_for_model(
        splits,
        input_shape=shape,
        output_units=int(model.output_shape[-1]),
        output_kind=output_kind(model),
        input_dtype=dtype,
        where=str(data) if isinstance(data, (str, os.PathLike)) else splits.name,
    )
    return splits


def user_card(
    model: Any,
    *,
    name: str,
    data: DatasetSplits | None,
    source: dict[str, Any],
    seed: int = 0,
    builder: dict[str, Any] | None = None,
) -> ModelCard:
    """The card of a user's model: what it is, where it came from, how it does on ``data``."""
    from edgesmith.zoo.train import TF_PACKAGES, evaluate_model, output_kind

    kind = output_kind(model)
    metric: dict[str, float] = {}
    accuracy = None
    if data is not None and len(data.y_test):
        result = evaluate_model(model, data, "test")
        accuracy = result["accuracy"]
        metric = {k: v for k, v in result.items() if k not in ("samples", "split")}
    shape = [int(d) if d is not None else -1 for d in model.input_shape[1:]]
    units = int(model.output_shape[-1])
    classes = list(data.class_names) if data is not None else []
    if not classes:
        classes = ["0", "1"] if kind == "sigmoid" else [str(i) for i in range(units)]
    return ModelCard(
        name=name,
        family=detect_family(model),
        task="binary-classification" if kind == "sigmoid" else "classification",
        dataset=data.name if data is not None else "",
        accuracy=accuracy,
        metric=metric,
        split=data.sizes if data is not None else {},
        seed=seed,
        params=int(model.count_params()),
        input_shape=shape,
        layout=_layout(model),
        classes=classes,
        versions=library_versions(*TF_PACKAGES, "keras"),
        command=command_line(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        source={**source, "output": kind},
        builder=dict(builder or {}),
    )


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of every file under a folder (names and bytes), streamed."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file is not path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _as_tf_keras(
    model: Any, data: DatasetSplits | None, source: dict[str, Any], *, wrap_unknown: bool = False
) -> Any:
    """A Keras 3 model rebuilt for tfmot (checked on real samples); a tf-keras one as is."""
    if not _is_keras3(model):
        return model
    from edgesmith.zoo.keras3 import to_tf_keras

    check_x = None
    if data is not None:
        check_x = data.x_test[:REBUILD_CHECK_SAMPLES]
        if len(check_x) == 0:
            check_x = data.x_train[:REBUILD_CHECK_SAMPLES]
    tf_model, check = to_tf_keras(model, check_x=check_x, wrap_unknown=wrap_unknown)
    source["rebuild"] = check
    source["keras3"] = True
    return tf_model


def _is_keras3(model: Any) -> bool:
    return type(model).__module__.startswith("keras.") or type(model).__module__ == "keras"


def _keras_version(model: Any) -> str:
    from importlib import metadata

    package = "keras" if _is_keras3(model) else "tf-keras"
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def _input_dtype(model: Any) -> str:
    dtype = getattr(model.inputs[0], "dtype", "float32")
    return str(getattr(dtype, "name", dtype))


def _layout(model: Any) -> str:
    if _input_dtype(model).startswith("int"):
        return "tokens"
    return "image" if len(model.input_shape) == 4 else "sequence"


def _custom_objects(
    custom_objects: str | os.PathLike[str] | dict[str, Any] | None,
) -> dict[str, Any] | None:
    if custom_objects is None or isinstance(custom_objects, dict):
        return custom_objects
    from edgesmith.zoo.safe_load import load_custom_objects

    return load_custom_objects(custom_objects)


def _with_data(stored: StoredModel, data: DatasetSplits) -> StoredModel:
    """A zoo model or folder evaluated on data of the user's instead of its own set."""
    from dataclasses import replace

    card = replace(stored.card, dataset=data.name, split=data.sizes)
    return replace(stored, card=card, preprocessing=dict(data.preprocessing or {}))


def detect_family(model: Any) -> str:
    """``lstm``, ``transformer`` or ``cnn`` from the layers a model contains."""
    from edgesmith.zoo.registry import RECURRENT_LAYERS

    names = set()
    for layer in all_layers(model):
        names.add(type(layer).__name__)
        if hasattr(layer, "layer"):  # wrappers: Bidirectional, tfmot's
            names.add(type(layer.layer).__name__)
    if names & RECURRENT_LAYERS:
        return "lstm"
    if names & {"AttentionCore", "MultiHeadAttention"}:
        return "transformer"
    return "cnn"


def all_layers(model: Any) -> list[Any]:
    """Every layer of ``model``, nested models' layers included."""
    layers = []
    for layer in getattr(model, "layers", []):
        layers.append(layer)
        if hasattr(layer, "layers"):
            layers.extend(all_layers(layer))
    return layers


def _compiled_learning_rate(model: Any) -> float | None:
    """The (initial) learning rate of a live model's optimizer, where it was compiled."""
    rate = getattr(getattr(model, "optimizer", None), "learning_rate", None)
    rate = getattr(rate, "initial_learning_rate", rate)  # a schedule: where it starts
    try:
        import numpy as np

        value = float(np.asarray(rate))
    except (TypeError, ValueError):
        return None
    return value if 0 < value < 10 else None
