"""Weight clustering (tfmot): each kernel keeps at most ``clusters`` distinct values.

Applies to Conv1D/Conv2D, DepthwiseConv2D and SeparableConv1D/2D (tfmot clusters no
depthwise kernel: every kernel is clustered here), Dense, Embedding, and the kernels of
LSTM, GRU, SimpleRNN and Bidirectional layers. A Keras layer tfmot cannot cluster keeps
its weights, with the reason in the plan; a custom layer it cannot cluster is refused. With ``preserve_sparsity`` (the default) zeros left by an earlier pruning step
stay zero. Wrappers are stripped afterwards.

Example:
    >>> from edgesmith.compress.cluster import ClusterConfig
    >>> ClusterConfig(clusters=16, init="linear").to_text()
    'cluster:init=linear'
    >>> # clustered = run(model, data, ClusterConfig(clusters=16)).model
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from edgesmith.compress.layer_plan import (
    DEPTHWISE,
    LEFT_DENSE,
    LayerPlan,
    is_builtin,
    is_excluded,
    kernels,
    layer_class,
    model_layers,
)
from edgesmith.compress.step import (
    StepConfig,
    StepContext,
    StepResult,
    check_choice,
    check_finetune,
    check_range,
    check_regex,
)
from edgesmith.core.errors import ConfigError
from edgesmith.zoo.datasets import DatasetSplits

INITS = ("kmeans++", "linear", "density", "random")
_TFMOT_INIT = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


@dataclass(frozen=True)
class ClusterConfig(StepConfig):
    """Weight clustering with tfmot, fine-tuned and stripped.

    Attributes:
        clusters: distinct values per kernel, 3..256 (a 4-bit palette is 16).
        init: centroid initialisation: kmeans++, linear, density or random.
        preserve_sparsity: keep the zeros of an earlier pruning step (one centroid is 0).
        epochs, learning_rate, batch_size: the fine-tuning budget.
        keep_best: end with the weights of the best validation epoch.
        exclude: regex; layers whose name it matches are not clustered.
    """

    step: ClassVar[str] = "cluster"

    clusters: int = 16
    init: str = "kmeans++"
    preserve_sparsity: bool = True
    epochs: int = 1
    learning_rate: float = 2e-4
    batch_size: int | None = None
    keep_best: bool = True
    exclude: str = ""

    def validate(self) -> None:
        check_range(
            "cluster",
            "clusters",
            self.clusters,
            low=3,
            high=256,
            meaning="distinct values per kernel",
            example="16",
        )
        check_choice("cluster", "init", self.init, INITS)
        check_finetune("cluster", self.epochs, self.learning_rate, self.batch_size)
        check_regex("cluster", "exclude", self.exclude)


def plan(model: Any, config: ClusterConfig) -> LayerPlan:
    """Which layers ``config`` clusters, leaves alone, or cannot handle."""
    from edgesmith.zoo.tfkeras import tfmot

    tfmot()
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import (
        ClusteringRegistry,
    )

    result = LayerPlan("cluster")
    for layer in model_layers(model):
        if not layer.weights:
            continue
        cls = layer_class(layer)
        found = kernels(layer)
        if is_excluded(layer.name, config.exclude):
            result.left[layer.name] = "excluded"
        elif cls in LEFT_DENSE:
            result.left[layer.name] = "normalisation / position weights kept float"
        elif hasattr(layer, "get_clusterable_weights") or (
            found and ClusteringRegistry.supports(layer)
        ):
            small = [n for n, v in found if int(v.shape.num_elements()) <= config.clusters]
            if small:
                result.left[layer.name] = f"kernel has no more than {config.clusters} weights"
            else:
                result.targets.append(layer.name)
        elif is_builtin(layer):
            # A Keras layer tfmot has no clustering rule for keeps its weights as they are.
            result.left[layer.name] = f"tfmot cannot cluster {cls}: weights kept"
        else:
            result.unsupported[layer.name] = cls
    result.raise_if_unsupported(
        hint="Conv, DepthwiseConv2D, Dense, Embedding, LSTM/GRU layers, or custom layers "
        "implementing tfmot's ClusterableLayer"
    )
    return result


def run(
    model: Any,
    data: DatasetSplits,
    config: ClusterConfig,
    context: StepContext | None = None,
) -> StepResult:
    """Cluster the kernels of a copy of ``model``; wrappers are stripped.

    The result names the clustered layers (``clustered``) and holds the layer plan.

    Example:
        >>> from edgesmith.compress import cluster  # doctest: +SKIP
        >>> config = cluster.ClusterConfig(clusters=16)  # doctest: +SKIP
        >>> clustered = cluster.run(model, data, config).model  # doctest: +SKIP
    """
    from edgesmith.compress.finetune import DECAY_FLOOR, keep_zeros, tensorboard_callbacks
    from edgesmith.compress.wrapping import copy_model, rewrap, tfmot_errors
    from edgesmith.zoo.tfkeras import set_seed, tfmot
    from edgesmith.zoo.train import train_loop

    context = context or StepContext()
    clustering = tfmot().clustering.keras
    init = getattr(clustering.CentroidInitialization, _TFMOT_INIT[config.init])
    layers_plan = plan(model, config)
    if not layers_plan.targets:
        raise ConfigError(
            "cluster: no layer left to cluster",
            expected="at least one Conv/Dense/Embedding/LSTM layer not matched by exclude=",
            fix=f"loosen exclude={config.exclude!r}",
        )
    targets = set(layers_plan.targets)

    def wrap(layer: Any) -> Any:
        if layer.name not in targets:
            return layer
        wrapper = clustering.cluster_weights(
            layer,
            number_of_clusters=config.clusters,
            cluster_centroids_init=init,
            preserve_sparsity=config.preserve_sparsity,
        )
        if type(layer).__name__ in DEPTHWISE:
            # tfmot clusters no DepthwiseConv2D weight and only the pointwise kernel of a
            # separable convolution: cluster every kernel.
            inner = wrapper.layer
            inner.get_clusterable_weights = lambda: [
                (name, getattr(inner, name))
                for name in ("depthwise_kernel", "pointwise_kernel")
                if hasattr(inner, name)
            ]
        return wrapper

    set_seed(context.seed)  # kmeans++ and random initialisation draw random numbers
    with tfmot_errors("cluster"):
        wrapped = rewrap(copy_model(model), wrap)
        callbacks = [
            *keep_zeros(wrapped, skip=targets),
            *tensorboard_callbacks(context.logdir, "train"),
        ]
        history = train_loop(
            wrapped,
            data,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size or context.batch_size,
            decay_floor=DECAY_FLOOR,
            task=f"cluster to {config.clusters} values",
            seed=context.seed,
            progress=context.progress,
            callbacks=callbacks,
            keep_best_from=0 if config.keep_best else None,
        )
        stripped = clustering.strip_clustering(wrapped)
    return StepResult(
        stripped,
        history,
        {"plan": layers_plan.to_dict()},
        clustered=tuple(layers_plan.targets),
    )
