"""Rebuild a Keras 3 model as an equal tf-keras (Keras 2) model, and back.

tfmot prunes, clusters and quantizes only tf-keras models. :func:`to_tf_keras` walks a
Keras 3 Functional or Sequential graph (nested models are flattened into it, operation
nodes such as ``x * (1/6)`` become standard layers), builds the tf-keras layers from
translated settings (:mod:`edgesmith.zoo.keras3_layers`), copies the weights and checks
the outputs. ``MultiHeadAttention`` becomes the zoo's Dense query/key/value +
``AttentionCore`` + Dense output form, named ``<mha>_query/_key/_value/_attention/_out``.
:func:`to_keras3` writes a (compressed) tf-keras model back as a Keras 3 model.

Example:
    >>> import keras
    >>> from edgesmith.zoo.keras3 import to_keras3, to_tf_keras
    >>> inputs = keras.Input((4,))
    >>> model3 = keras.Model(inputs, keras.layers.Dense(2, activation="relu6")(inputs))
    >>> model2, check = to_tf_keras(model3)
    >>> check["passed"], [layer.__class__.__name__ for layer in model2.layers][1:]
    (True, ['Dense', 'ReLU'])
    >>> to_keras3(model2).output_shape
    (None, 2)
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from edgesmith.core.errors import ModelFileError
from edgesmith.zoo import keras3_layers as table
from edgesmith.zoo.keras3_back import (
    Backward,
    as_numpy,
    compare_outputs,
    embedding_vocab_tf,
    flatten,
    one,
    sample_inputs,
)
from edgesmith.zoo.keras3_wrap import can_wrap
from edgesmith.zoo.tfkeras import keras

_RNN = ("LSTM", "GRU", "SimpleRNN")
_MHA = "MultiHeadAttention"


def rebuild_supported() -> dict[str, str]:
    """Keras 3 class name (``ops.X`` for operation nodes) -> how it is rebuilt in tf-keras."""
    out = {name: f"tf-keras {name}, same weights" for name in table.SAME}
    for name in ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Activation"):
        out[name] += "; relu6/hard_sigmoid/hard_swish/leaky_relu activations as layers after it"
    out["LeakyReLU"] = "tf-keras LeakyReLU (negative_slope -> alpha)"
    out[_MHA] = "Dense query/key/value + AttentionCore + Dense output (kernels reshaped)"
    out["Bidirectional"] = "tf-keras Bidirectional over the rebuilt LSTM/GRU/SimpleRNN"
    out["InputLayer"] = "tf-keras Input"
    out["Functional"] = "nested model: its layers are flattened into the outer graph"
    out["Sequential"] = "nested model: its layers are flattened into the outer graph"
    out["AttentionCore"] = "edgesmith AttentionCore (Keras 3 twin written by to_keras3)"
    out["PositionEmbedding"] = "edgesmith PositionEmbedding (Keras 3 twin written by to_keras3)"
    out.update({f"ops.{name}": how for name, how in table.OPERATIONS.items()})
    return out


def unsupported_layers(model3: Any) -> list[tuple[str, str]]:
    """(layer name, class name) of each layer or operation of ``model3`` with no rebuild."""
    found: list[tuple[str, str]] = []
    for op in _operations(model3):
        if rebuild_problem(op) is not None:
            found.append((op.name, type(op).__name__))
    return found


def to_tf_keras(
    model3: Any,
    *,
    check_x: np.ndarray | None = None,
    atol: float = 1e-5,
    wrap_unknown: bool = False,
) -> tuple[Any, dict]:
    """Rebuild Keras 3 ``model3`` as a tf-keras Model with the same weights, checked.

    Returns ``(tf_keras_model, check)``; ``check`` has ``samples``, ``max_abs_diff``,
    ``atol``, ``passed`` and ``rewrites`` (one line per layer whose structure changed).
    ``check_x``: samples to compare outputs on (default: 8 random samples; integer inputs
    get ids below the smallest ``Embedding`` vocabulary). Raises ``ModelFileError`` for a
    layer with no rebuild, or when the outputs differ by more than ``atol``.
    ``wrap_unknown`` (the user opted in to running the model's own code): a layer with no
    rebuild becomes a tf-keras layer calling the Keras 3 layer
    (:mod:`edgesmith.zoo.keras3_wrap`) instead of an error.

    Example:
        >>> import keras
        >>> inputs = keras.Input((3,))
        >>> model2, check = to_tf_keras(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
        >>> check["max_abs_diff"] <= check["atol"]
        True
    """
    k3 = _keras3()
    graph = _graph(model3)
    refused = [
        op
        for op in _operations(model3)
        if rebuild_problem(op) and not (wrap_unknown and can_wrap(op, k3))
    ]
    bad = [(op.name, type(op).__name__) for op in refused]
    if bad:
        problems = [rebuild_problem(op) for op in refused]
        listed = ", ".join(f"{name} ({cls})" for name, cls in bad)
        raise ModelFileError(
            f"{model3.name}: no tf-keras rebuild for layer {listed}: {problems[0]}",
            expected=f"layers of these classes: {', '.join(sorted(rebuild_supported()))}",
            fix="replace the layer with supported ones, or compress the model with Keras 3 tools",
        )
    k2 = keras()
    forward = _Forward(k2, k3, wrap_unknown=wrap_unknown)
    inputs = []
    for i, kt in enumerate(graph.inputs):
        name = forward.unique(_input_name(kt, i))
        inputs.append(k2.Input(shape=tuple(kt.shape[1:]), dtype=kt.dtype, name=name))
    outputs = forward.walk(graph, inputs, top=True)
    model2 = k2.Model(one(inputs), one(outputs), name=model3.name)
    forward.set_weights()
    x = sample_inputs(graph.inputs, check_x, _embedding_vocab(model3))
    check = compare_outputs(lambda v: model3(v, training=False), model2, x, atol, forward.rewrites)
    if not check["passed"]:
        where = forward.first_difference(k3, graph, model2, x, atol) or f"model {model3.name}"
        raise ModelFileError(
            f"{model3.name}: the tf-keras rebuild differs by {check['max_abs_diff']:.3g} "
            f"(first at {where})",
            expected=f"outputs equal within atol={atol}",
            fix="report this model; its layers' settings may need a new translation",
        )
    return model2, check


def to_keras3(tf_model: Any, *, like: Any = None) -> Any:
    """A Keras 3 model equal to tf-keras ``tf_model`` (strip tfmot wrappers first).

    ``Dense <n>_query/_key/_value + AttentionCore <n>_attention + Dense <n>_out`` groups
    go back to ``keras.layers.MultiHeadAttention`` named ``<n>`` (when ``like`` is given,
    only where ``like`` has a MultiHeadAttention of that name); other ``AttentionCore``
    and ``PositionEmbedding`` layers become their Keras 3 twins
    (:func:`~edgesmith.zoo.keras3_back.keras3_custom_objects`). Checked numerically
    (atol 1e-5, raises ``ModelFileError`` otherwise).

    Example:
        >>> from edgesmith.zoo.builders import build_model
        >>> to_keras3(build_model("cnn", input_shape=(8, 8, 1), num_classes=3)).output_shape
        (None, 3)
    """
    k3 = _keras3()
    back = Backward(keras(), k3, like)
    model3 = back.build(tf_model)
    vocab = embedding_vocab_tf(tf_model)
    x = sample_inputs(tf_model.inputs, None, vocab)
    check = compare_outputs(
        lambda v: tf_model(v, training=False), model3, x, 1e-5, [], reverse=True
    )
    if not check["passed"]:
        raise ModelFileError(
            f"{tf_model.name}: the Keras 3 model differs by {check['max_abs_diff']:.3g}",
            expected="outputs equal within atol=1e-5",
            fix="report this model",
        )
    return model3


# --- the forward walk -----------------------------------------------------------------


class _Forward:
    """Builds tf-keras layers for the nodes of a Keras 3 graph."""

    def __init__(self, k2: Any, k3: Any, *, wrap_unknown: bool = False) -> None:
        self.k2, self.k3 = k2, k3
        self.wrap_unknown = wrap_unknown
        self.used: set[str] = set()
        self.cache: dict[tuple[int, str], Any] = {}
        self.pending: list[tuple[Any, list[np.ndarray], str]] = []
        self.rewrites: list[str] = []
        self.trace: list[tuple[str, list[Any], list[Any]]] = []

    def unique(self, name: str) -> str:
        candidate, n = name, 0
        while candidate in self.used:
            n += 1
            candidate = f"{name}_{n}"
        self.used.add(candidate)
        return candidate

    def maker(self, owner: Any) -> Any:
        """``make(name, factory)``: one tf-keras layer per (Keras 3 layer, role), reused."""

        def make(name: str, factory: Any) -> Any:
            key = (id(owner), name)
            if key not in self.cache:
                self.cache[key] = factory(self.unique(name))
            return self.cache[key]

        return make

    def weights(self, layer: Any, arrays: list[np.ndarray], source: str) -> None:
        if all(layer is not pending for pending, _, _ in self.pending):
            self.pending.append((layer, [np.asarray(a) for a in arrays], source))

    def set_weights(self) -> None:
        for layer, arrays, source in self.pending:
            expected = [tuple(w.shape) for w in layer.weights]
            if expected != [a.shape for a in arrays]:
                raise ModelFileError(
                    f"{source}: weight shapes {[a.shape for a in arrays]} do not fit the "
                    f"rebuilt {type(layer).__name__} {layer.name} ({expected})",
                    expected="a layer whose settings the rebuild understands",
                    fix="report this layer",
                )
            layer.set_weights(arrays)

    def walk(self, graph: Any, inputs: list[Any], *, top: bool = False) -> list[Any]:
        k3 = self.k3
        tensors = {id(kt): t for kt, t in zip(graph.inputs, inputs, strict=True)}

        def sub(value: Any) -> Any:
            if isinstance(value, k3.KerasTensor):
                return tensors[id(value)]
            return value

        used = _used_tensors(graph)
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                op = node.operation
                if isinstance(op, k3.layers.InputLayer) or not _feeds(node, used):
                    continue
                args = k3.tree.map_structure(sub, tuple(node.arguments.args))
                kwargs = k3.tree.map_structure(sub, _without_masks(node.arguments.kwargs))
                outs = flatten(self.emit(op, list(args), kwargs, node))
                kts = list(node.output_tensors)
                for kt, t in zip(kts, outs, strict=False):
                    tensors[id(kt)] = t
                if top:
                    self.trace.append((op.name, kts, outs))
        return [tensors[id(kt)] for kt in graph.outputs]

    def emit(self, op: Any, args: list, kwargs: dict, node: Any) -> Any:
        k2, k3 = self.k2, self.k3
        cls = type(op).__name__
        if _is_model(op, k3):
            flat = [
                t for t in flatten((args, {k: v for k, v in kwargs.items() if k != "training"}))
            ]
            self.rewrites.append(f"{op.name}: nested {cls} flattened into the model")
            return one(self.walk(_graph(op), [t for t in flat if _is_tf_tensor(t)]))
        make = self.maker(op)
        if self.wrap_unknown and can_wrap(op, k3) and rebuild_problem(op) is not None:
            return self.wrapped(op, args, kwargs, make)
        if not isinstance(op, k3.layers.Layer):
            out = table.operation_layers(
                k2,
                cls,
                op.name,
                _op_config(op),
                args,
                tuple(node.output_tensors[0].shape),
                make,
            )
            self.rewrites.append(f"{op.name}: operation {cls} -> {_produced(out)}")
            return out
        if cls == _MHA:
            return self.multi_head_attention(op, args, kwargs, make)
        if cls == "Bidirectional":
            return self.bidirectional(op, args, kwargs, make)
        if cls in ("AttentionCore", "PositionEmbedding"):
            return self.zoo_layer(op, args, kwargs, make)
        return self.simple(op, args, kwargs, make)

    def simple(self, op: Any, args: list, kwargs: dict, make: Any) -> Any:
        k2 = self.k2
        cls = type(op).__name__
        cfg = op.get_config()
        kw = table.translated_config(cls, cfg)
        if cls == "Activation":
            self.rewrites.append(f"{op.name}: Activation {cfg['activation']} -> standard layers")
            return table.apply_activation(
                k2, cfg["activation"], args[0], op.name, make, final_name=op.name
            )
        after = None
        if cls not in _RNN and kw.get("activation") not in (None, *table.SAME_ACTIVATIONS):
            after = kw.pop("activation")
        elif "activation" in kw:
            kw["activation"] = table.SAME_ACTIVATIONS[kw["activation"]]
        for key in ("recurrent_activation",):
            if key in kw:
                kw[key] = table.SAME_ACTIVATIONS[kw[key]]
        tf_class = getattr(k2.layers, cls)
        layer = make(op.name, lambda n: tf_class(name=n, trainable=op.trainable, **kw))
        self.weights(layer, op.get_weights(), op.name)
        out = layer(*args, **_call_kwargs(kwargs))
        if after:
            self.rewrites.append(f"{op.name}: activation {after} -> {cls} + standard layers")
            out = table.apply_activation(k2, after, out, op.name, make)
        return out

    def wrapped(self, op: Any, args: list, kwargs: dict, make: Any) -> Any:
        from edgesmith.zoo.keras3_wrap import wrap_keras3_layer

        extra = [k for k in kwargs if k != "training" and kwargs[k] is not None]
        if len(args) != 1 or extra:
            raise ModelFileError(
                f"layer {op.name} ({type(op).__name__}): called with {len(args)} positional "
                f"arguments and keyword arguments {extra}",
                expected="a wrapped layer called on one input (a tensor or a list)",
            )
        layer = make(op.name, lambda n: wrap_keras3_layer(op, n))
        self.rewrites.append(
            f"{op.name}: {type(op).__name__} wrapped (its own code runs; tfmot leaves it float)"
        )
        return layer(args[0], **_call_kwargs({"training": kwargs.get("training")}))

    def zoo_layer(self, op: Any, args: list, kwargs: dict, make: Any) -> Any:
        from edgesmith.zoo.custom_layers import custom_objects

        cls = type(op).__name__
        cfg = op.get_config()
        kw = {k: cfg[k] for k in ("num_heads", "causal", "dropout") if k in cfg}
        layer = make(op.name, lambda n: custom_objects()[cls](name=n, **kw))
        self.weights(layer, op.get_weights(), op.name)
        return layer(*args, **_call_kwargs(kwargs))

    def bidirectional(self, op: Any, args: list, kwargs: dict, make: Any) -> Any:
        k2 = self.k2
        halves = []
        for inner, prefix in ((op.forward_layer, "forward_"), (op.backward_layer, "backward_")):
            cls = type(inner).__name__
            kw = table.translated_config(cls, inner.get_config())
            for key in ("activation", "recurrent_activation"):
                if key in kw:
                    kw[key] = table.SAME_ACTIVATIONS[kw[key]]
            name = inner.name[len(prefix) :] if inner.name.startswith(prefix) else inner.name
            halves.append(getattr(k2.layers, cls)(name=name, **kw))
        merge = op.get_config().get("merge_mode", "concat")
        layer = make(
            op.name,
            lambda n: k2.layers.Bidirectional(
                halves[0], backward_layer=halves[1], merge_mode=merge, name=n
            ),
        )
        self.weights(layer, op.get_weights(), op.name)
        return layer(*args, **_call_kwargs(kwargs))

    def multi_head_attention(self, op: Any, args: list, kwargs: dict, make: Any) -> Any:
        from edgesmith.zoo.custom_layers import custom_objects

        k2 = self.k2
        bound = inspect.signature(op.call).bind(*args, **kwargs).arguments
        problem = _mha_call_problem(op, bound)
        if problem:
            raise ModelFileError(
                f"layer {op.name} ({_MHA}): {problem}",
                expected="self- or cross-attention over (batch, length, features) inputs, "
                "optionally use_causal_mask=True, default attention_axes",
                fix="drop the unsupported argument, or keep this model in Keras 3",
            )
        query, value = bound["query"], bound["value"]
        key = bound.get("key")
        key = value if key is None else key
        cfg = op.get_config()
        heads, key_dim = int(cfg["num_heads"]), int(cfg["key_dim"])
        value_dim = int(cfg.get("value_dim") or key_dim)
        use_bias = bool(cfg.get("use_bias", True))
        causal = bool(bound.get("use_causal_mask", False))
        projected = []
        for role, source, sub, width in (
            ("query", query, op._query_dense, heads * key_dim),
            ("key", key, op._key_dense, heads * key_dim),
            ("value", value, op._value_dense, heads * value_dim),
        ):
            dense = make(
                f"{op.name}_{role}",
                lambda n, w=width: k2.layers.Dense(w, use_bias=use_bias, name=n),
            )
            arrays = sub.get_weights()
            arrays = [arrays[0].reshape(arrays[0].shape[0], width)] + [
                b.reshape(width) for b in arrays[1:]
            ]
            self.weights(dense, arrays, op.name)
            projected.append(dense(source))
        core_cls = custom_objects()["AttentionCore"]
        core = make(
            f"{op.name}_attention",
            lambda n: core_cls(heads, causal=causal, dropout=float(cfg.get("dropout", 0)), name=n),
        )
        context = core(projected)
        arrays = op._output_dense.get_weights()
        out_dim = arrays[0].shape[-1]
        dense = make(
            f"{op.name}_out", lambda n: k2.layers.Dense(out_dim, use_bias=use_bias, name=n)
        )
        self.weights(dense, [arrays[0].reshape(heads * value_dim, out_dim), *arrays[1:]], op.name)
        self.rewrites.append(
            f"{op.name}: {_MHA} -> Dense q/k/v + AttentionCore"
            + (" (causal)" if causal else "")
            + " + Dense out"
        )
        return dense(context)

    def first_difference(self, k3: Any, graph: Any, model2: Any, x: Any, atol: float) -> str:
        """The first top-level layer whose outputs differ (or '' when that cannot be told)."""
        try:
            pairs = [
                (n, a, b) for n, kts, outs in self.trace for a, b in zip(kts, outs, strict=False)
            ]
            probe3 = k3.Model(graph.inputs, [a for _, a, _ in pairs])
            probe2 = self.k2.Model(model2.inputs, [b for _, _, b in pairs])
            got3 = as_numpy(probe3(x, training=False))
            got2 = as_numpy(probe2(x, training=False))
            for (name, _, _), a, b in zip(pairs, got3, got2, strict=True):
                if a.shape != b.shape or np.max(np.abs(a - b), initial=0.0) > atol:
                    return f"layer {name}"
        except Exception:  # a probe is a diagnosis only; the caller still raises
            return ""
        return ""


# --- refusals -------------------------------------------------------------------------


def rebuild_problem(op: Any) -> str | None:
    """Why a Keras 3 layer/operation has no rebuild, or None."""
    k3 = _keras3()
    cls = type(op).__name__
    if isinstance(op, k3.layers.InputLayer) or _is_model(op, k3):
        return None
    if not isinstance(op, k3.layers.Layer):
        if type(op).__module__.startswith("keras.") and cls in table.OPERATIONS:
            return None
        return f"operation {cls} has no standard tf-keras layer"
    if cls in ("AttentionCore", "PositionEmbedding"):
        registered = k3.saving.get_registered_name(type(op))
        ok = registered == f"edgesmith>{cls}"
        return None if ok else f"{cls} is not edgesmith's layer ({registered})"
    if not type(op).__module__.startswith("keras."):
        return f"custom layer class {type(op).__module__}.{cls}"
    mode = getattr(getattr(op, "dtype_policy", None), "quantization_mode", None)
    if mode:
        return f"a {mode}-quantized layer"
    if cls == _MHA:
        cfg = op.get_config()
        axes = cfg.get("attention_axes")
        if axes not in (None, 1, [1], (1,), -2, [-2], (-2,)):
            return f"attention_axes={axes!r} (only the default, the length axis)"
        if cfg.get("use_gate"):
            return "use_gate=True"
        if cfg.get("sliding_window") is not None:
            return f"sliding_window={cfg['sliding_window']!r}"
        if isinstance(cfg.get("output_shape"), (list, tuple)) and len(cfg["output_shape"]) != 1:
            return f"output_shape={cfg['output_shape']!r}"
        return None
    if cls == "Bidirectional":
        for inner in (op.forward_layer, op.backward_layer):
            if type(inner).__name__ not in _RNN:
                return f"Bidirectional over {type(inner).__name__} (LSTM, GRU, SimpleRNN only)"
            problem = table.requirement_problem(type(inner).__name__, inner.get_config())
            if problem:
                return problem
        return None
    if cls not in table.SAME:
        return f"class {cls} has no tf-keras rebuild"
    return table.requirement_problem(cls, op.get_config())


def _mha_call_problem(op: Any, bound: dict[str, Any]) -> str | None:
    if bound.get("attention_mask") is not None:
        return "an explicit attention_mask input"
    if bound.get("return_attention_scores"):
        return "return_attention_scores=True"
    for role in ("query", "value", "key"):
        t = bound.get(role)
        if t is not None and len(t.shape) != 3:
            return f"a rank-{len(t.shape)} {role} (only (batch, length, features))"
    return None


# --- helpers --------------------------------------------------------------------------


def _keras3() -> Any:
    keras()  # TensorFlow first, with Keras 2 selected for tf.keras
    import keras as keras3

    return keras3


def _is_model(op: Any, k3: Any) -> bool:
    from keras.src.models.functional import Functional

    return isinstance(op, (Functional, k3.Sequential))


def _graph(model3: Any) -> Any:
    """The Functional graph of a Keras 3 model (a Sequential keeps one once built)."""
    k3 = _keras3()
    if isinstance(model3, k3.Sequential):
        graph = getattr(model3, "_functional", None)
        if graph is None:
            raise ModelFileError(
                f"Sequential model {model3.name} has no input shape yet",
                expected="a built model",
                fix="start it with keras.Input(shape) or call it on data once",
            )
        return graph
    if not _is_model(model3, k3):
        raise ModelFileError(
            f"{getattr(model3, 'name', model3)} ({type(model3).__name__})",
            expected="a Keras 3 Functional or Sequential model (subclassed models have no graph)",
            fix="rebuild it with the functional API",
        )
    return model3


def _operations(model3: Any) -> list[Any]:
    """Every layer and operation of ``model3``, nested models flattened (each once)."""
    k3 = _keras3()
    seen: dict[int, Any] = {}

    def visit(model: Any) -> None:
        graph = _graph(model)
        used = _used_tensors(graph)
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                op = node.operation
                if not _feeds(node, used):
                    continue
                if _is_model(op, k3):
                    visit(op)
                elif id(op) not in seen:
                    seen[id(op)] = op

    visit(model3)
    return list(seen.values())


def _without_masks(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Keras 3 passes the masks of the inputs as `<arg>_mask` call arguments, computed by
    # operation nodes (NotEqual); tf-keras layers propagate masks themselves.
    real = ("attention_mask", "use_causal_mask")
    return {
        k: v for k, v in kwargs.items() if k in real or not (k == "mask" or k.endswith("_mask"))
    }


def _used_tensors(graph: Any) -> set[int]:
    """Ids of the tensors that feed a layer (not only as a mask) or are model outputs."""
    k3 = _keras3()
    used = {id(t) for t in graph.outputs}
    for nodes in graph._nodes_by_depth.values():
        for node in nodes:
            args = (node.arguments.args, _without_masks(node.arguments.kwargs))
            used.update(id(t) for t in k3.tree.flatten(args) if isinstance(t, k3.KerasTensor))
    return used


def _feeds(node: Any, used: set[int]) -> bool:
    return any(id(t) in used for t in node.output_tensors)


def _op_config(op: Any) -> dict[str, Any]:
    cfg = dict(op.get_config())
    cfg.update({k: v for k, v in vars(op).items() if not k.startswith("_")})
    return cfg


def _call_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Only what tf-keras layers take at call time; masks travel with the tensors.
    keep = ("training", "initial_state", "constants")
    return {k: v for k, v in kwargs.items() if k in keep and v is not None}


def _produced(out: Any) -> str:
    history = getattr(out, "_keras_history", None)
    return type(history.layer).__name__ if history is not None else "standard layers"


def _input_name(kt: Any, index: int) -> str:
    history = getattr(kt, "_keras_history", None)
    op = getattr(history, "operation", None) or getattr(history, "layer", None)
    return getattr(op, "name", None) or f"input_{index}"


def _is_tf_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not hasattr(value, "tolist")


def _embedding_vocab(model3: Any) -> int | None:
    dims = [op.input_dim for op in _operations(model3) if type(op).__name__ == "Embedding"]
    return min(dims) if dims else None
