"""Keras 3 from tf-keras: the reverse walk behind ``to_keras3`` and the Keras 3 twins of the
zoo's custom layers.

A compressed tf-keras model (tfmot wrappers stripped) goes back to Keras 3 layer by layer
with the table of :mod:`edgesmith.zoo.keras3_layers`; the ``Dense`` query/key/value +
``AttentionCore`` + ``Dense`` output groups written by ``to_tf_keras`` become
``keras.layers.MultiHeadAttention`` again.

Example:
    >>> sorted(keras3_custom_objects())
    ['AttentionCore', 'PositionEmbedding']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgesmith.zoo.keras3_layers import SAME, SAME_ACTIVATIONS, translated_config

_K3_LAYERS: dict[str, type] | None = None


def keras3_custom_objects() -> dict[str, type]:
    """Keras 3 twins of the zoo's custom layers, for ``keras.saving.load_model``.

    Registered as ``edgesmith>AttentionCore`` and ``edgesmith>PositionEmbedding`` in
    Keras 3; same formulas and config keys as the tf-keras ones in
    :mod:`edgesmith.zoo.custom_layers`.
    """
    global _K3_LAYERS
    if _K3_LAYERS is None:
        _K3_LAYERS = _define_keras3_layers()
    return dict(_K3_LAYERS)


def _define_keras3_layers() -> dict[str, type]:
    import keras

    ops = keras.ops

    def length(x: Any) -> Any:
        return x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]

    @keras.saving.register_keras_serializable(package="edgesmith")
    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned embedding of each position to a ``(batch, length, dim)`` input."""

        def build(self, input_shape: Any) -> None:
            self.positions = self.add_weight(
                shape=(int(input_shape[-2]), int(input_shape[-1])),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
                name="positions",
            )

        def call(self, inputs: Any) -> Any:
            return inputs + self.positions

    @keras.saving.register_keras_serializable(package="edgesmith")
    class AttentionCore(keras.layers.Layer):
        """Multi-head attention over projected ``[query, key, value]`` (no weights)."""

        def __init__(
            self, num_heads: int, causal: bool = False, dropout: float = 0.0, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.num_heads = int(num_heads)
            self.causal = bool(causal)
            self.dropout = float(dropout)
            self.supports_masking = True

        def call(self, inputs: Any, mask: Any = None, training: Any = None) -> Any:
            query, key, value = inputs
            heads = self.num_heads
            key_dim, value_dim = query.shape[-1] // heads, value.shape[-1] // heads

            def split(x: Any, dim: int) -> Any:
                return ops.transpose(ops.reshape(x, (-1, length(x), heads, dim)), (0, 2, 1, 3))

            q, k, v = split(query, key_dim), split(key, key_dim), split(value, value_dim)
            scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (key_dim**-0.5)
            allowed = None
            masks = list(mask) if isinstance(mask, (list, tuple)) else [None, None, None]
            if masks[0] is not None:
                allowed = ops.cast(masks[0], "bool")[:, None, :, None]
            for other in masks[1:3]:
                if other is not None:
                    m = ops.cast(other, "bool")[:, None, None, :]
                    allowed = m if allowed is None else ops.logical_and(allowed, m)
            if self.causal:
                lower = ops.tril(ops.ones((length(query), length(key)), "bool"))[None, None]
                allowed = lower if allowed is None else ops.logical_and(allowed, lower)
            if allowed is not None:
                scores = ops.where(allowed, scores, ops.cast(-1e9, scores.dtype))
            weights = ops.softmax(scores, axis=-1)
            if training and self.dropout > 0:
                weights = keras.random.dropout(weights, self.dropout)
            context = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
            return ops.reshape(context, (-1, length(query), value.shape[-1]))

        def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
            return mask[0] if isinstance(mask, (list, tuple)) else None

        def compute_output_shape(self, input_shape: Any) -> Any:
            query, _, value = input_shape
            return (*tuple(query)[:-1], tuple(value)[-1])

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "num_heads": self.num_heads,
                "causal": self.causal,
                "dropout": self.dropout,
            }

    return {"PositionEmbedding": PositionEmbedding, "AttentionCore": AttentionCore}


class Backward:
    """Builds a Keras 3 model from a tf-keras graph (what ``to_keras3`` runs)."""

    def __init__(self, k2: Any, k3: Any, like: Any = None) -> None:
        self.k2, self.k3, self.like = k2, k3, like
        self.built: dict[int, Any] = {}  # id(tf-keras layer) -> Keras 3 layer, for reuse
        self.setters: list[Callable[[], None]] = []
        self.groups: dict[int, dict[str, Any]] = {}  # id(<n>_out Dense) -> its MHA group
        self.skip: set[int] = set()
        self.tensors: dict[int, Any] = {}

    def build(self, tf_model: Any) -> Any:
        k3 = self.k3
        _graph_network(tf_model)
        inputs = [
            k3.Input(shape=tuple(t.shape[1:]), dtype=t.dtype.name, name=_tf_layer(t).name)
            for t in tf_model.inputs
        ]
        outputs = self.walk(tf_model, inputs)
        model = k3.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            outputs[0] if len(outputs) == 1 else outputs,
            name=tf_model.name,
        )
        for setter in self.setters:
            setter()
        return model

    def walk(self, graph: Any, inputs: list[Any]) -> list[Any]:
        from edgesmith.zoo.tfkeras import tf

        nest = tf().nest
        self.find_groups(graph)
        for t, x in zip(graph.inputs, inputs, strict=True):
            self.tensors[id(t)] = x

        def sub(value: Any) -> Any:
            return self.tensors.get(id(value), value)

        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                if node.is_input or id(node.layer) in self.skip:
                    continue
                args = nest.map_structure(sub, list(node.call_args))
                kwargs = nest.map_structure(sub, dict(node.call_kwargs))
                outs = self.emit(node.layer, args, kwargs)
                for t, x in zip(nest.flatten(node.outputs), nest.flatten(outs), strict=False):
                    self.tensors[id(t)] = x
        return [self.tensors[id(t)] for t in graph.outputs]

    def emit(self, layer: Any, args: list, kwargs: dict) -> Any:
        from edgesmith.core.errors import ModelFileError

        cls = type(layer).__name__
        kwargs = {k: v for k, v in kwargs.items() if k in ("training", "initial_state")}
        if isinstance(layer, self.k2.Model):
            _graph_network(layer)
            outs = self.walk(layer, _flatten_args(args))
            return outs[0] if len(outs) == 1 else outs
        if id(layer) in self.groups:
            return self.attention_group(self.groups[id(layer)])
        if id(layer) not in self.built:
            self.built[id(layer)] = self.translate(layer)
        new = self.built[id(layer)]
        if new is None:
            raise ModelFileError(
                f"layer {layer.name} ({cls}) has no Keras 3 counterpart here",
                expected="standard layers, AttentionCore or PositionEmbedding",
                fix="keep this model as a tf-keras file",
            )
        return new(*args, **kwargs)

    def translate(self, layer: Any, *, inner: bool = False) -> Any:
        k3 = self.k3
        cls = type(layer).__name__
        cfg = layer.get_config()
        if cls in ("AttentionCore", "PositionEmbedding"):
            kw = {k: cfg[k] for k in ("num_heads", "causal", "dropout") if k in cfg}
            new = keras3_custom_objects()[cls](name=layer.name, **kw)
        elif cls == "Bidirectional":
            halves = [
                self.translate(half, inner=True)
                for half in (layer.forward_layer, layer.backward_layer)
            ]
            if None in halves:
                return None
            new = k3.layers.Bidirectional(
                halves[0],
                backward_layer=halves[1],
                merge_mode=cfg.get("merge_mode"),
                name=layer.name,
            )
        elif cls in SAME and hasattr(k3.layers, cls):
            kw = translated_config(cls, cfg, reverse=True)
            for key in ("activation", "recurrent_activation"):
                if key in kw and kw[key] not in SAME_ACTIVATIONS.values():
                    return None
            new = getattr(k3.layers, cls)(name=layer.name, **kw)
        else:
            return None
        new.trainable = layer.trainable
        if not inner:  # a Bidirectional sets the weights of both halves
            self.setters.append(lambda: new.set_weights(layer.get_weights()))
        return new

    def find_groups(self, graph: Any) -> None:
        """``<n>_query/_key/_value`` Dense -> ``<n>_attention`` -> ``<n>_out`` Dense chains."""
        from edgesmith.zoo.tfkeras import tf

        nest = tf().nest
        # Only this graph's nodes count: tfmot's strip/clone leaves layers with nodes in
        # other graphs too.
        nodes: dict[int, list[Any]] = {}
        uses: dict[int, int] = {id(t): 1 for t in graph.outputs}
        for depth in graph._nodes_by_depth.values():
            for node in depth:
                nodes.setdefault(id(node.layer), []).append(node)
                for t in nest.flatten((node.call_args, node.call_kwargs)):
                    uses[id(t)] = uses.get(id(t), 0) + 1
        names = {layer.name: layer for layer in graph.layers}
        for core in graph.layers:
            if type(core).__name__ != "AttentionCore" or not core.name.endswith("_attention"):
                continue
            base = core.name[: -len("_attention")]
            parts = {r: names.get(f"{base}_{r}") for r in ("query", "key", "value", "out")}
            if self.like is not None:
                match = [lay for lay in self.like.layers if lay.name == base]
                if not match or type(match[0]).__name__ != "MultiHeadAttention":
                    continue
            group = self.group(core, parts, nodes, uses)
            if group is not None:
                self.groups[id(parts["out"])] = {"base": base, **group}
                self.skip.update(id(parts[r]) for r in ("query", "key", "value"))
                self.skip.add(id(core))

    def group(
        self, core: Any, parts: dict[str, Any], nodes: dict[int, list], uses: dict[int, int]
    ) -> dict[str, Any] | None:
        dense = list(parts.values())
        if any(type(p).__name__ != "Dense" for p in dense):
            return None
        if any(p.get_config()["activation"] != "linear" for p in dense):
            return None
        if len({p.use_bias for p in dense}) != 1:
            return None
        if any(len(nodes.get(id(p), [])) != 1 for p in [*dense, core]):
            return None
        node = {r: nodes[id(p)][0] for r, p in parts.items()}
        attention = nodes[id(core)][0]
        projected = [node[r].outputs for r in ("query", "key", "value")]
        if list(attention.call_args[0]) != projected or any(uses[id(t)] != 1 for t in projected):
            return None
        if node["out"].call_args[0] is not attention.outputs or uses[id(attention.outputs)] != 1:
            return None
        heads = core.num_heads
        if parts["query"].units != parts["key"].units:
            return None
        if parts["query"].units % heads or parts["value"].units % heads:
            return None
        sources = {r: node[r].call_args[0] for r in ("query", "key", "value")}
        return {"core": core, **parts, "sources": sources}

    def attention_group(self, group: dict[str, Any]) -> Any:
        core, heads = group["core"], group["core"].num_heads
        q, k, v, out = (group[r] for r in ("query", "key", "value", "out"))
        source = group["sources"]
        query, key, value = (self.tensors[id(source[r])] for r in ("query", "key", "value"))
        key_dim, value_dim = q.units // heads, v.units // heads
        mha = self.k3.layers.MultiHeadAttention(
            num_heads=heads,
            key_dim=key_dim,
            value_dim=value_dim,
            dropout=core.dropout,
            use_bias=q.use_bias,
            output_shape=None if out.units == query.shape[-1] else out.units,
            name=group["base"],
        )
        same_kv = source["key"] is source["value"]
        result = mha(query, value, key=None if same_kv else key, use_causal_mask=core.causal)

        def setter() -> None:
            for dense, sub, dim in ((q, mha._query_dense, key_dim), (k, mha._key_dense, key_dim)):
                sub.set_weights(_split_heads(dense.get_weights(), heads, dim))
            mha._value_dense.set_weights(_split_heads(v.get_weights(), heads, value_dim))
            kernel, *bias = out.get_weights()
            mha._output_dense.set_weights([kernel.reshape(heads, value_dim, -1), *bias])

        self.setters.append(setter)
        return result


def _split_heads(arrays: list[Any], heads: int, dim: int) -> list[Any]:
    kernel, *bias = arrays
    return [kernel.reshape(kernel.shape[0], heads, dim), *(b.reshape(heads, dim) for b in bias)]


def _tf_layer(tensor: Any) -> Any:  # the layer that made a tf-keras tensor
    return tensor._keras_history.layer


def _flatten_args(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _flatten_args(item)]
    return [value]


def _graph_network(model: Any) -> None:
    from edgesmith.core.errors import ModelFileError

    if not getattr(model, "_is_graph_network", False):
        raise ModelFileError(
            f"{model.name} ({type(model).__name__}) is a subclassed tf-keras model",
            expected="a Functional or Sequential tf-keras model",
            fix="rebuild it with the functional API",
        )


# --- the numerical check, both directions ---------------------------------------------


def flatten(structure: Any) -> list[Any]:
    if isinstance(structure, dict):
        return [x for k in sorted(structure) for x in flatten(structure[k])]
    if isinstance(structure, (list, tuple)):
        return [x for item in structure for x in flatten(item)]
    return [structure]


def one(items: list[Any]) -> Any:
    return items[0] if len(items) == 1 else list(items)


def as_numpy(outputs: Any) -> list[np.ndarray]:
    return [np.asarray(o) for o in flatten(outputs)]


def embedding_vocab_tf(tf_model: Any) -> int | None:
    dims = [layer.input_dim for layer in tf_model.submodules if type(layer).__name__ == "Embedding"]
    return min(dims) if dims else None


def sample_inputs(specs: list[Any], given: Any, vocab: int | None) -> Any:
    """``given`` as a list per input, else 8 seeded random samples per input."""
    if given is not None:
        arrays = list(given) if isinstance(given, (list, tuple)) else [given]
        return one([np.asarray(a) for a in arrays])
    rng = np.random.default_rng(0)
    arrays = []
    for spec in specs:
        shape = (8, *(d if d is not None else 8 for d in tuple(spec.shape)[1:]))
        dtype = str(getattr(spec.dtype, "name", spec.dtype))
        if "int" in dtype:
            arrays.append(rng.integers(0, vocab or 2, size=shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype("float32"))
    return one(arrays)


def compare_outputs(
    reference: Any, model: Any, x: Any, atol: float, rewrites: list[str], *, reverse: bool = False
) -> dict[str, Any]:
    want = as_numpy(reference(x))
    got = as_numpy(model(x, training=False))
    diff = float("inf")
    if len(want) == len(got) and all(a.shape == b.shape for a, b in zip(want, got, strict=False)):
        diff = max(
            (float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(want, got, strict=False)),
            default=0.0,
        )
    samples = len(x[0]) if isinstance(x, list) else len(x)
    return {
        "samples": samples,
        "max_abs_diff": diff,
        "atol": atol,
        "passed": bool(diff <= atol),
        "rewrites": list(rewrites),
    }
