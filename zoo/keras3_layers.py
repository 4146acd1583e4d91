"""The translation table between Keras 3 layers and tf-keras (Keras 2) layers.

Most layers have the same class name, the same meaning of a few config keys and the
same weight order in both Keras versions; :data:`SAME` lists, per class, the keys that
are carried over (everything else, such as initializers, regularizers and dtype
policies, is left at the default because weights are copied afterwards). :data:`REQUIRE`
lists settings that have no tf-keras equivalent and must hold for a rebuild.

Activations tf-keras lacks (``relu6``, ``hard_sigmoid``, ``hard_silu``/``hard_swish``,
``leaky_relu``) become standard layers after a linear layer:
``relu6(x) = ReLU(max_value=6)``, ``hard_sigmoid(x) = ReLU(max_value=1)(x/6 + 1/2)``
(a ``Rescaling`` then a ``ReLU``), ``hard_swish(x) = Multiply([x, hard_sigmoid(x)])``.

Example:
    >>> "Conv2D" in SAME and "units" in SAME["Dense"]
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_CONV = "filters kernel_size strides padding data_format dilation_rate groups activation use_bias"
_SEP = "filters kernel_size strides padding data_format dilation_rate depth_multiplier activation use_bias"
_DW = "kernel_size strides padding depth_multiplier data_format dilation_rate activation use_bias"
_TCONV = "filters kernel_size strides padding output_padding data_format dilation_rate activation use_bias"
_POOL = "pool_size strides padding data_format"
_RNN = "units activation use_bias dropout recurrent_dropout return_sequences return_state go_backwards unroll zero_output_for_mask"

# Class name (the same in both versions) -> config keys copied as they are.
SAME: dict[str, str] = {
    "Dense": "units activation use_bias",
    "Conv1D": _CONV,
    "Conv2D": _CONV,
    "Conv3D": _CONV,
    "Conv1DTranspose": _TCONV.replace("output_padding ", ""),
    "Conv2DTranspose": _TCONV,
    "DepthwiseConv1D": _DW,
    "DepthwiseConv2D": _DW,
    "SeparableConv1D": _SEP,
    "SeparableConv2D": _SEP,
    "BatchNormalization": "axis momentum epsilon center scale",
    "LayerNormalization": "axis epsilon center scale",
    "Embedding": "input_dim output_dim mask_zero",
    "LSTM": _RNN + " recurrent_activation",
    "GRU": _RNN + " recurrent_activation reset_after",
    "SimpleRNN": _RNN,
    "Dropout": "rate noise_shape seed",
    "SpatialDropout1D": "rate",
    "SpatialDropout2D": "rate",
    "SpatialDropout3D": "rate",
    "GaussianNoise": "stddev seed",
    "GaussianDropout": "rate seed",
    "AlphaDropout": "rate noise_shape seed",
    "ActivityRegularization": "l1 l2",
    "Rescaling": "scale offset",
    "Normalization": "axis invert mean variance",
    "Activation": "activation",
    "ReLU": "max_value negative_slope threshold",
    "LeakyReLU": "",  # negative_slope <-> alpha, see RENAMED
    "ELU": "alpha",
    "PReLU": "shared_axes",
    "Softmax": "axis",
    "Identity": "",
    "Masking": "mask_value",
    "Add": "",
    "Subtract": "",
    "Multiply": "",
    "Average": "",
    "Maximum": "",
    "Minimum": "",
    "Concatenate": "axis",
    "Dot": "axes normalize",
    "Reshape": "target_shape",
    "Flatten": "data_format",
    "Permute": "dims",
    "RepeatVector": "n",
    "ZeroPadding1D": "padding",
    "ZeroPadding2D": "padding data_format",
    "ZeroPadding3D": "padding data_format",
    "Cropping1D": "cropping",
    "Cropping2D": "cropping data_format",
    "Cropping3D": "cropping data_format",
    "UpSampling1D": "size",
    "UpSampling2D": "size data_format interpolation",
    "UpSampling3D": "size data_format",
    **{f"{kind}Pooling{n}D": _POOL for kind in ("Max", "Average") for n in (1, 2, 3)},
    **{
        f"Global{kind}Pooling{n}D": "data_format keepdims"
        for kind in ("Max", "Average")
        for n in (1, 2, 3)
    },
}

# Keys spelled differently: class -> {Keras 3 key: tf-keras key}.
RENAMED: dict[str, dict[str, str]] = {"LeakyReLU": {"negative_slope": "alpha"}}

_CHANNELS_LAST = (None, "channels_last")
# Keras 3 settings a rebuild needs: class -> {key: allowed values}.
REQUIRE: dict[str, dict[str, tuple[Any, ...]]] = {
    "LayerNormalization": {"rms_scaling": (False, None)},
    "BatchNormalization": {"renorm": (False, None)},
    "Dense": {"lora_rank": (None, 0)},
    "Embedding": {"lora_rank": (None, 0)},
    "LSTM": {"stateful": (False,)},
    "GRU": {"stateful": (False,)},
    "SimpleRNN": {"stateful": (False,)},
    "ZeroPadding1D": {"data_format": _CHANNELS_LAST},
    "Cropping1D": {"data_format": _CHANNELS_LAST},
    "UpSampling1D": {"data_format": _CHANNELS_LAST},
}

# Activation names tf-keras computes the same way (Keras 3 name -> tf-keras name).
SAME_ACTIVATIONS: dict[str, str] = {
    **{
        n: n
        for n in [
            "linear",
            "relu",
            "sigmoid",
            "tanh",
            "softmax",
            "elu",
            "selu",
            "softplus",
            "softsign",
            "exponential",
            "gelu",
            "mish",
            "swish",
        ]
    },
    "silu": "swish",
}
# Activations rebuilt as standard layers after the layer (see the module docstring).
SPLIT_ACTIVATIONS = ("relu6", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu")

# Keras 3 *operations* (graph nodes that are not layers) with a tf-keras equivalent.
OPERATIONS: dict[str, str] = {
    "Add": "tensor + tensor -> Add; tensor + c -> Rescaling(1, offset=c)",
    "Subtract": "tensor - tensor -> Subtract; tensor - c / c - tensor -> Rescaling",
    "Multiply": "tensor * tensor -> Multiply; tensor * c -> Rescaling(scale=c)",
    "Divide": "tensor / c -> Rescaling(scale=1/c)",
    "TrueDivide": "tensor / c -> Rescaling(scale=1/c)",
    "Negative": "-tensor -> Rescaling(scale=-1)",
    "Maximum": "maximum(tensor, tensor) -> Maximum",
    "Minimum": "minimum(tensor, tensor) -> Minimum",
    "Concatenate": "ops.concatenate -> Concatenate",
    "Mean": "mean over the spatial/time axes -> GlobalAveragePooling1D/2D/3D",
    "Max": "max over the spatial/time axes -> GlobalMaxPooling1D/2D/3D",
    "Reshape": "ops.reshape keeping the batch axis -> Reshape",
    "ExpandDims": "-> Reshape to the (static) result shape",
    "Squeeze": "-> Reshape to the (static) result shape",
    "Transpose": "a transpose keeping the batch axis -> Permute",
    **{
        op: f"ops.{fn} -> the activation as a layer"
        for op, fn in (
            ("Relu", "relu"),
            ("Relu6", "relu6"),
            ("Sigmoid", "sigmoid"),
            ("Tanh", "tanh"),
            ("Silu", "silu"),
            ("Swish", "swish"),
            ("HardSilu", "hard_silu"),
            ("HardSwish", "hard_swish"),
            ("HardSigmoid", "hard_sigmoid"),
            ("Gelu", "gelu"),
            ("Softmax", "softmax"),
            ("Elu", "elu"),
            ("Selu", "selu"),
            ("Softplus", "softplus"),
        )
    },
}
_OP_ACTIVATIONS = {
    "Relu": "relu",
    "Relu6": "relu6",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Silu": "silu",
    "Swish": "swish",
    "HardSilu": "hard_silu",
    "HardSwish": "hard_swish",
    "HardSigmoid": "hard_sigmoid",
    "Gelu": "gelu",
    "Softmax": "softmax",
    "Elu": "elu",
    "Selu": "selu",
    "Softplus": "softplus",
}

# A functional node argument: a tf-keras tensor or a Python constant.
Maker = Callable[[str, Callable[[str], Any]], Any]


def plain(value: Any) -> Any:
    """Config values as plain Python (tf-keras wraps lists; NumPy arrays do not serialise)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)) and not isinstance(value, str):
        items = [plain(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def requirement_problem(class_name: str, config: dict[str, Any]) -> str | None:
    """Why a Keras 3 layer's settings cannot be rebuilt, or None."""
    for key, allowed in REQUIRE.get(class_name, {}).items():
        if key in config and config[key] not in allowed:
            return f"{key}={config[key]!r} has no tf-keras equivalent"
    if class_name in ("LSTM", "GRU", "SimpleRNN") or class_name in SAME:
        for key in ("activation", "recurrent_activation"):
            value = config.get(key)
            if key in SAME.get(class_name, "").split() and value is not None:
                problem = activation_problem(value, splittable=class_name not in _RNN_CLASSES)
                if problem:
                    return problem
    return None


_RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN")


def activation_problem(value: Any, *, splittable: bool = True) -> str | None:
    """Why an activation setting cannot be rebuilt, or None."""
    if not isinstance(value, str):
        return f"activation {value!r} is not a built-in activation name"
    if value in SAME_ACTIVATIONS or (splittable and value in SPLIT_ACTIVATIONS):
        return None
    return f"activation {value!r} has no tf-keras equivalent here"


def translated_config(class_name: str, config: dict[str, Any], *, reverse: bool = False) -> dict:
    """The constructor kwargs of the other Keras version from a layer's config.

    ``reverse=False``: Keras 3 config -> tf-keras kwargs; ``True``: the other way.
    ``activation`` is returned as in the config; the caller maps it.
    """
    kwargs: dict[str, Any] = {}
    for key in SAME[class_name].split():
        if key in config:
            kwargs[key] = plain(config[key])
    for k3_key, tf_key in RENAMED.get(class_name, {}).items():
        source, dest = (tf_key, k3_key) if reverse else (k3_key, tf_key)
        if source in config:
            kwargs[dest] = plain(config[source])
    axis = kwargs.get("axis")
    if reverse and class_name == "BatchNormalization" and isinstance(axis, list) and len(axis) == 1:
        kwargs["axis"] = axis[0]  # tf-keras stores a list; Keras 3 takes one int
    return kwargs


def apply_activation(
    k: Any, name: str, x: Any, base: str, make: Maker, *, final_name: str | None = None
) -> Any:
    """Apply activation ``name`` (Keras 3 spelling) to ``x`` with standard layers of ``k``.

    ``make(suffix_or_name, factory)`` creates (or reuses) a layer; ``final_name`` names the
    last layer (an ``Activation`` layer keeps its own name).
    """
    last = final_name or f"{base}_{name}"
    if name in ("linear", None):
        return x
    if name in SAME_ACTIVATIONS:
        act = SAME_ACTIVATIONS[name]
        return make(last, lambda n: k.layers.Activation(act, name=n))(x)
    if name == "relu6":
        return make(last, lambda n: k.layers.ReLU(max_value=6.0, name=n))(x)
    if name == "leaky_relu":  # Keras 3's default negative slope
        return make(last, lambda n: k.layers.ReLU(negative_slope=0.2, name=n))(x)
    if name == "hard_sigmoid":
        return _hard_sigmoid(k, x, base, make, last)
    if name in ("hard_silu", "hard_swish"):
        gate = _hard_sigmoid(k, x, base, make, f"{base}_hard_sigmoid")
        return make(last, lambda n: k.layers.Multiply(name=n))([x, gate])
    raise ValueError(f"activation {name!r}")


def _hard_sigmoid(k: Any, x: Any, base: str, make: Maker, last: str) -> Any:
    # clip(x/6 + 1/2, 0, 1) == relu6(x + 3) / 6
    scaled = make(
        f"{base}_hard_sigmoid_scale",
        lambda n: k.layers.Rescaling(scale=1.0 / 6.0, offset=0.5, name=n),
    )(x)
    return make(last, lambda n: k.layers.ReLU(max_value=1.0, name=n))(scaled)


def operation_layers(
    k: Any,
    op_class: str,
    name: str,
    config: dict[str, Any],
    args: list[Any],
    out_shape: tuple,
    make: Maker,
) -> Any:
    """tf-keras layers for one Keras 3 operation node; ``args`` hold tensors and constants.

    Raises ``ValueError`` with the reason when the node has no equivalent.
    """
    tensors = [a for a in args if _is_tensor(a)]
    consts = [a for a in args if not _is_tensor(a)]
    if op_class in _OP_ACTIVATIONS:
        if op_class == "Softmax" and config.get("axis", -1) not in (-1, len(out_shape) - 1):
            raise ValueError(f"softmax over axis {config.get('axis')}")
        if op_class == "Gelu" and config.get("approximate", False):
            raise ValueError("gelu(approximate=True)")
        return apply_activation(
            k, _OP_ACTIVATIONS[op_class], tensors[0], name, make, final_name=name
        )
    if op_class in ("Add", "Subtract", "Multiply", "Maximum", "Minimum") and len(tensors) == 2:
        return make(name, lambda n: getattr(k.layers, op_class)(name=n))(tensors)
    if op_class in ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Negative"):
        return _affine(k, op_class, name, args, tensors, consts, make)
    if op_class == "Concatenate":
        return make(name, lambda n: k.layers.Concatenate(axis=config.get("axis", 0), name=n))(
            list(args[0])
        )
    if op_class in ("Mean", "Max"):
        axes = config.get("axis")
        axes = sorted(
            a % len(tensors[0].shape) for a in ([axes] if isinstance(axes, int) else axes or [])
        )
        spatial = list(range(1, len(tensors[0].shape) - 1))
        if axes != spatial or len(spatial) not in (1, 2, 3):
            raise ValueError(f"{op_class.lower()} over axes {config.get('axis')}")
        pool = {"Mean": "GlobalAveragePooling", "Max": "GlobalMaxPooling"}[op_class]
        cls = getattr(k.layers, f"{pool}{len(spatial)}D")
        return make(name, lambda n: cls(keepdims=bool(config.get("keepdims")), name=n))(tensors[0])
    if op_class in ("Reshape", "ExpandDims", "Squeeze"):
        target = out_shape[1:]
        if op_class == "Reshape":
            new = list(config.get("newshape") or config.get("new_shape") or ())
            if not new or new[0] not in (-1, None):
                raise ValueError("a reshape that changes the batch axis")
            target = tuple(-1 if d is None else d for d in new[1:])
        if sum(d in (None, -1) for d in target) > 1:
            raise ValueError(f"a reshape to {out_shape} (more than one unknown size)")
        target = tuple(-1 if d is None else int(d) for d in target)
        return make(name, lambda n: k.layers.Reshape(target, name=n))(tensors[0])
    if op_class == "Transpose":
        axes = config.get("axes")
        if axes is None or next(iter(axes)) != 0:
            raise ValueError("a transpose that moves the batch axis")
        dims = tuple(int(a) for a in list(axes)[1:])
        return make(name, lambda n: k.layers.Permute(dims, name=n))(tensors[0])
    raise ValueError(f"operation {op_class}")


def _affine(
    k: Any, op: str, name: str, args: list, tensors: list, consts: list, make: Maker
) -> Any:
    """x*c, x+c, x-c, c-x, x/c, -x as one ``Rescaling(scale, offset)``."""
    if len(tensors) != 1 or len(consts) > 1:
        raise ValueError(f"{op.lower()} of {len(tensors)} tensors and {len(consts)} constants")
    c = _constant(consts[0]) if consts else None
    tensor_first = _is_tensor(args[0])
    if op == "Add":
        scale, offset = 1.0, c
    elif op == "Subtract":
        scale, offset = (1.0, _neg(c)) if tensor_first else (-1.0, c)
    elif op == "Multiply":
        scale, offset = c, 0.0
    elif op == "Negative":
        scale, offset = -1.0, 0.0
    elif tensor_first:  # Divide, TrueDivide
        scale, offset = _inverse(c), 0.0
    else:
        raise ValueError("a constant divided by a tensor")
    return make(name, lambda n: k.layers.Rescaling(scale=scale, offset=offset, name=n))(tensors[0])


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not hasattr(value, "tolist")


def _constant(value: Any) -> Any:
    import numpy as np

    array = np.asarray(value, dtype="float64")
    return float(array) if array.ndim == 0 else array.tolist()


def _neg(c: Any) -> Any:
    import numpy as np

    return float(-c) if isinstance(c, float) else (-np.asarray(c)).tolist()


def _inverse(c: Any) -> Any:
    import numpy as np

    return float(1.0 / c) if isinstance(c, float) else (1.0 / np.asarray(c)).tolist()
