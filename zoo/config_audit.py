"""Audit of a Keras model config: which objects in it would run code from the file.

Used by :mod:`edgesmith.zoo.safe_load` on the parsed JSON of a user's model file. What
counts as built in is asked of the Keras version itself (its public namespaces and the
subclasses of its base classes defined inside the Keras package), plus, for Keras 2,
edgesmith's own objects and tfmot's wrappers. Nothing is deserialised here.

Example:
    >>> from edgesmith.zoo.config_audit import audit_config
    >>> config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
    ...     {"class_name": "Lambda", "config": {"name": "f", "function": "..."}}]}}
    >>> audit_config(config, keras3=True).refused  # doctest: +SKIP
    (('f', 'Lambda', 'Lambda layer: runs Python code stored in the file'),)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import inspect
import re
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 200  # nesting of config objects; real models stay far below

# Config keys that hold a layer (inside an object's "config"); others hold initializers,
# dtype policies, shapes...
_LAYER_KEYS = {"layer", "forward_layer", "backward_layer", "cell"}
_LAYER_LIST_KEYS = {"layers", "cells"}
_ACTIVATION_KEYS = {"activation", "recurrent_activation"}
# Markers of tf-keras' JSON that decode to data (shapes, tensor specs), not to classes.
_DATA_MARKERS = {"TensorShape", "TypeSpec"}
# TFOpLambda / SlicingOpLambda call the TensorFlow function their config names: only
# namespaces of pure tensor math pass (tf.io.write_file, or tf.print to a file, would
# otherwise run with arguments the file chooses).
_TF_OP_NAMESPACES = {"__operators__", "math", "nn", "linalg", "signal", "image", "bitwise"}
_TF_OP_NAMESPACES |= {"random", "strings"}
_TF_OP_DENIED = {"print", "py_function", "numpy_function", "load_op_library", "load_library"}
# Built-in layers whose config itself carries what they run or load.
_CODE_LAYERS = {
    "Lambda": "Lambda layer: runs Python code stored in the file",
    "TorchModuleWrapper": "unpickles a PyTorch module stored in the file (runs its code)",
    "TFSMLayer": "loads another model from a path the file names",
}
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{16,}")


@dataclass(frozen=True)
class Audit:
    """Layers of a config in order (nested included) and what loading it would run."""

    layers: tuple[tuple[str, str], ...]
    refused: tuple[tuple[str, str, str], ...]
    classes: frozenset[str]  # every class name the config mentions


@dataclass(frozen=True)
class KnownObjects:
    """What one Keras version (with edgesmith and tfmot for Keras 2) provides, by name."""

    keras3: bool
    classes: frozenset[str]  # built-in classes of this Keras version
    activations: frozenset[str]
    edgesmith: frozenset[str]  # edgesmith's and tfmot's objects (Keras 2 only)
    packages: tuple[str, ...]  # top-level packages a built-in's "module" may name
    activation_lookup: Any = None  # the version's ``activations.get``


def audit_config(
    model: dict[str, Any],
    *,
    keras3: bool,
    user: set[str] | frozenset[str] = frozenset(),
    extra: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
) -> Audit:
    """Audit a model config (and ``extra`` configs, checked but not listed).

    ``user``: names of the classes and functions the user gave (``--custom-objects``).
    Raises RecursionError for a config nested deeper than :data:`MAX_DEPTH`.
    """
    checker = _Checker(known_objects(keras3), set(user))
    checker.root = (_name_of(model), str(model.get("class_name", "")))
    checker.walk(model, checker.root, False, 0)
    checker.listing = False
    for config in extra:  # each its own layer (SavedModel metadata nodes)
        checker.walk(config, checker.root, True, 0)
    return Audit(
        tuple(checker.layers), tuple(dict.fromkeys(checker.refused)), frozenset(checker.classes)
    )


@functools.lru_cache(maxsize=2)
def known_objects(keras3: bool) -> KnownObjects:
    """Ask the Keras version itself (and tfmot, edgesmith for Keras 2) what it provides."""
    if keras3:
        import keras as k

        packages: tuple[str, ...] = ("keras",)
        policy = k.dtype_policies
        edgesmith: set[str] = set()
    else:
        from edgesmith.zoo.tfkeras import keras

        k = keras()
        packages = ("keras", "tf_keras")
        policy = k.mixed_precision
        edgesmith = _edgesmith_objects()
    spaces = [k, k.layers, k.models, k.initializers, k.regularizers, k.constraints, policy]
    bases = [k.layers.Layer, k.initializers.Initializer, k.regularizers.Regularizer]
    bases += [k.constraints.Constraint]
    classes = {name for space in spaces for name, value in vars(space).items() if _is_class(value)}
    for base in bases:  # internal classes too (Functional, TFOpLambda...), Keras' own only
        classes |= {c.__name__ for c in _subclasses(base) if root_package(c.__module__) in packages}
    activations = {
        name
        for name, value in vars(k.activations).items()
        if callable(value) and not name.startswith("_")
    } - {"get", "serialize", "deserialize"}
    return KnownObjects(
        keras3,
        frozenset(classes),
        frozenset(activations),
        frozenset(edgesmith),
        packages,
        k.activations.get,
    )


def tfmot_scopes() -> dict[str, Any]:
    """tfmot's custom-object scopes by kind; enter only those a file needs."""
    from edgesmith.zoo.tfkeras import tfmot

    mot = tfmot()
    return {
        "quantize": mot.quantization.keras.quantize_scope(),
        "prune": mot.sparsity.keras.prune_scope(),
        "cluster": mot.clustering.keras.cluster_scope(),
    }


def scope_objects(scope: Any) -> dict[str, Any]:
    """The objects a Keras custom-object scope makes available, by name."""
    objects: dict[str, Any] = {}
    for entry in getattr(scope, "custom_objects", ()):
        if isinstance(entry, dict):
            objects.update(entry)
    return objects


def root_package(module: str | None) -> str:
    """``keras`` for ``keras.src.layers``: the package a module belongs to."""
    return (module or "").split(".")[0]


def _edgesmith_objects() -> set[str]:
    from edgesmith.zoo.quantized import custom_objects
    from edgesmith.zoo.tfkeras import keras, tfmot

    mot = tfmot()
    objects = custom_objects()
    # Legacy .h5 configs name registered classes "package>Name".
    names = set(objects) | {keras().utils.get_registered_name(obj) for obj in objects.values()}
    for scope in tfmot_scopes().values():
        names |= set(scope_objects(scope))
    spaces = (mot.sparsity.keras, mot.quantization.keras, mot.quantization.keras.quantizers)
    for space in (*spaces, mot.clustering.keras):
        names |= {name for name, value in vars(space).items() if _is_class(value)}
    return names


def _is_class(value: Any) -> bool:
    return inspect.isclass(value) and not issubclass(value, BaseException)


def _subclasses(base: type) -> set[type]:
    found: set[type] = set()
    stack = [base]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


class _Checker:
    """Walks a config, listing layers and what loading it would run from the file."""

    def __init__(self, known: KnownObjects, user: set[str]) -> None:
        self.known = known
        self.user = user
        self.layers: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str, str]] = []
        self.classes: set[str] = set()
        self.root = ("model", "")
        self.listing = True
        self.version = "Keras 3" if known.keras3 else "Keras 2 (tf-keras)"

    def walk(
        self, node: Any, owner: tuple[str, str], is_layer: bool, depth: int, key: str = ""
    ) -> None:
        if depth > MAX_DEPTH:
            raise RecursionError(f"config nested over {MAX_DEPTH} levels")
        if isinstance(node, list):
            for item in node:
                self.walk(item, owner, is_layer, depth + 1, key)
        elif isinstance(node, dict):
            cls = node.get("class_name")
            if isinstance(cls, str):
                if is_layer:
                    owner = (_name_of(node), cls)
                    if self.listing:
                        self.layers.append(owner)
                self.classes.add(cls)
                if not self._check_object(node, cls, owner):
                    return  # refused with its code: what it holds adds nothing
            # Inside a plain dict, name problems after the key that holds it ("activation").
            context = "" if isinstance(cls, str) else key
            self._walk_items(node, owner, depth, holds_layers=False, context=context)
        elif isinstance(node, str) and _is_bytecode(node):
            what = f"its {key!r}" if key else "its config"
            self.refuse(owner, owner[1], f"{what} is Python bytecode (a function stored as code)")

    def _walk_items(
        self,
        mapping: dict[str, Any],
        owner: tuple[str, str],
        depth: int,
        *,
        holds_layers: bool,
        context: str = "",
    ) -> None:
        for key, value in mapping.items():
            if key in ("compile_config", "training_config"):
                continue  # never compiled: losses and metrics are not loaded
            if isinstance(value, str) and key.endswith("_type") and value == "lambda":
                self.refuse(owner, owner[1], f"{key} 'lambda': Python code stored in the file")
            if key in _ACTIVATION_KEYS and isinstance(value, str):
                self._check_activation(value, owner)
            if key == "config" and isinstance(value, dict) and "class_name" in mapping:
                # An object's own config: the keys holding layers are found there.
                self._walk_items(value, owner, depth + 1, holds_layers=True)
                continue
            child_is_layer = holds_layers and (
                (key in _LAYER_KEYS and isinstance(value, dict))
                or (key in _LAYER_LIST_KEYS and isinstance(value, list))
            )
            self.walk(value, owner, child_is_layer, depth + 1, context or key)

    def _check_object(self, node: dict[str, Any], cls: str, owner: tuple[str, str]) -> bool:
        """Check one object; False when it is refused and its content need not be walked."""
        registered = node.get("registered_name")
        if cls in self.user or (isinstance(registered, str) and registered in self.user):
            return True  # the user's own class, from their --custom-objects file
        if cls in _CODE_LAYERS:
            self.refuse(owner, cls, _CODE_LAYERS[cls])
            return False
        if cls == "__lambda__":
            self.refuse(owner, owner[1], "a function stored as Python bytecode")
            return False
        if (cls.startswith("__") and cls.endswith("__")) or cls in _DATA_MARKERS:
            return True  # serialisation markers of tensors, tuples, shapes: data
        if cls == "function":  # Keras 3: a function referenced by module and name
            self._check_function(node, owner)
        elif cls in self.known.edgesmith:
            pass  # loaded from edgesmith's own objects, whatever module the file names
        elif cls not in self.known.classes:
            why = (
                f"class {cls!r} is not built into {self.version}, not edgesmith's "
                "and not given with --custom-objects"
            )
            self.refuse(owner, cls, why)
        else:
            self._check_builtin(node, cls, owner)
        return True

    def _check_builtin(self, node: dict[str, Any], cls: str, owner: tuple[str, str]) -> None:
        module = node.get("module")
        if isinstance(module, str) and module and root_package(module) not in self.known.packages:
            self.refuse(owner, cls, f"names module {module!r} outside Keras (it would be imported)")
        if cls in ("TFOpLambda", "SlicingOpLambda"):
            config = node.get("config")
            function = config.get("function") if isinstance(config, dict) else None
            if not _pure_tf_op(function):
                why = f"calls TensorFlow function {function!r}, not a pure tensor op"
                self.refuse(owner, cls, why)

    def _check_function(self, node: dict[str, Any], owner: tuple[str, str]) -> None:
        name, module = node.get("config"), node.get("module")
        if isinstance(name, str) and name in self.user:
            return
        if (
            isinstance(name, str)
            and isinstance(module, str)
            and root_package(module) in self.known.packages
            and name in self.known.activations
        ):
            return
        self.refuse(owner, owner[1], f"function {name!r} of module {module!r} is not a Keras one")

    def _check_activation(self, name: str, owner: tuple[str, str]) -> None:
        known = self.known
        if name in self.user or name in known.activations or name in known.edgesmith:
            return
        # Names the version resolves beyond its public list: a dictionary lookup, no file code.
        with contextlib.suppress(Exception):
            found = known.activation_lookup(name)
            module = root_package(getattr(found, "__module__", ""))
            if callable(found) and module in (*known.packages, "tensorflow"):
                return
        why = (
            f"activation {name!r} is not built into {self.version} nor given with --custom-objects"
        )
        self.refuse(owner, owner[1], why)

    def refuse(self, owner: tuple[str, str], cls: str, why: str) -> None:
        self.refused.append((owner[0], cls, why))


def _name_of(node: dict[str, Any]) -> str:
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return str(name if name is not None else node.get("name", "?"))


def _is_bytecode(text: str) -> bool:
    """Whether ``text`` is base64 of marshalled Python code (how Keras stores lambdas)."""
    if len(text) < 16 or not _BASE64.fullmatch(text):
        return False
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    # marshal's code-object type byte, with or without its reference flag.
    return raw[:1] in (b"c", b"\xe3")


def _pure_tf_op(function: Any) -> bool:
    if not isinstance(function, str) or not function:
        return False
    parts = function.split(".")
    if parts[:2] == ["compat", "v1"] and len(parts) > 2:
        parts = parts[2:]
    if len(parts) == 1:
        return parts[0] not in _TF_OP_DENIED
    return parts[0] in _TF_OP_NAMESPACES
