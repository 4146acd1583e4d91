"""Run a recipe on a model and write the result beside its recipe and card.

The output folder has the model store's layout, so ``edgesmith zoo eval DIR`` and
``edgesmith convert DIR`` take it as they take a zoo model:

* ``model.keras``: the compressed model, wrappers stripped; after ``qat`` the
  quantization-aware model itself (tfmot wrappers and learned ranges kept). tfmot's
  wrappers do not survive the Keras v3 zip format (they re-track their inner kernels
  and the weight lists differ on reload), so a QAT model is written in Keras' HDF5
  format under the same name: ``keras.models.load_model`` reads either, and the card
  says which (``model_format``);
* ``preprocessing.json``: the parent's, unchanged;
* ``recipe.json``: every parameter of every step;
* ``keras3_model.keras``: when the model compressed was a Keras 3 model, the result as a
  Keras 3 model (``zoo.keras3.to_keras3``, checked numerically and on reload), for
  pruned, clustered or distilled results; a QAT result stays tf-keras (tfmot's quantize
  wrappers have no Keras 3 form) and the card's ``keras3_note`` says so, as it says why
  a result with a layer that has no Keras 3 form has no such file;
* ``card.json``: a :class:`~edgesmith.core.records.CompressionCard`, a superset of the
  zoo's card (``accuracy`` on the test split, ``params``) with ``sparsity``,
  ``nonzero_params``, ``unique_weights_max``, ``qat`` (the flag every loader reads to
  know that ``model.keras`` is quantization-aware), ``steps`` (what each step did and
  measured) and ``parent`` (the parent's card).

Steps are looked up in :mod:`~edgesmith.compress.techniques`; each gets a
:class:`~edgesmith.compress.step.StepContext` and returns a
:class:`~edgesmith.compress.step.StepResult`.

Example:
    >>> from edgesmith.compress.recipe_runner import compress_model
    >>> card = compress_model("cnn-digits", "prune:sparsity=0.8", out="out/cnn")  # doctest: +SKIP
    >>> round(card.sparsity, 2)  # doctest: +SKIP
    0.8
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgesmith.compress.recipe import Recipe, load_recipe
from edgesmith.core.errors import ConfigError, ModelFileError
from edgesmith.core.progress import Progress, ProgressEvent, as_progress
from edgesmith.core.records import CompressionCard, ModelCard, command_line, library_versions
from edgesmith.zoo.datasets import DatasetSplits
from edgesmith.zoo.store import StoredModel

RECIPE_FILE = "recipe.json"
KERAS3_FILE = "keras3_model.keras"
KERAS3_QAT_NOTE = (
    "a QAT model stays a tf-keras model (tfmot's quantize wrappers have no Keras 3 form); "
    "convert it with edgesmith convert"
)
TASK = "compress"  # the task name of the runner's own progress messages


@dataclass(frozen=True)
class RecipeRun:
    """What running a recipe produced: the final model, how it reads data, each step's record."""

    model: Any
    steps: list[dict[str, Any]]
    family: str
    layout: str
    builder: dict[str, Any]
    data: DatasetSplits
    clustered: list[str]


def compress_model(
    model: str | os.PathLike[str],
    recipe: Recipe | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    logdir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    data: Any = None,
    trust: bool = False,
    custom_objects: Any = None,
    image_scale: float | None = None,
) -> CompressionCard:
    """Apply ``recipe`` to ``model`` and save the result to ``out``.

    ``model``: a zoo name, a model folder, a model file with ``card.json`` beside it, or
    a model of the user's (a Keras 3 or tf-keras file, a SavedModel holding a Keras
    model, a live ``keras.Model``), which needs ``data``: an .npz, a folder of class
    folders of images, a zoo set name, ``(x, y)`` arrays or a ``tf.data.Dataset`` (see
    :func:`~edgesmith.zoo.user_model.load_data_for`). ``data`` also replaces a zoo
    model's own set. A model file's own code runs only with ``trust``; custom layers
    come from ``custom_objects`` (a .py file or a dict).

    Nothing is written to ``out`` unless every step succeeded. ``progress`` receives a
    message per step and the fine-tuning's epochs; without it nothing is shown.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if logdir:
        require_tensorboard()
    stored, data = open_parent_and_data(
        model,
        store=store,
        data=data,
        data_dir=data_dir,
        trust=trust,
        custom_objects=custom_objects,
        image_scale=image_scale,
        seed=seed,
    )
    if stored.card.source.get("convert_only"):
        raise ConfigError(
            f"{model}: a SavedModel of TensorFlow graphs with no Keras model in it",
            expected="a Keras model (.keras, .h5, or a SavedModel written by Keras 2)",
            fix="compress the Keras model it was exported from; this folder can still be "
            "converted (edgesmith convert) and benchmarked",
        )
    for note in data.notes:  # skipped files, data changed since preprocessing
        as_progress(progress)(ProgressEvent(TASK, f"data: {note}"))
    if stored.card.qat:
        raise ConfigError(
            f"{model}: the model is already quantization-aware (its card says qat: true)",
            expected="a float model",
            fix="compress the model the QAT model came from, with qat as the recipe's last step",
        )
    started = time.perf_counter()
    result = run_recipe(stored, data, recipe, seed=seed, logdir=logdir, progress=progress)
    seconds = time.perf_counter() - started
    card = _card(stored, recipe, result, seconds, seed)
    keras3_model, card = keras3_twin(result.model, card)
    preprocessing = result.data.preprocessing or stored.preprocessing
    save_folder(result.model, card, preprocessing, recipe, out, keras3_model=keras3_model)
    return card


def require_tensorboard() -> None:
    """``--logdir`` writes TensorBoard summaries, which need the ``tensorboard`` package."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        from edgesmith.core.errors import BackendUnavailableError

        raise BackendUnavailableError(
            "--logdir: the tensorboard package is not installed",
            expected="tensorboard, which writes the summaries (TensorFlow no longer brings it)",
            fix="pip install tensorboard, or drop --logdir",
        )


def open_parent_and_data(
    model: Any,
    *,
    store: str | os.PathLike[str] | None,
    data: Any = None,
    data_dir: str | os.PathLike[str] | None = None,
    trust: bool = False,
    custom_objects: Any = None,
    image_scale: float | None = None,
    seed: int = 0,
) -> tuple[StoredModel, DatasetSplits]:
    """The model to compress and the data it trains on, whatever the kind of source.

    A model file with ``card.json`` beside it is the model of that folder (edgesmith
    wrote both); any other file is a model of the user's.
    """
    from edgesmith.zoo.evaluate import data_for
    from edgesmith.zoo.store import CARD_FILE, load_keras_model, load_model_folder
    from edgesmith.zoo.user_model import check_model_path, load_data_for, open_model_and_data

    if isinstance(model, (str, os.PathLike)) and Path(model).is_file():
        path = Path(model)
        if (path.parent / CARD_FILE).is_file():
            folder = load_model_folder(path.parent)
            stored = replace(folder, model=load_keras_model(path, qat=folder.card.qat))
            if data is None:
                return stored, data_for(stored, data_dir=data_dir)
            splits = load_data_for(stored.model, data, data_dir=data_dir, image_scale=image_scale)
            return stored, splits
    check_model_path(model)
    stored, splits = open_model_and_data(
        model,
        data=data,
        data_dir=data_dir,
        store=store,
        trust=trust,
        custom_objects=custom_objects,
        image_scale=image_scale,
        seed=seed,
    )
    assert splits is not None  # require_data: a model of the user's without data raised
    return stored, splits


def run_recipe(
    stored: StoredModel,
    data: DatasetSplits,
    recipe: Recipe,
    *,
    seed: int = 0,
    logdir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> RecipeRun:
    """Run every step in order; return the final model, its data layout and the step records."""
    from edgesmith.compress.measure import weight_summary
    from edgesmith.compress.step import StepContext
    from edgesmith.compress.techniques import get_step
    from edgesmith.zoo.train import evaluate_model

    report = as_progress(progress)
    model = stored.model
    card = stored.card
    builder = {**card.builder, "layout": card.layout}
    original_builder = dict(builder)  # the teacher of distill:teacher=original
    family = card.family
    layout = card.layout
    batch_size = int((card.builder.get("train") or {}).get("batch_size") or 32)
    clustered: list[str] = []
    records = []
    total = len(recipe.steps)
    for index, config in enumerate(recipe.steps, start=1):
        step_logdir = str(Path(logdir) / f"{index:02d}-{config.step}") if logdir else None
        report(ProgressEvent(TASK, f"step {index}/{total}: {config.to_text()}"))
        started = time.perf_counter()
        before = weight_summary(model)
        context = StepContext(
            seed=seed,
            batch_size=batch_size,
            logdir=step_logdir,
            progress=progress,
            builder=builder,
            model_name=card.name,
            original_model=stored.model,
            original_builder=original_builder,
        )
        result = get_step(config.step).run(model, data, config, context)
        model = result.model
        _check_finite(model, config, result.history)
        if result.data is not None:
            data = result.data
        if result.architecture is not None:
            layout = result.architecture.layout
            builder = {**result.architecture.builder, "layout": layout}
            family = result.architecture.family or family
        if result.clustered is not None:
            clustered = list(result.clustered)
        measured = weight_summary(model, unique_in=clustered)
        test = evaluate_model(model, data, "test")
        record = {
            "step": config.step,
            "config": config.to_dict(),
            "seconds": round(time.perf_counter() - started, 2),
            "accuracy": test["accuracy"],
            "metric": {k: v for k, v in test.items() if k not in ("samples", "split")},
            "params": measured["params"],
            "nonzero_params": measured["nonzero_params"],
            "sparsity": measured["sparsity"],
            "unique_weights_max": measured["unique_weights_max"],
            "layer_sparsity": {n: v["sparsity"] for n, v in measured["layers"].items()},
            "sparsity_before": before["sparsity"],
            "history": result.history,
            **result.details,
        }
        records.append(record)
        report(
            ProgressEvent(
                TASK,
                f"  test accuracy {test['accuracy']:.4f}, sparsity {measured['sparsity']:.3f}, "
                f"params {measured['params']}, {record['seconds']:.0f} s",
                fields={"accuracy": test["accuracy"], "sparsity": measured["sparsity"]},
            )
        )
    return RecipeRun(
        model=model,
        steps=records,
        family=family,
        layout=layout,
        builder={k: v for k, v in builder.items() if k != "layout"},
        data=data,
        clustered=clustered,
    )


def from_keras3(card: ModelCard) -> bool:
    """Whether the model ``card`` describes started as a Keras 3 model.

    A user's model records it in its card's ``source``; a compress output's card has no
    source of its own, so its ``parent`` chain (a compress of a compress) is followed.
    """
    node: Any = {"source": card.source, "parent": getattr(card, "parent", {})}
    for _ in range(100):  # a parent chain ends; bounded in case a hand-edited card loops
        if not isinstance(node, dict) or not node:
            return False
        source = node.get("source")
        if isinstance(source, dict) and source.get("keras3"):
            return True
        node = node.get("parent")
    return False


def keras3_twin(model: Any, card: CompressionCard) -> tuple[Any | None, CompressionCard]:
    """The Keras 3 form of a compressed ``model`` whose source was Keras 3, and its card.

    Returns ``(keras3_model or None, card)`` with ``keras3_file`` set when there is a
    Keras 3 model, else ``keras3_note`` saying why not (a QAT result; a layer with no
    Keras 3 form). A model that never was Keras 3 gets neither. Never raises for a model
    that cannot go back: the compressed tf-keras result stands on its own.
    """
    if not from_keras3(card):
        return None, card
    if card.qat:
        return None, replace(card, keras3_file="", keras3_note=KERAS3_QAT_NOTE)
    from edgesmith.zoo.keras3 import to_keras3

    try:
        keras3_model = to_keras3(model, like=None)
    except Exception as exc:  # any layer the reverse walk cannot express: a note, not a failure
        reason = " ".join(str(exc).split()) or type(exc).__name__
        note = f"no Keras 3 model: {reason}"[:500]
        return None, replace(card, keras3_file="", keras3_note=note)
    return keras3_model, replace(card, keras3_file=KERAS3_FILE, keras3_note="")


def save_folder(
    model: Any,
    card: CompressionCard,
    preprocessing: dict[str, Any],
    recipe: Recipe,
    out: str | os.PathLike[str],
    *,
    keras3_model: Any = None,
) -> Path:
    """Write the output folder atomically (card.json last); a QAT model is checked on reload.

    ``keras3_model`` (from :func:`keras3_twin`) is written as ``card.keras3_file`` in the
    same temporary folder and checked on reload against ``model``.
    """
    from edgesmith.core.fileio import atomic_path, write_json, write_text
    from edgesmith.zoo.store import CARD_FILE, MODEL_FILE, PREPROCESSING_FILE

    out = Path(out)
    with atomic_path(out, suffix=".dir") as tmp:
        tmp.mkdir()
        if card.qat:
            from edgesmith.compress.qat import save_qat_model

            save_qat_model(model, tmp / MODEL_FILE)
            _check_reload(model, tmp / MODEL_FILE, card)
        else:
            model.save(tmp / MODEL_FILE)
        if keras3_model is not None and card.keras3_file:
            keras3_model.save(tmp / card.keras3_file)
            _check_keras3_reload(model, tmp / card.keras3_file, card)
        write_json(tmp / PREPROCESSING_FILE, preprocessing)
        write_text(tmp / RECIPE_FILE, recipe.to_json())
        write_json(tmp / CARD_FILE, card.to_dict())
    return out


def _check_finite(model: Any, config: Any, history: dict[str, list[float]]) -> None:
    """A step whose fine-tuning diverged leaves NaN/inf weights: say so, naming the layer."""
    import numpy as np

    for layer in model.layers:
        for weight in layer.weights:
            if not np.all(np.isfinite(np.asarray(weight.numpy()))):
                losses = [round(v, 4) for v in history.get("loss", [])]
                raise ConfigError(
                    f"{config.to_text()}: fine-tuning diverged, layer {layer.name!r} holds "
                    f"NaN or inf weights ({weight.name}; training loss per epoch {losses})",
                    expected="finite weights after the step",
                    fix="lower learning_rate= (or batch_size= larger) for this step, or "
                    "leave the layer out with exclude=",
                )


def _check_reload(model: Any, path: Path, card: CompressionCard) -> None:
    import numpy as np

    from edgesmith.zoo.store import load_keras_model

    loaded = load_keras_model(path, qat=True)
    x = _reload_samples(card)
    if not np.allclose(model(x, training=False), loaded(x, training=False), atol=1e-4):
        raise ModelFileError(
            f"{path}: the saved QAT model does not reproduce the trained one",
            expected="identical outputs after a save/load round trip",
        )


def _check_keras3_reload(model: Any, path: Path, card: CompressionCard) -> None:
    """The written Keras 3 file loads (safe mode, the zoo's Keras 3 twins) and matches."""
    import keras
    import numpy as np

    from edgesmith.zoo.keras3_back import keras3_custom_objects

    try:
        loaded = keras.saving.load_model(
            path, custom_objects=keras3_custom_objects(), compile=False
        )
        x = _reload_samples(card)
        diff = float(np.max(np.abs(np.asarray(model(x, training=False)) - np.asarray(loaded(x)))))
    except Exception as exc:  # a bug in the Keras 3 twin, never the user's: one clear line
        raise ModelFileError(
            f"{path.name}: the Keras 3 model written does not load back ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())})"[:500],
            expected="a Keras 3 file that keras.saving.load_model reads",
            fix="report this model",
        ) from exc
    if not diff <= 1e-5:
        raise ModelFileError(
            f"{path.name}: the Keras 3 model written differs by {diff:.3g} after reloading",
            expected="identical outputs after a save/load round trip (atol 1e-5)",
            fix="report this model",
        )


def _reload_samples(card: CompressionCard) -> Any:
    import numpy as np

    # A length the model leaves open (-1 in the card) gets 8 steps.
    shape = (4, *(d if d > 0 else 8 for d in card.input_shape))
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    if card.layout == "tokens":
        x = np.floor(x * 10)
    return x


def _card(
    stored: StoredModel,
    recipe: Recipe,
    result: RecipeRun,
    seconds: float,
    seed: int,
) -> CompressionCard:
    from edgesmith.compress.measure import weight_summary
    from edgesmith.zoo.train import TF_PACKAGES

    model = result.model
    data = result.data
    last = result.steps[-1]
    measured = weight_summary(model, unique_in=result.clustered)
    base = stored.card
    epochs = sum(
        int(s.get("budget", {}).get("epochs") or s["config"].get("epochs") or 0)
        for s in result.steps
    )
    return CompressionCard(
        name=f"{base.name}-" + "-".join(step.step for step in recipe.steps),
        family=result.family,
        task=base.task,
        dataset=base.dataset,
        accuracy=last["accuracy"],
        metric=last["metric"],
        split=data.sizes,
        seed=seed,
        epochs=epochs,
        params=measured["params"],
        input_shape=list(data.input_shape),
        layout=result.layout,
        classes=list(base.classes or data.class_names),
        train_seconds=round(seconds, 2),
        versions=library_versions(*TF_PACKAGES),
        command=command_line(),
        builder=result.builder,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        recipe=recipe.to_text(),
        qat=recipe.has_qat,
        sparsity=measured["sparsity"],
        nonzero_params=measured["nonzero_params"],
        kernel_params=measured["kernel_params"],
        unique_weights_max=measured["unique_weights_max"],
        layer_sparsity={n: v["sparsity"] for n, v in measured["layers"].items()},
        model_format="h5" if recipe.has_qat else "keras",
        steps=result.steps,
        parent=base.to_dict(),
    )
