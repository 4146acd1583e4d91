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

from edgesmith.core.errors import ConfigError, DataError, ModelFileError
from edgesmith.core.records import CompressionCard, ModelCard
from edgesmith.zoo.registry import RECURRENT_LAYERS


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
    model: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    eval_file: str | os.PathLike[str] | None = None,
) -> Source:
    """Load ``model`` (zoo name, model folder or Keras file) and its calibration/eval data.

    A zoo model or model folder brings its data set (train split for calibration, test
    split for accuracy and parity, with the stored preprocessing). A bare Keras file has
    none: ``calibration`` (an .npz with ``x``) and ``eval_file`` (an .npz with ``x`` and
    ``y``, as ``edgesmith zoo export-eval`` writes) supply it. Pruning wrappers are
    stripped on load.
    """
    path = Path(model)
    if path.is_file() or (path.is_dir() and not (path / "card.json").is_file()):
        source = _load_keras_file(path)
    else:
        source = _load_folder(model, store=store, data_dir=data_dir)
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


def _load_folder(
    model: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str] | None,
    data_dir: str | os.PathLike[str] | None,
) -> Source:
    from edgesmith.zoo.evaluate import data_for, open_model

    with _tfmot_scopes():
        stored = open_model(model, store=store)
    card = stored.card
    source = Source(
        model=stored.model,
        name=card.name,
        family=card.family,
        path=stored.path,
        card=card,
        steps=_lineage(card),
    )
    data = data_for(stored, data_dir=data_dir)
    dtype = np.int32 if card.layout == "tokens" else np.float32
    source.x_calibration = data.x_train.astype(dtype)
    source.calibration_source = f"{card.dataset} train split ({data.source})"
    source.x_eval, source.y_eval = data.x_test.astype(dtype), data.y_test
    source.eval_source = f"{card.dataset} test split ({data.source})"
    source.class_names = tuple(data.class_names)
    return source


def _load_keras_file(path: Path) -> Source:
    from edgesmith.zoo.store import load_keras_model

    if not path.exists():
        raise ModelFileError(
            f"{path}: not found",
            expected="a zoo model name, a model folder, or a Keras .keras/.h5 file or SavedModel",
            fix="see `edgesmith zoo list` for zoo names",
        )
    with _tfmot_scopes():
        model = load_keras_model(path)
    family = detect_family(model)
    return Source(
        model=model,
        name=path.stem if path.is_file() else path.name,
        family=family,
        path=path,
        notes=[f"bare Keras model: family {family!r} detected from its layers"],
    )


def detect_family(model: Any) -> str:
    """``lstm``, ``transformer`` or ``cnn`` from the layers a model contains."""
    names = {type(layer).__name__ for layer in _all_layers(model)}
    inner = {
        type(getattr(layer, "layer", None)).__name__
        for layer in _all_layers(model)
        if hasattr(layer, "layer")
    }
    names |= inner
    if names & RECURRENT_LAYERS:
        return "lstm"
    if names & {"AttentionCore", "MultiHeadAttention"}:
        return "transformer"
    return "cnn"


def _all_layers(model: Any) -> list[Any]:
    layers = []
    for layer in getattr(model, "layers", []):
        layers.append(layer)
        if hasattr(layer, "layers"):
            layers.extend(_all_layers(layer))
    return layers


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
    if not any(type(layer).__name__ == "PruneLowMagnitude" for layer in _all_layers(model)):
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
