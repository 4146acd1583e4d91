"""Safe loading of users' model files: nothing a file carries runs unless the user says so.

A Keras file is a config (JSON) plus weights, and the config can hold code: a ``Lambda``
layer's function or an activation stored as marshalled Python bytecode, or a class name
that makes Keras import a module the file names. This module reads only the config (the
``config.json`` of a ``.keras`` zip, the ``model_config`` attribute of an ``.h5``, the
``keras_metadata.pb`` of a SavedModel), checks every object in it against what the
installed Keras version itself provides, edgesmith's own layers (``zoo/custom_layers.py``,
``zoo/quantized.py``), tfmot's wrappers and the classes the user gave, and refuses the rest
unless ``trust=True`` (the CLI's ``--trust-model``).

A SavedModel without Keras metadata holds a TensorFlow graph: graph ops are not Python
code, and converting it (``tf.lite.TFLiteConverter.from_saved_model``) runs nothing from
the file. A custom Python op (``tf.py_function``) cannot be stored in a SavedModel.

Example:
    >>> from edgesmith.zoo.safe_load import inspect_model_file, load_model_file
    >>> info = inspect_model_file("user_model.h5")  # doctest: +SKIP
    >>> [why for _, _, why in info.refused]  # doctest: +SKIP
    ['Lambda layer: runs Python code stored in the file']
    >>> model, info = load_model_file("user_model.keras")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError, EdgesmithError, ModelFileError
from edgesmith.zoo.config_audit import (
    audit_config,
    known_objects,
    root_package,
    scope_objects,
    tfmot_scopes,
)

# A model config is kilobytes to a few megabytes; anything this big is not one.
MAX_CONFIG_BYTES = 64 * 1024 * 1024
EXPECTED = "a Keras .keras or .h5 file, or a TensorFlow SavedModel folder"
REFUSED_EXPECTED = "layers whose code comes from edgesmith, Keras or a --custom-objects file"
REFUSED_FIX = (
    "pass --trust-model (CLI) / trust=True (API) if you trust the file's author, "
    "or give the layer classes with --custom-objects FILE.py"
)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class ModelFileInfo:
    """What a model file holds, read from its config alone."""

    path: Path
    format: str  # "keras-zip" | "h5" | "savedmodel"
    keras_version: str  # "" when the file does not say
    keras3: bool  # written by Keras 3: loads with the ``keras`` package
    layers: tuple[tuple[str, str], ...]  # (name, class) in config order, nested included
    refused: tuple[tuple[str, str, str], ...]  # (name, class, why) that would run file code
    has_keras_model: bool  # False: a SavedModel without Keras metadata (convertible only)
    learning_rate: float | None = None  # the optimizer's, where the file was saved compiled


@dataclass
class _Configs:
    format: str
    keras_version: str = ""
    keras3: bool = False
    model: dict[str, Any] | None = None  # the model's config (layers are listed from it)
    extra: list[dict[str, Any]] = field(default_factory=list)  # checked, not listed
    learning_rate: float | None = None


def inspect_model_file(
    path: str | os.PathLike[str], *, custom_objects: dict[str, Any] | None = None
) -> ModelFileInfo:
    """Read a model file's config and list its layers and what would run code from the file.

    Never deserialises anything: only JSON, HDF5 attributes and ``keras_metadata.pb`` are read.

    Example:
        >>> info = inspect_model_file("model.h5")  # doctest: +SKIP
        >>> info.keras3, info.layers[:2]  # doctest: +SKIP
        (False, (('input_1', 'InputLayer'), ('dense', 'Dense')))
    """
    path = Path(path)
    configs = _read_configs(path)
    if configs.model is None:
        return ModelFileInfo(path, configs.format, configs.keras_version, False, (), (), False)
    try:
        audit = audit_config(
            configs.model,
            keras3=configs.keras3,
            user=frozenset(custom_objects or {}),
            extra=configs.extra,
        )
    except RecursionError:
        raise ModelFileError(
            f"{path}: the model config is nested too deeply", expected=EXPECTED
        ) from None
    return ModelFileInfo(
        path=path,
        format=configs.format,
        keras_version=configs.keras_version,
        keras3=configs.keras3,
        layers=audit.layers,
        refused=audit.refused,
        has_keras_model=True,
        learning_rate=configs.learning_rate,
    )


def load_model_file(
    path: str | os.PathLike[str],
    *,
    trust: bool = False,
    custom_objects: dict[str, Any] | None = None,
) -> tuple[Any, ModelFileInfo]:
    """Load a user's Keras model file after checking that no code from the file would run.

    A Keras 3 file gives a ``keras`` model, anything else a tf-keras model (with edgesmith's
    custom layers and tfmot's wrappers available). Always loads with ``compile=False``.

    Example:
        >>> model, info = load_model_file("model.keras")  # doctest: +SKIP
        >>> model, info = load_model_file("lambda.h5", trust=True)  # doctest: +SKIP
    """
    path = Path(path)
    info = inspect_model_file(path, custom_objects=custom_objects)
    if not info.has_keras_model:
        raise ModelFileError(
            f"{path}: a SavedModel without Keras metadata holds a TensorFlow graph, no Keras model",
            expected="a Keras model to load (this folder can still be converted as it is)",
            fix="convert the SavedModel directly, or save the model with tf-keras model.save",
        )
    if info.refused and not trust:
        listed = "; ".join(f"{name} ({cls}): {why}" for name, cls, why in info.refused[:5])
        if len(info.refused) > 5:
            listed += f"; and {len(info.refused) - 5} more"
        raise ModelFileError(
            f"{path}: loading would run code from the file: {listed}",
            expected=REFUSED_EXPECTED,
            fix=REFUSED_FIX,
        )
    try:
        with _loadable_path(path, info) as target:
            if info.keras3:
                model = _load_keras3(target, trust, custom_objects)
            else:
                model = _load_tfkeras(target, info, trust, custom_objects)
    except EdgesmithError:
        raise
    except Exception as exc:  # Keras raises many types for a broken file; one clear line
        raise ModelFileError(
            f"{path}: cannot be loaded as a Keras model ({_one_line(exc)})",
            expected=EXPECTED,
        ) from exc
    return model, info


def load_custom_objects(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Import the user's ``--custom-objects FILE.py`` and return the classes it offers.

    A module-level ``CUSTOM_OBJECTS`` dict is returned as it is; without one, every Keras
    ``Layer``/``Model`` subclass the file defines, by class name (and registered name).

    Example:
        >>> objects = load_custom_objects("my_layers.py")  # doctest: +SKIP
        >>> model, _ = load_model_file("model.h5", custom_objects=objects)  # doctest: +SKIP
    """
    path = Path(path)
    fix = "give a Python file that defines the model's custom layer classes"
    if not path.is_file():
        raise ConfigError(f"--custom-objects {path}: not found", expected="a Python file", fix=fix)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_edgesmith_custom_objects_{stem}_{digest}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python source file")
        module = importlib.util.module_from_spec(spec)
        # Registered in sys.modules so that the file's own imports of itself, dataclasses
        # and Keras' registry see a real module.
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise ConfigError(
            f"--custom-objects {path}: failed to import ({_one_line(exc)})",
            expected="a Python file that imports cleanly",
            fix=fix,
        ) from exc
    declared = getattr(module, "CUSTOM_OBJECTS", None)
    if declared is not None:
        if not isinstance(declared, dict) or not all(isinstance(k, str) for k in declared):
            raise ConfigError(
                f"--custom-objects {path}: CUSTOM_OBJECTS is a {type(declared).__name__}",
                expected="a dict from the names in the model file to classes or functions",
                fix=fix,
            )
        return dict(declared)
    objects: dict[str, Any] = {}
    for value in vars(module).values():
        if inspect.isclass(value) and value.__module__ == name and _is_keras_layer(value):
            objects[value.__name__] = value
            registered = _registered_name(value)
            if registered:
                objects[registered] = value
    return objects


# --- reading configs (no deserialisation) ------------------------------------------------


def _read_configs(path: Path) -> _Configs:
    if not path.exists():
        raise ModelFileError(f"{path}: not found", expected=EXPECTED)
    if path.is_dir():
        return _read_savedmodel(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise ModelFileError(
            f"{path}: cannot be read ({_one_line(exc)})", expected=EXPECTED
        ) from None
    if head.startswith(_ZIP_MAGIC):
        return _read_zip(path)
    if head.startswith(_HDF5_MAGIC) or _is_hdf5(path):
        return _read_h5(path)
    raise ModelFileError(f"{path}: {_describe(path, head)}", expected=EXPECTED)


def _describe(path: Path, head: bytes) -> str:
    """What a file that is neither zip nor HDF5 looks like, so the user can tell what it is."""
    if not head:
        return "an empty file"
    if head[4:8] == b"TFL3":
        return "a TFLite file (already converted), not a zip, not HDF5"
    if path.name == "saved_model.pb":
        return "a SavedModel graph file: pass the folder that holds it"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON text file, not a zip, not HDF5"
    try:
        head.decode("utf-8")
        return "a text file, not a zip, not HDF5"
    except UnicodeDecodeError:
        return f"not a zip, not HDF5 (starts with bytes {head[:8].hex(' ')})"


def _is_hdf5(path: Path) -> bool:
    import h5py

    try:  # HDF5 allows a user block before the signature (at 512, 1024, ... bytes)
        return bool(h5py.is_hdf5(path))
    except Exception:
        return False


def _read_zip(path: Path) -> _Configs:
    damaged = f"{path}: a damaged or truncated zip archive"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "config.json" not in names:
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                raise ModelFileError(
                    f"{path}: a zip archive without config.json (holds {shown or 'nothing'})",
                    expected="a .keras file written by Keras (config.json, model.weights.h5)",
                )
            config = _parse_json(path, "config.json", _read_member(path, archive, "config.json"))
            metadata: Any = {}
            if "metadata.json" in names:
                text = _read_member(path, archive, "metadata.json")
                metadata = _parse_json(path, "metadata.json", text)
    except EdgesmithError:
        raise
    except Exception as exc:  # BadZipFile, EOFError, zlib.error...: a broken archive
        raise ModelFileError(f"{damaged} ({_one_line(exc)})", expected=EXPECTED) from None
    model = _model_config(path, "config.json", config)
    version = str(metadata.get("keras_version", "")) if isinstance(metadata, dict) else ""
    if version:
        keras3 = _major(version) >= 3
    else:  # no metadata.json: the root class's module says which Keras wrote it
        keras3 = not str(model.get("module", "")).startswith("tf_keras")
    compiled = config.get("compile_config") if isinstance(config, dict) else None
    optimizer = compiled.get("optimizer") if isinstance(compiled, dict) else None
    return _Configs("keras-zip", version, keras3, model, learning_rate=_learning_rate(optimizer))


def _read_member(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    if archive.getinfo(name).file_size > MAX_CONFIG_BYTES:
        raise _too_big(path, name)
    with archive.open(name) as member:  # bounded even if the declared size lies
        data = member.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_big(path, name)
    return data


def _too_big(path: Path, what: str) -> ModelFileError:
    return ModelFileError(
        f"{path}: {what} is over {MAX_CONFIG_BYTES / 2**20:g} MiB",
        expected="a model config of at most a few MiB",
    )


def _read_h5(path: Path) -> _Configs:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            attrs = handle.attrs
            if "model_config" not in attrs:
                raise ModelFileError(
                    f"{path}: an HDF5 file without a model config (a weights-only file?)",
                    expected="a whole model saved with model.save('model.h5')",
                )
            # A fixed-length string's size is known before reading; a variable-length one
            # (how tf-keras writes it) only after, and then it is bounded by the file's size.
            if attrs.get_id("model_config").get_storage_size() > MAX_CONFIG_BYTES:
                raise _too_big(path, "model_config")
            text, version = attrs["model_config"], attrs.get("keras_version", "")
            training = attrs.get("training_config", "")
    except EdgesmithError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError... for broken files
        raise ModelFileError(
            f"{path}: a damaged or truncated HDF5 file ({_one_line(exc)})", expected=EXPECTED
        ) from None
    if isinstance(text, bytes | str) and len(text) > MAX_CONFIG_BYTES:
        raise _too_big(path, "model_config")
    version = version.decode("utf-8", "replace") if isinstance(version, bytes) else str(version)
    if not isinstance(text, bytes | str):
        raise ModelFileError(f"{path}: model_config is not text", expected=EXPECTED)
    model = _model_config(path, "model_config", _parse_json(path, "model_config", text))
    keras3 = bool(version) and _major(version) >= 3
    rate = _training_config_rate(training)
    return _Configs("h5", version, keras3, model, learning_rate=rate)


def _read_savedmodel(path: Path) -> _Configs:
    if not any((path / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise ModelFileError(f"{path}: a folder without saved_model.pb", expected=EXPECTED)
    metadata = path / "keras_metadata.pb"
    if not metadata.is_file():
        return _Configs("savedmodel")
    if metadata.stat().st_size > MAX_CONFIG_BYTES:
        raise _too_big(path, "keras_metadata.pb")
    from edgesmith.zoo.tfkeras import keras

    keras()  # selects Keras 2 before its protobuf module is imported
    from tf_keras.protobuf import saved_metadata_pb2

    proto = saved_metadata_pb2.SavedMetadata()
    try:
        proto.ParseFromString(metadata.read_bytes())
    except Exception as exc:  # protobuf's DecodeError
        raise ModelFileError(
            f"{path}: keras_metadata.pb is damaged ({_one_line(exc)})", expected=EXPECTED
        ) from None
    root: dict[str, Any] | None = None
    extra = []
    for node in proto.nodes:
        if node.identifier == "_tf_keras_metric":
            continue  # metrics belong to training; loading never compiles
        data = _parse_json(path, f"keras_metadata.pb ({node.node_path})", node.metadata)
        if not isinstance(data, dict):
            continue
        if node.node_path == "root":
            root = data
        else:
            extra.append(data)
    if root is None:
        raise ModelFileError(f"{path}: keras_metadata.pb has no root model", expected=EXPECTED)
    version = str(root.get("keras_version", ""))
    model = root.get("model_config") if isinstance(root.get("model_config"), dict) else root
    rate = _training_config_rate(root.get("training_config"))
    return _Configs("savedmodel", version, False, model, [root, *extra], learning_rate=rate)


def _training_config_rate(training: Any) -> float | None:
    """The learning rate in tf-keras' ``training_config`` (JSON text or a dict), if any."""
    if isinstance(training, bytes | str):
        if not training or len(training) > MAX_CONFIG_BYTES:
            return None
        try:
            training = json.loads(training)
        except (ValueError, RecursionError):
            return None  # only a hint for fine-tuning: a broken one is ignored
    if not isinstance(training, dict):
        return None
    return _learning_rate(training.get("optimizer_config"))


def _learning_rate(optimizer: Any) -> float | None:
    """The (initial) learning rate in a serialised optimizer, if it says one."""
    config = optimizer.get("config") if isinstance(optimizer, dict) else None
    rate = config.get("learning_rate") if isinstance(config, dict) else None
    if isinstance(rate, dict):  # a schedule: where it starts
        inner = rate.get("config")
        rate = inner.get("initial_learning_rate") if isinstance(inner, dict) else None
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        return None
    return float(rate) if 0 < rate < 10 else None


def _parse_json(path: Path, what: str, text: bytes | str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8
        raise ModelFileError(
            f"{path}: {what} is not valid JSON ({_one_line(exc)})", expected=EXPECTED
        ) from None


def _model_config(path: Path, what: str, config: Any) -> dict[str, Any]:
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ModelFileError(
            f"{path}: {what} holds no Keras model config", expected="a JSON object with class_name"
        )
    return config


def _major(version: str) -> int:
    match = re.match(r"\s*(\d+)", version)
    return int(match.group(1)) if match else 0


# --- loading -------------------------------------------------------------------------------


@contextlib.contextmanager
def _loadable_path(path: Path, info: ModelFileInfo) -> Iterator[Path]:
    """``path``, or a link to it whose extension tells Keras the format its content has."""
    wanted = {"keras-zip": ".keras", "h5": ".h5"}.get(info.format)
    if wanted is None or path.suffix.lower() in {wanted, ".hdf5" if wanted == ".h5" else wanted}:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="edgesmith-load-") as tmp:
        link = Path(tmp) / f"model{wanted}"
        try:
            link.symlink_to(path.resolve())
        except OSError:  # no symlinks (some Windows setups): a copy does the same
            import shutil

            shutil.copyfile(path, link)
        yield link


def _is_keras_layer(cls: type) -> bool:
    """A subclass of Keras 3's or tf-keras' Layer (Models included), importing neither."""
    return any(
        base.__name__ == "Layer" and root_package(base.__module__) in ("keras", "tf_keras")
        for base in cls.__mro__[1:]
    )


def _registered_name(cls: type) -> str | None:
    """The name Keras' registry gives ``cls`` (``package>Name`` when decorated), if different."""
    with contextlib.suppress(Exception):
        if any(root_package(base.__module__) == "tf_keras" for base in cls.__mro__):
            from edgesmith.zoo.tfkeras import keras

            registered = keras().utils.get_registered_name(cls)
        else:
            import keras

            registered = keras.saving.get_registered_name(cls)
        return registered if registered != cls.__name__ else None
    return None


def _load_keras3(path: Path, trust: bool, custom_objects: dict[str, Any] | None) -> Any:
    import keras

    return keras.saving.load_model(
        path, custom_objects=custom_objects, compile=False, safe_mode=not trust
    )


def _load_tfkeras(
    path: Path, info: ModelFileInfo, trust: bool, custom_objects: dict[str, Any] | None
) -> Any:
    from edgesmith.zoo.custom_layers import custom_objects as zoo_objects
    from edgesmith.zoo.tfkeras import keras

    objects = {**zoo_objects(), **(custom_objects or {})}
    classes = {cls for _, cls in info.layers}
    with contextlib.ExitStack() as stack:
        if classes & known_objects(False).edgesmith:  # files holding tfmot or QAT objects
            from edgesmith.zoo.quantized import quantize_scope

            scopes = tfmot_scopes()
            stack.enter_context(quantize_scope())
            for kind in ("prune", "cluster"):
                if classes & set(scope_objects(scopes[kind])):
                    stack.enter_context(scopes[kind])
        return keras().models.load_model(
            path, custom_objects=objects, compile=False, safe_mode=not trust
        )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"[:300]
