"""A width-scaled copy of any tf-keras model's architecture: the student of a model of one's own.

A zoo model is rebuilt from its builder at another width; a user's model has no builder,
so :func:`scaled_architecture` edits its Keras config instead: the width of each layer
that sets one (``units``, ``filters``, an Embedding's ``output_dim``, the units inside
``Bidirectional``/``TimeDistributed``, a ``MultiHeadAttention``'s ``key_dim``) is
multiplied by ``width`` and rounded to a multiple of 4 (at least 4). The query/key/value
projections of the zoo's ``AttentionCore`` keep their number of heads: their widths are
rounded to a multiple of ``2 * heads``, so each head gets narrower.

Layers whose widths must agree (the branches of an ``Add``, a query and its key) form a
group, scaled together or not at all. A group stays as it is when its width is bound to
something that is not scaled: the model's output (the classifier keeps its classes), the
model's input (a residual ``Add`` with the input) or a ``Reshape`` to a fixed shape. The
scaled model is then built; if it does not build (or its input/output shapes changed),
groups are added one at a time and any group that breaks the build is left unscaled.
The copy has fresh weights (seeded by the caller), except layers that hold only
non-trainable state (a ``Normalization``'s adapted mean and variance), which keep it.

Example:
    >>> from edgesmith.zoo.tfkeras import keras
    >>> k = keras()
    >>> inputs = k.Input((8,))
    >>> hidden = k.layers.Dense(64, activation="relu", name="hidden")(inputs)
    >>> teacher = k.Model(inputs, k.layers.Dense(3, activation="softmax", name="out")(hidden))
    >>> plan = scaled_architecture(teacher, 0.5)
    >>> plan.widths["hidden"], plan.unscaled["out"]
    ((64, 32), 'output')
    >>> plan.build().output_shape
    (None, 3)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgesmith.core.errors import ConfigError
from edgesmith.zoo.datasets import DatasetSplits

if TYPE_CHECKING:
    from edgesmith.compress.distill import DistillConfig
    from edgesmith.compress.step import StepContext

# Class name -> the config key that sets the layer's output width.
WIDTH_KEYS = {
    "Dense": "units",
    "Conv1D": "filters",
    "Conv2D": "filters",
    "Conv3D": "filters",
    "Conv1DTranspose": "filters",
    "Conv2DTranspose": "filters",
    "Conv3DTranspose": "filters",
    "SeparableConv1D": "filters",
    "SeparableConv2D": "filters",
    "ConvLSTM1D": "filters",
    "ConvLSTM2D": "filters",
    "LSTM": "units",
    "GRU": "units",
    "SimpleRNN": "units",
    "Embedding": "output_dim",
}
# Wrappers whose output width is that of the layer inside them.
WRAPPERS = ("Bidirectional", "TimeDistributed")
# Merges that need inputs of one width.
EQUAL_WIDTH = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
MULTIPLE = 4


@dataclass
class ScaledArchitecture:
    """A width-scaled copy of a model's architecture, ready to build with fresh weights.

    Attributes:
        widths: layer name -> (width before, width after) for every layer that sets one.
        unscaled: layer name -> why its width was kept (``output``, ``input``,
            ``fixed shape``, ``build``: scaling it made the model fail to build).
        params: (teacher's parameters, the built copy's parameters).
    """

    teacher: Any
    configs: dict[str, dict[str, Any]]  # layer name -> its scaled config (changed ones)
    objects: dict[str, Any]
    widths: dict[str, tuple[int, int]]
    unscaled: dict[str, str]
    state: dict[str, list[Any]] = field(default_factory=dict)
    params: tuple[int, int] = (0, 0)

    def build(self) -> Any:
        """The model with fresh weights (seed first for repeatable weights)."""
        model = _rebuild(self.teacher, self.configs, self.objects)
        for name, weights in self.state.items():
            layer = model.get_layer(name)
            if [w.shape for w in layer.get_weights()] == [w.shape for w in weights]:
                layer.set_weights(weights)
        return model


def scaled_architecture(model: Any, width: float) -> ScaledArchitecture:
    """The architecture of tf-keras ``model`` with its hidden widths times ``width``.

    Raises ConfigError for a model whose architecture cannot be read (a subclassed
    model, several inputs or outputs) or rebuilt.
    """
    config = _config_of(model)
    objects = _objects(model)
    nodes = _nodes(config, sequential=_is_sequential(model))
    graph = _WidthGraph(nodes, _output_refs(config, nodes))
    layers = {n.name: n for n in nodes}
    unscaled = dict(graph.fixed_layers())

    def candidate(selected: list[list[str]]) -> dict[str, dict[str, Any]]:
        configs = {}
        for members in selected:
            for name in members:
                configs[name] = copy.deepcopy(layers[name].config)
                _set_width(configs[name], layers[name].class_name, width, graph.multiple(name))
        return configs

    def fits(configs: dict[str, dict[str, Any]]) -> Any:
        """The model built with ``configs``, or None when it does not build the same shapes."""
        try:
            built = _rebuild(model, configs, objects)
        except Exception:  # any build failure means: these widths do not fit together
            return None
        same = built.input_shape == model.input_shape and built.output_shape == model.output_shape
        return built if same else None

    chosen = [g for g in graph.groups() if not any(m in unscaled for m in g)]
    built = fits(candidate(chosen))
    if built is None:
        if fits({}) is None:
            raise ConfigError(
                f"distill: the architecture of {model.name!r} cannot be rebuilt from its config",
                expected="a functional or Sequential tf-keras model whose layers rebuild "
                "from their config",
                fix="pass student=NAME (a zoo model reading the same data)",
            )
        # Find the groups that break the build: add them one at a time.
        kept: list[list[str]] = []
        for members in chosen:
            trial = fits(candidate([*kept, members]))
            if trial is not None:
                kept.append(members)
                built = trial
            else:
                unscaled.update({name: "build" for name in members})
        chosen = kept
        built = built or fits({})
    configs = candidate(chosen)
    widths = {}
    for name in graph.width_layers:
        cls = layers[name].class_name
        after = configs.get(name, layers[name].config)
        widths[name] = (_width(layers[name].config, cls), _width(after, cls))
    params = (int(model.count_params()), int(built.count_params()))
    return ScaledArchitecture(model, configs, objects, widths, unscaled, _state(model), params)


# -- the student of a distillation step -------------------------------------------------


def clone_student(
    model: Any, data: DatasetSplits, config: DistillConfig, context: StepContext
) -> tuple[dict[str, Any], ScaledArchitecture]:
    """The student of a model without a zoo builder: its own architecture, width-scaled."""
    if config.depth is not None:
        raise ConfigError(
            f"distill: depth={config.depth} for {model.name!r}, a model of your own",
            expected="depth= only with a zoo architecture (student=NAME, or a zoo teacher); "
            "a copy of your model's architecture keeps its layers",
            fix="drop depth=, or pass student=NAME (a zoo model reading the same data)",
        )
    clone = scaled_architecture(model, config.width)
    builder = dict(context.builder or {})
    layout = builder.get("layout") or layout_of(data)
    train = {
        "epochs": 10,
        "learning_rate": 2e-3,
        "batch_size": context.batch_size,
        **(builder.get("train") or {}),
    }
    info = {
        "name": f"{context.model_name or model.name} x{config.width:g}",
        "layout": layout,
        "family": None,
        # No "arch": a later distill step copies this architecture again.
        "builder": {
            "copy_of": context.model_name or model.name,
            "width": config.width,
            "train": train,
        },
        "train": train,
    }
    return info, clone


def layout_of(data: DatasetSplits) -> str:
    """How ``data``'s samples are shaped for a model: tokens, image or sequence."""
    if "vocabulary" in data.preprocessing:
        return "tokens"
    return "image" if data.x_train.ndim == 4 else "sequence"


def relayout(data: DatasetSplits, layout: str) -> DatasetSplits:
    """``data`` shaped for a model of ``layout`` (a student may read frames as an image)."""
    if layout == "image":
        return data.with_layout("image")
    if data.x_train.ndim == 4 and data.x_train.shape[-1] == 1:
        arrays = {f"x_{s}": getattr(data, f"x_{s}")[..., 0] for s in ("train", "val", "test")}
        return DatasetSplits(**{**data.__dict__, **arrays})
    return data


def student_builder(
    config: DistillConfig, data: DatasetSplits, teacher_builder: dict[str, Any] | None
) -> tuple[dict[str, Any], Any]:
    """What the student is (name, layout, builder, budget) and a function that builds it."""
    from dataclasses import asdict

    from edgesmith.zoo.builders import build_model
    from edgesmith.zoo.registry import get_spec
    from edgesmith.zoo.train import build_for_data

    overrides: dict[str, Any] = {}
    if config.depth is not None:
        overrides["depth"] = config.depth
    tokens = "vocabulary" in data.preprocessing
    if config.student:
        spec = get_spec(config.student)
        overrides["width"] = float(spec.builder.get("width", 1.0)) * config.width
        if (spec.layout == "tokens") != tokens:
            want = "token ids" if spec.layout == "tokens" else "signals (frames or images)"
            have = "token ids" if tokens else "signals (frames or images)"
            raise ConfigError(
                f"distill: student={spec.name} reads {want}, the teacher's data "
                f"{data.name!r} holds {have}",
                expected=f"a student of the same input kind as the teacher's data {data.name!r}",
                fix="pick a zoo model trained on the same kind of input (see `edgesmith zoo list`)",
            )
        student_data = relayout(data, spec.layout)
        info = {
            "name": spec.name,
            "layout": spec.layout,
            "family": spec.family,
            "builder": {"arch": spec.arch, **spec.builder, **overrides},
            "train": asdict(spec.train),
        }
        return info, lambda: build_for_data(spec, student_data, **overrides)
    if not teacher_builder or "arch" not in teacher_builder:
        raise ConfigError(
            "distill: no student= given and the teacher's card has no builder",
            expected="student=NAME naming a zoo model (for example student=cnn-digits)",
        )
    options = {k: v for k, v in teacher_builder.items() if k not in ("arch", "train", "layout")}
    options.update(overrides)
    options["width"] = float(options.get("width", 1.0)) * config.width
    layout = teacher_builder.get("layout") or ("image" if data.x_train.ndim == 4 else "sequence")
    train = dict(teacher_builder.get("train") or {})
    train.setdefault("epochs", 10)
    train.setdefault("learning_rate", 2e-3)
    train.setdefault("batch_size", 32)
    student_data = relayout(data, layout)
    if tokens:
        options.setdefault("vocab_size", len(data.preprocessing["vocabulary"]) + 2)
    info = {
        "name": f"{teacher_builder['arch']} x{config.width:g}",
        "layout": layout,
        "family": None,
        "builder": {"arch": teacher_builder["arch"], **options},
        "train": train,
    }
    return info, lambda: build_model(
        teacher_builder["arch"],
        input_shape=student_data.input_shape,
        num_classes=len(data.class_names),
        **options,
    )


# -- reading the graph -----------------------------------------------------------------------


@dataclass
class _Node:
    name: str
    class_name: str
    calls: list[list[str]]  # per call of the layer: names of the layers feeding it
    config: dict[str, Any]  # the layer's own config


def _config_of(model: Any) -> dict[str, Any]:
    if len(getattr(model, "outputs", None) or []) != 1 or len(model.inputs or []) != 1:
        raise ConfigError(
            f"distill: model {model.name!r} has {len(model.inputs or [])} inputs and "
            f"{len(model.outputs or [])} outputs",
            expected="a classifier with one input and one output",
            fix="pass student=NAME (a zoo model reading the same data)",
        )
    try:
        config = model.get_config()
    except NotImplementedError:
        config = None
    if not isinstance(config, dict) or "layers" not in config:
        raise ConfigError(
            f"distill: model {model.name!r} ({type(model).__name__}) has no layer graph to copy",
            expected="a functional or Sequential tf-keras model",
            fix="rebuild it with the functional API, or pass student=NAME",
        )
    return config


def _is_sequential(model: Any) -> bool:
    return type(model).__name__ == "Sequential"


def _nodes(config: dict[str, Any], *, sequential: bool) -> list[_Node]:
    nodes = []
    previous = None
    for entry in config["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        if sequential:
            calls = [[previous]] if previous is not None else [[]]
            previous = name
        else:
            calls = [_callers(node) for node in entry.get("inbound_nodes") or []] or [[]]
        nodes.append(_Node(name, entry["class_name"], calls, entry["config"]))
    return nodes


def _callers(node: Any) -> list[str]:
    """Names of the layers whose tensors are a call's positional inputs."""
    if isinstance(node, dict):  # the newer node format: {"args": [...], "kwargs": {...}}
        node = node.get("args", [])
    names = []
    for item in node:
        if isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
            names.append(item[0])
        elif isinstance(item, dict) and "config" in item:  # a serialized KerasTensor
            names.append(item["config"]["keras_history"][0])
        elif isinstance(item, (list, tuple)):
            names.extend(_callers(item))
    return names


def _output_refs(config: dict[str, Any], nodes: list[_Node]) -> list[str]:
    outputs = config.get("output_layers")
    if not outputs:  # Sequential: the last layer
        return [nodes[-1].name]
    if outputs and isinstance(outputs[0], str):
        outputs = [outputs]
    return [out[0] for out in outputs]


class _WidthGraph:
    """Where each tensor's last-axis width comes from, and which widths must agree."""

    def __init__(self, nodes: list[_Node], outputs: list[str]) -> None:
        self.parent: dict[str, str] = {}
        self.reason: dict[str, str] = {}  # root -> why the group is fixed
        self.heads: dict[str, int] = {}  # root -> multiple its widths must keep
        self.derived: dict[str, list[str]] = {}  # concatenation -> its input sources
        self.width_layers: list[str] = []
        self.source: dict[str, str] = {}  # layer name -> source of its output width
        for node in nodes:
            self._visit(node)
        for name in outputs:
            self._fix(self.source.get(name, name), "output")
        self._settle_concatenations()

    # union-find
    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> str:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            if rb in self.reason:
                self.reason.setdefault(ra, self.reason[rb])
            if rb in self.heads:
                self.heads[ra] = _lcm(self.heads.get(ra, 1), self.heads[rb])
        return ra

    def _fix(self, source: str, why: str) -> None:
        self.reason.setdefault(self.find(source), why)

    def _visit(self, node: _Node) -> None:
        name, cls, config = node.name, node.class_name, node.config
        first_inputs = node.calls[0]
        inner = _inner_class(cls, config)
        if cls == "InputLayer":
            self.source[name] = self.find(f"input:{name}")
            self._fix(self.source[name], "input")
            return
        if cls in WIDTH_KEYS or inner in WIDTH_KEYS:
            self.width_layers.append(name)
            self.source[name] = self.find(name)
            return
        inputs = [self.source.get(i, f"input:{i}") for call in node.calls for i in call]
        if cls in EQUAL_WIDTH and inputs:
            root = inputs[0]
            for other in inputs[1:]:
                root = self.union(root, other)
            self.source[name] = self.find(root)
            return
        mine = [self.source.get(i, f"input:{i}") for i in first_inputs]
        if cls == "Concatenate":
            self.derived[f"concat:{name}"] = mine
            self.source[name] = self.find(f"concat:{name}")
            return
        if _base_class(cls) == "AttentionCore" and len(mine) == 3:
            heads = int(config.get("num_heads", 1))
            self.union(mine[0], mine[1])  # a query and its key have one width
            for part in mine:
                root = self.find(part)
                self.heads[root] = _lcm(self.heads.get(root, 1), 2 * heads)
            self.source[name] = self.find(mine[2])  # the value's width comes out
            return
        if cls == "MultiHeadAttention":
            self.width_layers.append(name)  # key_dim: internal, bound to nothing outside
            self.heads[self.find(name)] = 2
            fixed_out = config.get("output_shape")
            self.source[name] = self.find(f"fixed:{name}") if fixed_out else mine[0]
            if fixed_out:
                self._fix(self.source[name], "fixed shape")
            return
        if cls == "Reshape":
            target = list(config.get("target_shape") or [])
            if -1 not in target and mine:
                self._fix(mine[0], "fixed shape")
            if target and target[-1] == -1 and mine:
                self.source[name] = self.find(mine[0])
            else:
                self.source[name] = self.find(f"fixed:{name}")
                self._fix(self.source[name], "fixed shape")
            return
        # Anything else passes its first input's width through (activations, pooling,
        # normalisation, Flatten, Dropout, PositionEmbedding, unknown layers); where that
        # is wrong, the build check finds it.
        self.source[name] = self.find(mine[0]) if mine else self.find(f"fixed:{name}")

    def _settle_concatenations(self) -> None:
        """A concatenation bound to another width binds every input it concatenates."""
        changed = True
        while changed:
            changed = False
            for concat, parts in self.derived.items():
                root = self.find(concat)
                bound = root in self.reason or any(
                    self.find(other) == root for other in self.parent if other != concat
                )
                if not bound:
                    continue
                why = self.reason.get(root, "concatenation")
                self._fix(concat, why)
                for part in parts:
                    if self.find(part) not in self.reason:
                        self._fix(part, why)
                        changed = True

    def groups(self) -> list[list[str]]:
        """The width layers in groups that scale together, in model order."""
        by_root: dict[str, list[str]] = {}
        for name in self.width_layers:
            by_root.setdefault(self.find(name), []).append(name)
        return list(by_root.values())

    def fixed_layers(self) -> dict[str, str]:
        return {
            name: self.reason[self.find(name)]
            for name in self.width_layers
            if self.find(name) in self.reason
        }

    def multiple(self, name: str) -> int:
        return self.heads.get(self.find(name), MULTIPLE)


def _inner_class(cls: str, config: dict[str, Any]) -> str | None:
    if cls in WRAPPERS and isinstance(config.get("layer"), dict):
        return config["layer"].get("class_name")
    return None


def _base_class(cls: str) -> str:
    return cls.rsplit(">", 1)[-1]  # registered names are "package>Class"


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


# -- editing widths ---------------------------------------------------------------------


def scaled_width(base: int, width: float, multiple: int = MULTIPLE) -> int:
    """``base * width`` rounded to a multiple of ``multiple``, at least ``multiple``.

    Example:
        >>> scaled_width(64, 0.5), scaled_width(10, 0.5), scaled_width(64, 0.5, multiple=16)
        (32, 4, 32)
    """
    return max(multiple, round(base * width / multiple) * multiple)


def _width(config: dict[str, Any], cls: str) -> int:
    if cls == "MultiHeadAttention":
        return int(config["key_dim"])
    if cls in WRAPPERS:
        inner = config["layer"]
        return int(inner["config"][WIDTH_KEYS[inner["class_name"]]])
    return int(config[WIDTH_KEYS[cls]])


def _set_width(config: dict[str, Any], cls: str, width: float, multiple: int) -> None:
    if cls == "MultiHeadAttention":
        config["key_dim"] = scaled_width(int(config["key_dim"]), width, 2)
        if config.get("value_dim"):
            config["value_dim"] = scaled_width(int(config["value_dim"]), width, 2)
        return
    if cls in WRAPPERS:
        for part in ("layer", "backward_layer"):
            inner = config.get(part)
            if isinstance(inner, dict):
                key = WIDTH_KEYS[inner["class_name"]]
                inner["config"][key] = scaled_width(int(inner["config"][key]), width, multiple)
        return
    key = WIDTH_KEYS[cls]
    config[key] = scaled_width(int(config[key]), width, multiple)


# -- building --------------------------------------------------------------------------


def _objects(model: Any) -> dict[str, Any]:
    """Every layer class of ``model`` by name, so that custom layers rebuild too."""
    from edgesmith.zoo.custom_layers import custom_objects

    found: dict[str, Any] = dict(custom_objects())
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        found.setdefault(type(layer).__name__, type(layer))
        for attr in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, attr, None)
            if inner is not None and not isinstance(inner, str):
                stack.append(inner)
        stack.extend(getattr(layer, "layers", []) or [])
    return found


def _rebuild(model: Any, configs: dict[str, dict[str, Any]], objects: dict[str, Any]) -> Any:
    """A copy of ``model`` with fresh layers, ``configs`` replacing some layers' settings."""
    from edgesmith.zoo.tfkeras import keras

    k = keras()

    def clone(layer: Any) -> Any:
        if type(layer).__name__ == "Lambda":
            # Weightless code that could not be rebuilt without trusting it again: shared.
            return layer
        if hasattr(layer, "layers") and hasattr(layer, "outputs"):  # a nested model
            return k.models.clone_model(layer, clone_function=clone)
        config = configs.get(layer.name) or layer.get_config()
        with k.utils.custom_object_scope(objects):
            return type(layer).from_config(copy.deepcopy(config))

    return k.models.clone_model(model, clone_function=clone)


def _state(model: Any) -> dict[str, list[Any]]:
    """Weights of layers holding only non-trainable state (adapted preprocessing)."""
    kept = {}
    for layer in model.layers:
        weights = layer.weights
        if weights and not layer.trainable_weights and type(layer).__name__ in _STATEFUL:
            kept[layer.name] = layer.get_weights()
    return kept


# Layers whose weights are statistics of the data, not learned: a fresh copy would lose them.
_STATEFUL = frozenset({"Normalization", "Discretization", "StringLookup", "IntegerLookup"})
