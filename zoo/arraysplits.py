"""Checked train / val / test splits of labelled arrays, shared by every user-data reader.

:func:`build_splits` validates the arrays a reader found (numeric inputs without NaN or
inf, integer or one-hot labels, one label per sample, at least two classes, the model's
input shape), splits off what the source does not give (seeded, stratified by label where
every class has enough samples) and returns a :class:`~edgesmith.zoo.datasets.DatasetSplits`
whose ``preprocessing`` holds the settings that reproduce it. Every failure is a
:class:`~edgesmith.core.errors.DataError` naming the data and the problem.

Example:
    >>> import numpy as np
    >>> parts, stratified = split_indices(np.arange(20) % 2, {"val": 0.2, "test": 0.2}, 0, "d")
    >>> [len(parts[s]) for s in ("train", "val", "test")], stratified
    ([12, 4, 4], True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError, DataError
from edgesmith.zoo.datasets import DatasetSplits

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLIT = {"train": 0.7, "val": 0.15, "test": 0.15}


def build_splits(
    name: str,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    settings: dict[str, Any],
    class_names: Sequence[str] | None,
    *,
    source: str,
    fix: str,
    keys: dict[str, tuple[str, str]] | None = None,
) -> DatasetSplits:
    """Checked DatasetSplits of the given splits, the missing ones split off ``train``.

    ``arrays`` maps ``train`` (needed), ``val``, ``test`` to raw (x, y); ``keys`` names
    the arrays in messages; ``settings`` (seed, split fractions, input shape and dtype)
    become the result's ``preprocessing``.
    """
    keys = keys or {s: (f"x_{s}", f"y_{s}") for s in SPLIT_NAMES}
    shape = settings.get("input_shape")
    dtype = settings.get("input_dtype")  # None (in-memory arrays): kept as given
    checked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (x, y) in arrays.items():
        kx, ky = keys[split]
        labels = validate_labels(name, ky, y, fix)
        inputs = validate_inputs(name, kx, x, fix)
        if len(inputs) != len(labels):
            raise DataError(
                f"{name}: {kx} has {len(inputs)} samples but {ky} has {len(labels)} labels",
                expected="one label per sample",
                fix=fix,
            )
        inputs = _fit_shape(name, kx, inputs, shape, fix)
        if dtype is not None:
            inputs = cast_inputs(name, kx, inputs, dtype, fix)
        checked[split] = (inputs, labels)
    shapes = {tuple(x.shape[1:]) for x, _ in checked.values()}
    if len(shapes) > 1:
        raise DataError(
            f"{name}: the splits have samples of different shapes {sorted(shapes)}",
            expected="samples of one shape in every split",
            fix=fix,
        )
    names = _class_names(name, [y for _, y in checked.values()], class_names, fix)
    x_train, y_train = checked["train"]
    missing = [s for s in ("val", "test") if s not in checked]
    fractions = settings["split"]
    offset, index = 0, {}
    if missing:
        # The given train set stands for train plus the missing splits, in their proportions.
        whole = fractions["train"] + sum(fractions[s] for s in missing)
        parts = {s: fractions[s] / whole for s in missing}
        taken, stratified = split_indices(y_train, parts, settings["seed"], name)
        settings["stratified"] = bool(stratified)
        for s in missing:
            checked[s] = (x_train[taken[s]], y_train[taken[s]])
            index[s] = taken[s]
        index["train"] = taken["train"]
        checked["train"] = (x_train[taken["train"]], y_train[taken["train"]])
        offset = len(y_train)
    else:
        index["train"] = np.arange(len(y_train))
        offset = len(y_train)
    for s in ("val", "test"):
        if s not in index:
            index[s] = np.arange(offset, offset + len(checked[s][1]))
            offset += len(checked[s][1])
    for s in SPLIT_NAMES:
        if not len(checked[s][1]):
            raise DataError(
                f"{name}: the {s} split is empty",
                expected="samples in every split (train, val, test)",
                fix=fix,
            )
    settings["class_names"] = list(names)
    settings["input_shape"] = list(x_train.shape[1:])
    return DatasetSplits(
        name=name,
        task="classification",
        x_train=checked["train"][0],
        y_train=checked["train"][1],
        x_val=checked["val"][0],
        y_val=checked["val"][1],
        x_test=checked["test"][0],
        y_test=checked["test"][1],
        class_names=tuple(names),
        preprocessing=settings,
        source=source,
        indices=index,
    )


def split_indices(
    y: np.ndarray, parts: dict[str, float], seed: int, where: str
) -> tuple[dict[str, np.ndarray], bool]:
    """Seeded indices of ``parts`` (fractions of ``y``) and of ``train`` (the rest).

    Each part gets ``len(y) * fraction`` samples, rounded half up. Stratified by label (each class
    gives its share, remainders to the largest fractions) when every class can give each
    part a sample and keep one for training; else a plain seeded shuffle. Returns the
    sorted indices by split and whether they are stratified.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quotas = {s: _quotas(counts, f, _share(len(y), f)) for s, f in parts.items()}
    left = counts - sum(quotas.values())
    stratified = all((q >= 1).all() for q in quotas.values()) and (left >= 1).all()
    if stratified:
        groups = [np.flatnonzero(y == c) for c in classes]
    else:
        groups = [np.arange(len(y))]
        quotas = {s: np.array([_share(len(y), f)]) for s, f in parts.items()}
    taken: dict[str, list[np.ndarray]] = {s: [] for s in (*parts, "train")}
    for number, group in enumerate(groups):
        order = rng.permutation(group)
        start = 0
        for split in parts:
            count = int(quotas[split][number])
            taken[split].append(order[start : start + count])
            start += count
        taken["train"].append(order[start:])
    result = {s: np.sort(np.concatenate(v)).astype(np.int64) for s, v in taken.items()}
    for split, idx in result.items():
        if not len(idx):
            per_class = ", ".join(f"{c}: {n}" for c, n in zip(classes, counts, strict=True))
            raise DataError(
                f"{where}: {len(y)} samples (per class {per_class}) leave the {split} split empty",
                expected="enough samples for train, val and test",
                fix="add samples, give the val/test sets explicitly, or change the fractions "
                "in preprocessing['split']",
            )
    return result, bool(stratified)


def _share(count: int, fraction: float) -> int:
    """``count * fraction`` rounded half up (Python's round() would round 4.5 to 4)."""
    return int(np.floor(count * fraction + 0.5))


def _quotas(counts: np.ndarray, fraction: float, total: int) -> np.ndarray:
    """Per-class sample counts adding up to ``total``, proportional to ``counts``."""
    exact = counts * fraction
    quota = np.floor(exact).astype(np.int64)
    extra = max(0, min(total - int(quota.sum()), len(counts)))
    quota[np.argsort(-(exact - quota), kind="stable")[:extra]] += 1
    return quota


def validate_labels(name: str, key: str, y: np.ndarray, fix: str) -> np.ndarray:
    """Integer class labels (n,) of ``y``: integers, whole floats, or one-hot rows."""
    y = np.asarray(y)
    if y.dtype.kind not in "iubf":
        raise DataError(
            f"{name}: {key} holds {y.dtype} values",
            expected="integer class labels (or one-hot rows)",
            fix=fix,
        )
    if y.ndim == 0 or y.ndim > 2:
        raise DataError(
            f"{name}: {key} has shape {y.shape}",
            expected="one label per sample: shape (n,), (n, 1) or one-hot (n, classes)",
            fix=fix,
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(
            f"{name}: {key} holds {int(np.count_nonzero(~np.isfinite(y)))} NaN/inf values",
            expected="finite integer class labels",
            fix=fix,
        )
    if y.ndim == 2 and y.shape[1] > 1:
        one_hot = np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
        if not one_hot:
            raise DataError(
                f"{name}: {key} has shape {y.shape} but its rows are not one-hot",
                expected="one label per sample, or rows holding a single 1",
                fix=fix,
            )
        return np.argmax(y, axis=1).astype(np.int64)
    y = y.reshape(len(y))
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        bad = int(np.count_nonzero(y != np.round(y)))
        raise DataError(
            f"{name}: {key} holds {bad} fractional labels (first: {y[y != np.round(y)][0]})",
            expected="whole-number class labels",
            fix=fix,
        )
    if (y < 0).any():
        raise DataError(
            f"{name}: {key} holds {int((y < 0).sum())} negative labels (first: {y[y < 0][0]})",
            expected="class indices 0, 1, ...",
            fix=fix,
        )
    return y.astype(np.int64)


def validate_inputs(name: str, key: str, x: np.ndarray, fix: str) -> np.ndarray:
    """``x`` if it can be a model input: numbers, at least one axis, no NaN or inf."""
    x = np.asarray(x)
    if x.dtype.kind not in "iubf":
        raise DataError(
            f"{name}: {key} holds {x.dtype} values, which cannot be a model input",
            expected="numeric inputs (integer, bool or float arrays)",
            fix=fix,
        )
    if x.ndim < 2:
        raise DataError(
            f"{name}: {key} has shape {x.shape}",
            expected="samples along the first axis: shape (n, *input_shape)",
            fix=fix,
        )
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            rows = bad.reshape(len(x), -1).any(axis=1)
            raise DataError(
                f"{name}: {key} holds {int(bad.sum())} NaN/inf values in {int(rows.sum())} "
                f"of {len(x)} samples (first: sample {int(np.flatnonzero(rows)[0])})",
                expected="finite input values",
                fix=f"drop or repair those samples; {fix}",
            )
    return x


def _fit_shape(
    name: str, key: str, x: np.ndarray, shape: Sequence[int | None] | None, fix: str
) -> np.ndarray:
    """``x`` shaped (n, *shape): a missing trailing channel axis of 1 is added."""
    if shape is None:
        return x
    shape = tuple(shape)
    if x.ndim == len(shape) and shape and shape[-1] == 1:
        x = x[..., np.newaxis]  # (n, h, w) images for a (h, w, 1) model
    sample = tuple(x.shape[1:])
    if len(sample) != len(shape):
        raise DataError(
            f"{name}: {key} has {x.ndim} dims (shape {tuple(x.shape)}) but the model input "
            f"{shape_text(shape)} needs {len(shape) + 1}",
            expected=f"samples of shape {shape_text(shape)}",
            fix=fix,
        )
    if any(s is not None and s != d for s, d in zip(shape, sample, strict=True)):
        raise DataError(
            f"{name}: {key} has samples of shape {sample}",
            expected=f"samples of shape {shape_text(shape)} (the model input)",
            fix=fix,
        )
    return x


def cast_inputs(name: str, key: str, x: np.ndarray, dtype: str, fix: str) -> np.ndarray:
    """``x`` as ``dtype``; an integer dtype takes whole numbers only."""
    target = np.dtype(dtype)
    if target.kind in "iu" and x.dtype.kind == "f":
        check_whole(name, key, x, f"the model takes {dtype} inputs", fix)
    return x.astype(target, copy=False)


def check_whole(name: str, key: str, x: np.ndarray, why: str, fix: str) -> None:
    if x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
        bad = int(np.count_nonzero(x != np.round(x)))
        raise DataError(
            f"{name}: {key} holds {bad} fractional values but {why} (token ids)",
            expected="whole numbers",
            fix=fix,
        )


def _class_names(
    name: str, labels: list[np.ndarray], given: Sequence[str] | None, fix: str
) -> list[str]:
    top = max(int(y.max()) for y in labels if len(y)) if any(len(y) for y in labels) else -1
    present = np.unique(np.concatenate(labels))
    if given is not None:
        if top >= len(given):
            raise DataError(
                f"{name}: labels go up to {top} but there are {len(given)} class names",
                expected=f"labels 0..{len(given) - 1}",
                fix=fix,
            )
        names = [str(c) for c in given]
    else:
        names = [str(c) for c in range(top + 1)]
    if len(present) < 2:
        raise DataError(
            f"{name}: all labels are {present.tolist()} (fewer than 2 classes)",
            expected="samples of at least two classes",
            fix=fix,
        )
    return names


def shape_text(shape: Sequence[int | None]) -> str:
    return (
        "("
        + ", ".join("?" if s is None else str(s) for s in shape)
        + (",)" if len(shape) == 1 else ")")
    )


def split_fractions(split: Any) -> dict[str, float]:
    try:
        fractions = {s: float(split[s]) for s in SPLIT_NAMES}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            f"split fractions {split!r}",
            expected="a dict of train, val and test fractions such as "
            "{'train': 0.7, 'val': 0.15, 'test': 0.15}",
        ) from None
    if any(f <= 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ConfigError(
            f"split fractions {fractions}", expected="positive fractions that add up to 1"
        )
    return fractions


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def note_changed(data: DatasetSplits, settings: dict[str, Any], digest: str) -> None:
    """Say so when stored preprocessing meets data that differ from the data it was made on."""
    if settings.get("sha256") not in (None, digest):
        message = (
            f"{data.name}: the data differ from those the preprocessing was made from "
            f"(sha256 {digest[:12]}, stored {str(settings['sha256'])[:12]})"
        )
        data.notes.append(message)
    data.preprocessing["sha256"] = digest
