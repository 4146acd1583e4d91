"""What a conversion starts from: a zoo name, a model folder (zoo or ``compress`` output), or a
bare Keras model file, plus the data that calibrates and checks it.

Example:
    >>> from edgesmith.convert.source import load_source
    >>> src = load_source("cnn-digits", store="/tmp/conv-store")  # doctest: +SKIP
    >>> src.family, src.data.x_test.shape  # doctest: +SKIP
    ('cnn', (270, 8, 8, 1))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError, DataError
from edgesmith.core.records import CompressionCard, ModelCard
from edgesmith.zoo.user_model import all_layers


@dataclass
class Source:
    """A Keras model ready to convert, with whatever is known about it.

    ``card`` is the model folder's card, typed: a
    :class:`~edgesmith.core.records.CompressionCard` for a ``compress`` output, a
    :class:`~edgesmith.core.records.ModelCard` for a zoo model, None for a bare file.
    """

    model: Any
    name: str
    family: str
    path: Path | None
    card: ModelCard | None = None
    x_calibration: np.ndarray | None = None
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    eval_source: str = ""
    calibration_source: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_qat(self) -> bool:
        """Whether the model is quantization-aware (learned ranges): its card says so.

        A bare file has no card and converts as a float model.
        """
        return self.card is not None and self.card.qat

    @property
    def recipe(self) -> str | None:
        """The compression recipe that made the model (None: not a ``compress`` output)."""
        return self.card.recipe if isinstance(self.card, CompressionCard) else None


def load_source(
    model: Any,
    *,
    store: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    eval_file: str | os.PathLike[str] | None = None,
    data: Any = None,
    trust: bool = False,
    custom_objects: Any = None,
    image_scale: float | None = None,
) -> Source:
    """Load ``model`` (zoo name, model folder, model file or live Keras model) and its data.

    A zoo model or model folder brings its data set (train split for calibration, test
    split for accuracy and parity, with the stored preprocessing). A model of the user's
    takes ``data`` (an .npz, an image folder, a zoo set name, arrays: see
    :func:`~edgesmith.zoo.user_model.load_data_for`), which also replaces a zoo model's
    own set. ``calibration`` (an .npz with ``x``) and ``eval_file`` (an .npz with ``x``
    and ``y``, as ``edgesmith zoo export-eval`` writes) override the calibration and
    evaluation samples. Pruning wrappers are stripped on load. A model file's own code
    (Lambda layers, unknown custom objects) runs only with ``trust``.
    """
    from edgesmith.zoo.user_model import check_model_path, is_user_model, open_model_and_data

    check_model_path(model)
    user = is_user_model(model)
    with _tfmot_scopes():
        stored, splits = open_model_and_data(
            model,
            data=data,
            data_dir=data_dir,
            store=store,
            trust=trust,
            custom_objects=custom_objects,
            image_scale=image_scale,
            require_data=False,
        )
    card = stored.card
    source = Source(
        model=stored.model,
        name=card.name,
        family=card.family,
        path=stored.path,
        card=card if (splits is not None or not user) else None,
        steps=[] if user else _lineage(card),
    )
    if user and card.source.get("convert_only"):
        source.notes.append(
            "SavedModel of graphs only (no Keras model): converted through its "
            "serving_default signature"
        )
    elif user:
        source.notes.append(f"model of your own: family {card.family!r} detected from its layers")
    if user:
        rebuild = card.source.get("rebuild")
        if rebuild:
            source.notes.append(
                f"Keras 3 model rebuilt as tf-keras: max |diff| {rebuild['max_abs_diff']:.2g} "
                f"on {rebuild['samples']} samples (tolerance {rebuild['atol']:g})"
            )
    if splits is not None:
        dtype = np.int32 if card.layout == "tokens" else np.float32
        source.x_calibration = splits.x_train.astype(dtype)
        source.calibration_source = f"{card.dataset} train split ({splits.source})"
        source.x_eval, source.y_eval = splits.x_test.astype(dtype), splits.y_test
        source.eval_source = f"{card.dataset} test split ({splits.source})"
        source.class_names = tuple(splits.class_names)
        source.notes.extend(splits.notes)  # skipped files, data changed since preprocessing
    if calibration is not None:
        source.x_calibration = _read_npz(calibration, "x")["x"]
        source.calibration_source = str(calibration)
    if eval_file is not None:
        arrays = _read_npz(eval_file, "x", labels=True)
        source.x_eval, source.y_eval = arrays["x"], arrays.get("y")
        source.eval_source = str(eval_file)
    source.model = _strip_pruning(source.model, source.notes)
    _check_input_shape(source, source.x_calibration, "--calibration")
    _check_input_shape(source, source.x_eval, "--eval")
    return source


def _lineage(card: ModelCard) -> list[dict[str, Any]]:
    """The steps that made a model: a compression card records them, a zoo model was trained."""
    if isinstance(card, CompressionCard):
        return list(card.steps)
    return [{"step": "train", "model": card.name, "command": card.command}]


class _tfmot_scopes:
    """Custom-object scopes in which models holding tfmot's wrappers load.

    A folder's QAT model loads by its card's flag; these scopes are for what a user's
    own tfmot code saved: pruning wrappers (stripped below) and quantize wrappers.
    """

    def __enter__(self) -> None:
        from edgesmith.zoo.quantized import quantize_scope
        from edgesmith.zoo.tfkeras import tfmot

        self._scopes = [quantize_scope(), tfmot().sparsity.keras.prune_scope()]
        for scope in self._scopes:
            scope.__enter__()

    def __exit__(self, *exc: Any) -> None:
        for scope in reversed(self._scopes):
            scope.__exit__(*exc)


def _strip_pruning(model: Any, notes: list[str]) -> Any:
    if not any(type(layer).__name__ == "PruneLowMagnitude" for layer in all_layers(model)):
        return model
    from edgesmith.zoo.tfkeras import tfmot

    notes.append("pruning wrappers stripped (tfmot strip_pruning) before conversion")
    return tfmot().sparsity.keras.strip_pruning(model)


def _read_npz(
    path: str | os.PathLike[str], *required: str, labels: bool = False
) -> dict[str, np.ndarray]:
    """The arrays of a --calibration / --eval file: numeric finite ``x``, integer labels ``y``."""
    from edgesmith.core.npzfile import read_npz
    from edgesmith.runtime.evalset import validate_inputs, validate_labels

    path = Path(path)
    fix = "write one with numpy.savez(path, x=inputs) or `edgesmith zoo export-eval`"
    arrays = read_npz(path, expected="an .npz file with an 'x' array", fix=fix)
    missing = [key for key in required if key not in arrays]
    if missing:
        raise DataError(
            f"{path}: no {', '.join(missing)} array (has {', '.join(arrays) or 'nothing'})",
            expected="an .npz with 'x' (inputs as the model takes them) and, for --eval, 'y'",
        )
    labels = labels and "y" in arrays
    if labels:
        arrays["y"] = validate_labels(path, arrays["y"], fix)
    x = arrays["x"]
    samples = len(arrays["y"]) if labels else len(x) if x.ndim else 0
    validate_inputs(path, "x", x, samples, fix)
    return arrays


def _check_input_shape(source: Source, x: np.ndarray | None, option: str) -> None:
    if x is None:
        return
    expected = tuple(source.model.input_shape[1:])
    got = tuple(x.shape[1:])
    if len(expected) != len(got) or any(
        e not in (None, g) for e, g in zip(expected, got, strict=True)
    ):
        raise ConfigError(
            f"{option}: samples of shape {got}",
            expected=f"samples of shape {expected} (the model's input without the batch axis)",
            fix="export them with `edgesmith zoo export-eval` for the same model",
        )
    if len(x) == 0:
        raise DataError(f"{option}: no samples", expected="at least one sample in 'x'")
