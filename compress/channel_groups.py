"""Which channels of a Keras model must be removed together (graph analysis, no weights changed).

Channel pruning removes whole output channels (filters, units, heads). Removing channel
``c`` of a layer's output also removes row ``c`` of every kernel that reads it, the
``c``-th scale of the normalisations and depthwise filters it goes through, and channel
``c`` of every tensor it is added to. This module walks the model's functional graph and
describes each tensor's last axis as a *layout*: a list of :class:`Part`, each either all
the channels of one *space* (the output channels of one producer: Conv, Dense, Embedding,
the units of an LSTM/GRU/SimpleRNN) or a fixed block that is never cut. Then:

* channel-wise layers (activations, dropout, pooling, padding, ``BatchNormalization``,
  ``DepthwiseConv``, the zoo's ``PositionEmbedding``) pass the layout on, and their
  weights are cut with it; a ``SeparableConv``'s depthwise filter goes with its input
  channels, its pointwise kernel reads them and produces a new space;
* ``Add``/``Subtract``/``Multiply``/``Average``/``Maximum``/``Minimum`` make their inputs'
  spaces one (channels joined by an add are removed together);
* ``Concatenate`` on the last axis concatenates layouts (the second input's channels sit
  at an offset); ``Flatten`` repeats the layout once per position;
* the zoo's ``AttentionCore`` (also what a Keras 3 ``MultiHeadAttention`` becomes on
  import) ties its query, key and value spaces into one group of *heads*;
* a recurrent layer's units are a space of its own: all gate slices of a unit, its row
  and column of the recurrent kernel, go together.

Any other layer (``LayerNormalization`` and softmax mix channels, ``Reshape``,
``Bidirectional``, custom layers, a layer called twice) *locks* the spaces it reads, as do
the model's outputs: a locked space keeps its full width, and the plan says why. Nothing
here raises on an unknown layer.

Example:
    >>> from edgesmith.zoo.builders import build_model  # doctest: +SKIP
    >>> graph = analyse(build_model("cnn", input_shape=(8, 8, 1), num_classes=10))  # doctest: +SKIP
    >>> [g.name for g in graph.groups]  # doctest: +SKIP
    ['conv0a', 'conv0b', 'conv1a', 'conv1b', 'hidden']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgesmith.compress.layer_plan import short_weight_name

# Layers that act on each channel on its own and hold no weights: the layout passes through.
PASS_THROUGH = frozenset(
    {
        "Activation",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "ThresholdedReLU",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "ActivityRegularization",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "RepeatVector",
        "Identity",
    }
)
MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
CONVOLUTIONS = frozenset({"Conv1D", "Conv2D", "Conv3D"})
DEPTHWISE_CONV = frozenset({"DepthwiseConv1D", "DepthwiseConv2D"})
SEPARABLE_CONV = frozenset({"SeparableConv1D", "SeparableConv2D"})
RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
# Why common layers that no rule covers keep the channels they read.
MIXING = {
    "LayerNormalization": "normalises over the channels",
    "Softmax": "softmax over the channels",
    "Reshape": "moves channels to other axes",
    "Permute": "moves channels to other axes",
    "Bidirectional": "both directions' units are not pruned yet",
    "TimeDistributed": "wrapped layers are not pruned yet",
    "MultiHeadAttention": "tf-keras attention is not pruned (a Keras 3 one is, after import)",
}
# The config key holding each producer's width.
WIDTH_KEYS = {
    "Dense": "units",
    "Embedding": "output_dim",
    **{c: "filters" for c in CONVOLUTIONS | SEPARABLE_CONV},
    **{c: "units" for c in RECURRENT_GATES},
}


@dataclass(frozen=True)
class Part:
    """A block of a tensor's last axis: all channels of ``space``, or ``size`` fixed ones."""

    space: int | None
    size: int


@dataclass(frozen=True)
class WeightAxis:
    """One axis of one weight that follows a layout.

    ``role`` is ``out`` for the weights that compute the channel (a producer's kernel
    columns and bias), ``pass`` for the channel-wise weights it goes through
    (normalisation, depthwise filters, position tables) and ``in`` for the kernel rows
    that read it.
    """

    layer: str
    weight: str
    axis: int
    parts: tuple[Part, ...]
    role: str


@dataclass
class Group:
    """Items removed together: item ``i`` is channels ``i*block .. (i+1)*block-1`` of
    every member space (block 1 for channels and units, the head size for heads)."""

    name: str
    kind: str  # channels | units | heads
    items: int
    members: list[tuple[int, int]]  # (space, block)
    layers: list[str]  # layers whose width (or number of heads) changes with it


@dataclass
class ChannelGraph:
    """The outcome of :func:`analyse`: groups, the weight axes they cut, what is left."""

    groups: list[Group]
    axes: list[WeightAxis]
    producers: dict[str, tuple[str, int]]  # layer -> (config key, its space)
    heads: dict[str, int]  # AttentionCore layer -> index of its group
    left: dict[str, str]  # layer -> why it keeps its full width
    parent: list[int] = field(default_factory=list)

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            space = self.parent[space]
        return space

    def channels(self, kept_items: list[np.ndarray]) -> dict[int, np.ndarray]:
        """``{space: kept channel indices}`` for the kept items of every group."""
        kept: dict[int, np.ndarray] = {}
        for group, items in zip(self.groups, kept_items, strict=True):
            items = np.sort(np.asarray(items, dtype=int))
            for space, block in group.members:
                kept[space] = (items[:, None] * block + np.arange(block)[None, :]).reshape(-1)
        return kept

    def indices(self, axis: WeightAxis, kept: dict[int, np.ndarray]) -> np.ndarray:
        """The indices of ``axis`` that remain when ``kept`` channels of each space stay."""
        out, offset = [], 0
        for part in axis.parts:
            root = None if part.space is None else self.find(part.space)
            if root is not None and root in kept:
                out.append(offset + kept[root])
            else:
                out.append(offset + np.arange(part.size))
            offset += part.size
        return np.concatenate(out) if out else np.arange(0)

    def plan(self) -> dict[str, Any]:
        """The groups and the layers left at full width, for the step's record."""
        return {
            "targets": [name for g in self.groups for name in g.layers],
            "groups": [
                {"name": g.name, "kind": g.kind, "items": g.items, "layers": list(g.layers)}
                for g in self.groups
            ],
            "left": dict(self.left),
        }


def analyse(model: Any) -> ChannelGraph:
    """Walk ``model``'s graph and group the channels that must be removed together.

    A Sequential model is walked as the functional model of the same layers; a model
    that is neither (a subclassed model) has no graph: every layer is left.
    """
    from edgesmith.zoo.tfkeras import keras

    if not getattr(model, "_is_graph_network", False):
        if type(model).__name__ == "Sequential" and model.inputs:
            model = keras().Model(model.inputs, model.outputs)
        else:
            return ChannelGraph([], [], {}, {}, {model.name: "not a functional model"}, [])
    return _Walker(model).run()


class _Walker:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.parent: list[int] = []
        self.sizes: list[int] = []
        self.locks: dict[int, str] = {}
        self.axes: list[WeightAxis] = []
        self.producers: dict[str, tuple[str, int]] = {}
        self.ties: list[tuple[str, int, list[list[Part]]]] = []
        self.left: dict[str, str] = {}
        self.layouts: dict[tuple[str, int, int], list[Part]] = {}
        self.calls: dict[int, int] = {}

    # -- union-find over spaces -----------------------------------------------------------

    def new_space(self, size: int) -> int:
        self.parent.append(len(self.parent))
        self.sizes.append(int(size))
        return len(self.parent) - 1

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)  # the earlier space names the group
            if max(a, b) in self.locks:
                self.locks.setdefault(min(a, b), self.locks[max(a, b)])

    def lock(self, layout: list[Part], why: str) -> None:
        for part in layout:
            if part.space is not None:
                self.locks.setdefault(self.find(part.space), why)

    # -- the walk -------------------------------------------------------------------------

    def run(self) -> ChannelGraph:
        depths = self.model._nodes_by_depth
        for depth in depths.values():
            for node in depth:
                self.calls[id(node.layer)] = self.calls.get(id(node.layer), 0) + 1
        for depth in sorted(depths, reverse=True):
            for node in depths[depth]:
                self.visit(node)
        for tensor in self.model.outputs:
            self.lock(self.layout_of(tensor), "feeds a model output")
        return self.finish()

    def layout_of(self, tensor: Any) -> list[Part]:
        layer, node_index, tensor_index = tensor._keras_history
        key = (layer.name, node_index, tensor_index)
        return self.layouts.get(key) or [Part(None, _width(tensor))]

    def visit(self, node: Any) -> None:
        layer = node.layer
        outputs = _flatten(node.outputs)
        inputs = [self.layout_of(t) for t in node.keras_inputs]
        cls = type(layer).__name__
        if cls == "InputLayer":
            results = [[Part(None, _width(t))] for t in outputs]
        elif self.calls.get(id(layer), 0) > 1:
            results = self.opaque(layer, inputs, outputs, "called more than once")
        else:
            try:
                results = self.handle(layer, cls, inputs, node, outputs)
            except _Opaque as why:
                results = self.opaque(layer, inputs, outputs, str(why))
        for tensor, layout in zip(outputs, results, strict=True):
            if sum(p.size for p in layout) != _width(tensor):  # a rule's safety net
                self.lock(layout, f"{layer.name}: channel layout does not match its output")
                layout = [Part(None, _width(tensor))]
            history = tensor._keras_history
            self.layouts[(history.layer.name, history.node_index, history.tensor_index)] = layout

    def opaque(self, layer: Any, inputs: list[list[Part]], outputs: list[Any], why: str) -> Any:
        cls = type(layer).__name__
        for layout in inputs:
            self.lock(layout, f"read by {layer.name} ({cls}: {why})")
        if layer.weights:
            self.left[layer.name] = f"{cls}: {why}"
        return [[Part(None, _width(t))] for t in outputs]

    def add_axis(self, layer: Any, weight: str, axis: int, parts: list[Part], role: str) -> None:
        self.axes.append(WeightAxis(layer.name, weight, axis, tuple(parts), role))

    def produce(self, layer: Any, size: int) -> list[Part]:
        space = self.new_space(size)
        self.producers[layer.name] = (WIDTH_KEYS[type(layer).__name__], space)
        activation = str(layer.get_config().get("activation", ""))
        if "softmax" in activation:
            self.locks[space] = f"{layer.name}: softmax over its channels"
        return [Part(space, size)]

    def handle(
        self, layer: Any, cls: str, inputs: list[list[Part]], node: Any, outputs: list[Any]
    ) -> list[list[Part]]:
        config = layer.get_config()
        if config.get("data_format", "channels_last") != "channels_last":
            raise _Opaque("channels_first data format")
        names = [short_weight_name(v) for v in layer.weights]
        if len(set(names)) != len(names):
            raise _Opaque("weights of the same name")
        if cls in PASS_THROUGH:
            if cls == "Activation" and "softmax" in str(config.get("activation")):
                raise _Opaque("softmax over channels")
            return [inputs[0]]
        if cls in MERGES:
            return [self.unify(inputs, layer.name)]
        if cls == "Concatenate":
            if config.get("axis") not in (-1, len(outputs[0].shape) - 1):
                raise _Opaque("concatenates along another axis than channels")
            return [[part for layout in inputs for part in layout]]
        if cls == "Flatten":
            shape = tuple(node.keras_inputs[0].shape)
            if len(shape) < 3 or any(d is None for d in shape[1:-1]):
                raise _Opaque("flattens an input of unknown or rank-2 shape")
            return [inputs[0] * int(np.prod(shape[1:-1]))]
        if cls == "BatchNormalization":
            axis = config.get("axis")
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            rank = len(outputs[0].shape)
            if axis not in (-1, rank - 1):
                raise _Opaque("normalises along another axis than channels")
            for name in names:
                self.add_axis(layer, name, 0, inputs[0], "pass")
            return [inputs[0]]
        if cls == "PositionEmbedding" and names == ["positions"]:
            self.add_axis(layer, "positions", 1, inputs[0], "pass")
            return [inputs[0]]
        if cls == "Dense":
            self.add_axis(layer, "kernel", 0, inputs[0], "in")
            out = self.produce(layer, config["units"])
            self.add_axis(layer, "kernel", 1, out, "out")
            if "bias" in names:
                self.add_axis(layer, "bias", 0, out, "out")
            return [out]
        if cls in CONVOLUTIONS:
            if config.get("groups", 1) != 1:
                raise _Opaque("grouped convolution")
            rank = len(layer.kernel.shape)
            self.add_axis(layer, "kernel", rank - 2, inputs[0], "in")
            out = self.produce(layer, config["filters"])
            self.add_axis(layer, "kernel", rank - 1, out, "out")
            if "bias" in names:
                self.add_axis(layer, "bias", 0, out, "out")
            return [out]
        if cls in DEPTHWISE_CONV or cls in SEPARABLE_CONV:
            if config.get("depth_multiplier", 1) != 1:
                raise _Opaque("depth_multiplier other than 1")
            rank = len(layer.depthwise_kernel.shape)
            if cls in DEPTHWISE_CONV:
                self.add_axis(layer, "depthwise_kernel", rank - 2, inputs[0], "pass")
                if "bias" in names:
                    self.add_axis(layer, "bias", 0, inputs[0], "pass")
                return [inputs[0]]
            # The depthwise filter of an input channel goes with the pointwise row reading it.
            self.add_axis(layer, "depthwise_kernel", rank - 2, inputs[0], "in")
            self.add_axis(layer, "pointwise_kernel", rank - 2, inputs[0], "in")
            out = self.produce(layer, config["filters"])
            self.add_axis(layer, "pointwise_kernel", rank - 1, out, "out")
            if "bias" in names:
                self.add_axis(layer, "bias", 0, out, "out")
            return [out]
        if cls in RECURRENT_GATES:
            return [self.recurrent(layer, cls, config, inputs[0], outputs)]
        if cls == "Embedding":
            out = self.produce(layer, config["output_dim"])
            self.add_axis(layer, "embeddings", 1, out, "out")
            return [out]
        if cls == "AttentionCore" and len(inputs) == 3 and hasattr(layer, "num_heads"):
            self.ties.append((layer.name, int(layer.num_heads), inputs))
            return [inputs[2]]  # the heads' contexts, concatenated as the value's channels
        raise _Opaque(MIXING.get(cls, "no channel rule for this layer"))

    def recurrent(
        self, layer: Any, cls: str, config: dict, layout: list[Part], outputs: list[Any]
    ) -> list[Part]:
        if len(outputs) != 1 or config.get("stateful"):
            raise _Opaque("returns its state or is stateful")
        if type(layer.cell).__name__ != f"{cls}Cell":
            raise _Opaque("custom recurrent cell")
        gates = RECURRENT_GATES[cls]
        self.add_axis(layer, "kernel", 0, layout, "in")
        out = self.produce(layer, config["units"])
        self.add_axis(layer, "kernel", 1, out * gates, "out")
        self.add_axis(layer, "recurrent_kernel", 0, out, "in")
        self.add_axis(layer, "recurrent_kernel", 1, out * gates, "out")
        bias = [v for v in layer.weights if short_weight_name(v) == "bias"]
        if bias:
            self.add_axis(layer, "bias", len(bias[0].shape) - 1, out * gates, "out")
        return out

    def unify(self, layouts: list[list[Part]], name: str) -> list[Part]:
        first = layouts[0]
        shape = [p.size for p in first]
        if any([p.size for p in layout] != shape for layout in layouts):
            for layout in layouts:
                self.lock(layout, f"merged by {name} with channels laid out differently")
            return [Part(None, sum(p.size for p in first))]
        for column in zip(*layouts, strict=True):
            spaces = [p.space for p in column]
            if any(s is None for s in spaces):
                self.lock(list(column), f"added to fixed channels by {name}")
            else:
                for other in spaces[1:]:
                    self.union(spaces[0], other)
        return first

    # -- the groups -----------------------------------------------------------------------

    def finish(self) -> ChannelGraph:
        groups: list[Group] = []
        heads: dict[str, int] = {}
        tied: dict[int, int] = {}
        for _core, _, layouts in self.ties:
            for layout in layouts:
                for part in layout:
                    if part.space is not None:
                        root = self.find(part.space)
                        tied[root] = tied.get(root, 0) + 1
        for core, count, layouts in self.ties:
            why = self.head_problem(count, layouts, tied)
            if why:
                for layout in layouts:
                    self.lock(layout, f"{core}: {why}")
                self.left.setdefault(core, why)
                continue
            roots = [self.find(layout[0].space) for layout in layouts]
            blocks = [self.sizes[r] // count for r in roots]
            layers = [n for r in roots for n in self.producers_of(r)]
            heads[core] = len(groups)
            groups.append(
                Group(core, "heads", count, list(zip(roots, blocks, strict=True)), [*layers, core])
            )
        done = {space for g in groups for space, _ in g.members}
        for space in range(len(self.parent)):
            root = self.find(space)
            if root in done:
                continue
            done.add(root)
            layers = self.producers_of(root)
            if root in self.locks:
                for name in layers:
                    self.left.setdefault(name, self.locks[root])
                continue
            if not layers:
                continue
            recurrent = any(
                self.model.get_layer(n).__class__.__name__ in RECURRENT_GATES for n in layers
            )
            groups.append(
                Group(layers[0], "units" if recurrent else "channels", self.sizes[root],
                      [(root, 1)], layers)
            )  # fmt: skip
        return ChannelGraph(groups, self.axes, self.producers, heads, self.left, self.parent)

    def producers_of(self, root: int) -> list[str]:
        return [n for n, (_, s) in self.producers.items() if self.find(s) == root]

    def head_problem(self, count: int, layouts: list[list[Part]], tied: dict[int, int]) -> str:
        if any(len(layout) != 1 or layout[0].space is None for layout in layouts):
            return "query, key and value are not each one projection"
        roots = [self.find(layout[0].space) for layout in layouts]
        if len(set(roots)) != 3 or any(tied[r] != 1 for r in roots):
            return "query, key and value projections are shared or joined"
        if any(r in self.locks for r in roots):
            return next(self.locks[r] for r in roots if r in self.locks)
        sizes = [self.sizes[r] for r in roots]
        if sizes[0] != sizes[1] or any(s % count for s in sizes) or count < 2:
            return "widths do not split into its heads"
        return ""


class _Opaque(Exception):
    """A layer the walk has no channel rule for (the message says why)."""


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _flatten(item)]
    if isinstance(value, dict):
        return [x for item in value.values() for x in _flatten(item)]
    return [value]


def _width(tensor: Any) -> int:
    shape = tuple(tensor.shape)
    return int(shape[-1]) if shape and shape[-1] is not None else 0
