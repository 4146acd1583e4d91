"""Eval sets and input feeds of a benchmark: labelled samples matched to a model's inputs.

An eval set is the .npz that ``edgesmith zoo export-eval`` writes: ``x`` (or one array per
input name) and labels ``y``. :func:`match_eval_set` checks it against the model before any
backend loads; :func:`eval_feeds` and :func:`random_feeds` give the tensors the timed runs
take (random values of the right shapes and types when there is no eval set). TF-free.

Example:
    >>> random_feeds([TensorSpec("x", (1, 2), "int8", 0.5, 0)], set())[0].dtype
    dtype('int8')
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesmith.core.errors import ConfigError, DataError, ModelFileError
from edgesmith.core.formatting import format_shape
from edgesmith.core.npzfile import read_npz
from edgesmith.runtime.modelfile import ModelInfo
from edgesmith.runtime.runner_base import Runner, TensorSpec, is_state_input, quantize


@dataclass(frozen=True)
class EvalSet:
    """Labelled inputs for accuracy: ``arrays`` by input (``x``, or input names) and labels ``y``."""

    path: Path
    arrays: dict[str, np.ndarray]
    y: np.ndarray
    model: str | None = None
    split: str | None = None

    def __len__(self) -> int:
        return len(self.y)


def load_eval_set(path: str | os.PathLike[str]) -> EvalSet:
    """Read an eval set (.npz with ``x`` and ``y``, as ``edgesmith zoo export-eval`` writes).

    Refuses, with a DataError naming the file: a missing, empty, truncated or corrupt file,
    object arrays (never unpickled), inputs that are not numbers or hold NaN/inf, labels
    that are not integers (or one-hot rows) or are negative, and arrays whose lengths differ.

    Example:
        >>> load_eval_set("/no/such.npz")
        Traceback (most recent call last):
        ...
        edgesmith.core.errors.DataError: /no/such.npz: file not found: expected an .npz eval set with arrays x and y; write one with: edgesmith zoo export-eval NAME --out FILE.npz
    """
    path = Path(path)
    expected = "an .npz eval set with arrays x and y"
    fix = "write one with: edgesmith zoo export-eval NAME --out FILE.npz"
    arrays = read_npz(path, expected=expected, fix=fix)
    if "y" not in arrays or not any(k not in ("y", *_META) for k in arrays):
        raise DataError(f"{path}: has arrays {sorted(arrays)}", expected=expected, fix=fix)
    y = validate_labels(path, arrays.pop("y"), fix)
    meta = {k: arrays.pop(k) for k in _META if k in arrays}
    for key, x in arrays.items():
        validate_inputs(path, key, x, len(y), fix)
    return EvalSet(
        path=path,
        arrays=arrays,
        y=y,
        model=_meta_text(meta.get("model")),
        split=_meta_text(meta.get("split")),
    )


_META = ("class_names", "model", "split")


def _meta_text(value: np.ndarray | None) -> str | None:
    return None if value is None or value.size != 1 else str(value.reshape(()))


def validate_labels(path: Path, y: np.ndarray, fix: str) -> np.ndarray:
    """Integer class labels, one row per sample (one-hot rows become class indices)."""
    integral = y.dtype.kind in "iub"
    if y.ndim == 0 or len(y) == 0 or y.size == 0:
        raise DataError(
            f"{path}: y holds no labels (shape {y.shape})",
            expected="at least one integer class label per sample",
            fix=fix,
        )
    if y.dtype.kind == "f" and y.ndim == 2 and y.shape[1] > 1:  # one-hot (or soft) rows
        if not np.isfinite(y).all():
            raise DataError(
                f"{path}: y holds {int(np.count_nonzero(~np.isfinite(y)))} NaN/inf values",
                expected="finite one-hot label rows",
                fix=fix,
            )
        integral = True
    if not integral:
        raise DataError(
            f"{path}: y holds {y.dtype} values, not integer class labels",
            expected="at least one integer class label per sample",
            fix=fix,
        )
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.reshape(len(y), -1) if y.ndim > 1 and y.shape[1:] != (1,) else y.reshape(-1)
    if y.dtype.kind == "i" and (y < 0).any():
        first = int(np.flatnonzero(y.reshape(-1) < 0)[0])
        raise DataError(
            f"{path}: y holds negative labels (first: {int(y.reshape(-1)[first])})",
            expected="class indices 0, 1, ...",
            fix=fix,
        )
    return y.astype(np.int64)


def validate_inputs(path: Path, key: str, x: np.ndarray, samples: int, fix: str) -> None:
    if x.dtype.kind not in "iubf":
        raise DataError(
            f"{path}: {key} holds {x.dtype} values",
            expected="numeric inputs (integer, bool or float arrays)",
            fix=fix,
        )
    if x.ndim == 0 or len(x) != samples:
        raise DataError(
            f"{path}: {key} has {len(x) if x.ndim else 0} samples and y has {samples}",
            expected="one label per sample",
            fix=fix,
        )
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise DataError(
                f"{path}: {key} holds NaN or inf in {int(bad.sum())} of {len(x)} samples "
                f"(first: sample {int(np.flatnonzero(bad)[0])})",
                expected="finite input values",
                fix=f"drop or repair those samples, or {fix}",
            )


def state_inputs(info: ModelInfo, names: Iterable[str] = ()) -> set[str]:
    """Inputs fed zeros: those named in ``names`` plus, with several inputs, state-like names."""
    names = set(names)
    unknown = names - {t.name for t in info.inputs}
    if unknown:
        raise ConfigError(
            f"--state {', '.join(sorted(unknown))}",
            expected="input names of the model: " + ", ".join(t.name for t in info.inputs),
        )
    if len(info.inputs) > 1:
        names |= {t.name for t in info.inputs if is_state_input(t.name)}
    return names


def match_eval_set(
    info: ModelInfo,
    evalset: EvalSet,
    state: set[str],
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> tuple[list[np.ndarray | None], dict[str, tuple[int, ...]]]:
    """The eval arrays in the model's input order (None: zeros) and the shapes they need.

    Raises :class:`ModelFileError` naming both files when the samples do not fit the model.
    """
    arrays: list[np.ndarray | None] = [None] * len(info.inputs)
    pool = dict(evalset.arrays)
    data = [i for i, t in enumerate(info.inputs) if t.name not in state]
    for i in data:
        if info.inputs[i].name in pool:
            arrays[i] = pool.pop(info.inputs[i].name)
    for i in data:
        if arrays[i] is None and "x" in pool:
            arrays[i] = pool.pop("x")
    fix = "export the eval set of the model this file came from: edgesmith zoo export-eval NAME --out FILE.npz"
    lacking = [info.inputs[i].name for i in data if arrays[i] is None]
    if lacking or not data:
        raise ModelFileError(
            f"{evalset.path}: no samples for input(s) {', '.join(lacking) or '(none)'} of {info.path}",
            expected="x for the model's data input, or one array named after each input",
            fix=fix,
        )
    needed: dict[str, tuple[int, ...]] = {}
    shapes = shapes or {}
    for i in data:
        tensor, x = info.inputs[i], arrays[i]
        signature, sample = tensor.shape_signature, tuple(x.shape[1:])
        fits = len(signature) == len(sample) + 1 and all(
            s < 0 or s == d for s, d in zip(signature[1:], sample, strict=True)
        )
        if not fits:
            shown = format_shape(signature[1:])
            raise ModelFileError(
                f"{info.path}: input {tensor.name!r} takes samples of shape {shown} but "
                f"{evalset.path.name} has samples of shape {sample}",
                expected="an eval set made for this model",
                fix=fix,
            )
        integer_input = np.dtype(tensor.dtype).kind in "iub" and tensor.scale is None
        if integer_input and x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
            raise ModelFileError(
                f"{info.path}: input {tensor.name!r} takes {tensor.dtype} values (token ids) but "
                f"{evalset.path.name} holds fractional {x.dtype} samples",
                expected="an eval set made for this model",
                fix=fix,
            )
        if tensor.dynamic and tensor.name not in shapes:
            batch = signature[0] if signature and signature[0] > 0 else 1
            needed[tensor.name] = (batch, *sample)
    _check_label_range(info, evalset, fix)
    return arrays, needed


def _check_label_range(info: ModelInfo, evalset: EvalSet, fix: str) -> None:
    """Labels must name classes the model has (one output of shape (batch, classes))."""
    if len(info.outputs) != 1 or evalset.y.ndim != 1:
        return
    signature = info.outputs[0].shape_signature
    if len(signature) != 2 or signature[-1] < 1:
        return
    classes = max(signature[-1], 2)  # one column is a probability of class 1
    top = int(evalset.y.max())
    if top >= classes:
        raise ModelFileError(
            f"{evalset.path}: label {top} is out of range for {info.path}, which has "
            f"{classes} classes ({int((evalset.y >= classes).sum())} labels >= {classes})",
            expected=f"labels 0..{classes - 1}",
            fix=fix,
        )


def random_feeds(specs: Sequence[TensorSpec], state: set[str], seed: int = 0) -> list[np.ndarray]:
    """Inputs of the right shapes and types: random values, zeros for state inputs.

    Quantized inputs get integers over their whole range; other integer inputs (token ids)
    get 0 or 1, which every vocabulary has; floats are uniform in [-1, 1).
    """
    rng = np.random.default_rng(seed)
    feeds = []
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if spec.name in state:
            feeds.append(np.zeros(spec.shape, dtype))
        elif dtype.kind == "f":
            feeds.append(rng.uniform(-1.0, 1.0, spec.shape).astype(dtype))
        elif dtype.kind == "b":
            feeds.append(rng.integers(0, 2, spec.shape).astype(dtype))
        elif spec.quantized:
            info = np.iinfo(dtype)
            feeds.append(rng.integers(info.min, info.max, spec.shape, endpoint=True).astype(dtype))
        else:
            feeds.append(rng.integers(0, 2, spec.shape).astype(dtype))
    return feeds


def eval_feeds(runner: Runner, arrays: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """The first batch of the eval set in the model's dtypes (the timed runs' input)."""
    feeds = []
    for spec, x in zip(runner.inputs, arrays, strict=True):
        feed = np.zeros(spec.shape, np.dtype(spec.dtype))
        if x is not None:
            n = min(len(x), spec.shape[0] if spec.shape else 1)
            feed[:n] = quantize(x[:n], spec)
        feeds.append(feed)
    return feeds


def score(y: np.ndarray, outputs: np.ndarray) -> float:
    """Top-1 accuracy; a single output column is read as a probability (>= 0.5 is class 1)."""
    from edgesmith.core.metrics import accuracy

    outputs = outputs.reshape(len(y), -1) if outputs.ndim != 2 else outputs
    return accuracy(y, outputs)
