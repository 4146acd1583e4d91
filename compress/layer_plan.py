"""Which layers a technique touches, which it leaves alone, and which it cannot handle.

Every technique walks the model with the same rules: a layer is *targeted* (wrapped by
the technique), *left* (it has no weights the technique acts on, or it is excluded by
the step's ``exclude=`` regex) or *unsupported* (it holds weights or computation the
technique does not know). Unsupported layers stop the step with one
:class:`~edgesmith.core.errors.ConfigError` that names them and says how to go on, instead of
the wrapper's traceback.

TensorFlow is not imported here: layers are recognised by class name and weight names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edgesmith.core.errors import ConfigError

# Weight names (the last part of a variable name) that hold matmul/conv/lookup kernels.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings")

# Keras layers with weights that pruning and clustering deliberately leave dense/float:
# normalisation scales and shifts, and the zoo's position table.
LEFT_DENSE = frozenset(
    {"BatchNormalization", "LayerNormalization", "Normalization", "PositionEmbedding"}
)

# Layers whose every kernel pruning and clustering act on, beyond what tfmot's registries
# list: tfmot covers no DepthwiseConv2D weight and only the pointwise kernel of a separable
# convolution, and its pruning registry has no Bidirectional.
DEPTHWISE = frozenset({"DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"})

# Prefixes tfmot gives its wrappers (prune_low_magnitude_dense, cluster_dense, quant_dense).
WRAPPER_PREFIXES = ("prune_low_magnitude_", "cluster_", "quant_")


@dataclass
class LayerPlan:
    """The outcome of walking a model for one technique."""

    technique: str
    targets: list[str] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)  # layer name -> why it is left alone
    unsupported: dict[str, str] = field(default_factory=dict)  # layer name -> class

    def raise_if_unsupported(self, *, hint: str) -> None:
        """One clear error naming every layer the technique cannot handle."""
        if not self.unsupported:
            return
        names = ", ".join(f"{n!r} ({cls})" for n, cls in self.unsupported.items())
        pattern = "|".join(f"^{re.escape(n)}$" for n in self.unsupported)
        raise ConfigError(
            f"{self.technique}: cannot handle layer(s) {names}",
            expected=hint,
            fix=f"leave them out of the step with exclude='{pattern}'",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "left": dict(self.left)}


def inner_layer(layer: Any) -> Any:
    """The layer inside tfmot's wrappers (prune, cluster, quantize), or ``layer`` itself."""
    while type(layer).__name__ in (
        "PruneLowMagnitude",
        "ClusterWeights",
        "ClusterWeightsRNN",
        "ClusterWeightsMHA",
        "QuantizeWrapper",
        "QuantizeWrapperV2",
        "QuantizeAnnotate",
    ):
        layer = layer.layer
    return layer


def layer_class(layer: Any) -> str:
    return type(inner_layer(layer)).__name__


def is_excluded(name: str, pattern: str) -> bool:
    """Whether the ``exclude=`` regex (searched, not anchored) matches layer ``name``."""
    return bool(pattern) and re.search(pattern, name) is not None


def is_input(layer: Any) -> bool:
    return type(layer).__name__ == "InputLayer"


def short_weight_name(variable: Any) -> str:
    """``lstm0/lstm_cell/kernel:0`` -> ``kernel``."""
    return variable.name.split("/")[-1].split(":")[0]


def kernels(layer: Any) -> list[tuple[str, Any]]:
    """The kernel variables of ``layer`` (wrapped or not) as ``(short name, variable)``."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    for variable in layer.weights:
        name = short_weight_name(variable)
        if name in KERNEL_NAMES and id(variable) not in seen:
            seen.add(id(variable))
            found.append((name, variable))
    return found


def model_layers(model: Any) -> Iterator[Any]:
    """The model's layers without its input layers."""
    return (layer for layer in model.layers if not is_input(layer))


def is_builtin(layer: Any) -> bool:
    """Whether ``layer`` is one of Keras' own layer classes (not a user's custom layer)."""
    module = type(inner_layer(layer)).__module__
    return module.startswith(("tf_keras.", "keras.", "tensorflow.python.keras"))


def own_kernels(layer: Any) -> list[Any]:
    """Every kernel variable of an unwrapped ``layer`` (both directions of a Bidirectional)."""
    return [variable for _, variable in kernels(layer)]
