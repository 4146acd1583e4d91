"""Quantization-aware training that runs end to end on CNN, LSTM and Transformer models.

tfmot's default 8-bit scheme quantizes Conv2D, Dense, pooling, residual ``Add`` and friends,
but refuses recurrent layers, ``LayerNormalization``, ``Embedding``, ``Conv1D``, several
activations and any custom layer. This module annotates those with quantize configs of its
own (the rules are :func:`annotation`'s):

=====================  ======================================================================
layer                  what is fake-quantized during training
=====================  ======================================================================
LSTM                   replaced by :class:`~edgesmith.compress.qat_lstm.QuantizedLSTM`: the
                       same weights unrolled over the fixed time steps, with the kernels,
                       every gate, the cell state and the hidden state fake-quantized as the
                       int8 TFLite kernels will round them (TFLite then gets int8 matmuls
                       and gates instead of a loop carrying a float32 state)
GRU, SimpleRNN,        replaced by a ``QuantizedRNN`` (:mod:`~edgesmith.compress.qat_rnn`),
Bidirectional          unrolled the same way, one set of weights and ranges per direction
LayerNormalization,    output (8-bit, moving-average range)
Normalization,
Rescaling
Embedding              the table (8-bit symmetric); the integer ids are *not* quantized
PositionEmbedding      the position table and the output
BatchNormalization     folded by tfmot after a Conv2D/DepthwiseConv2D; elsewhere its output
Activation, Conv,      tfmot's config when it knows the activation (relu, relu6, swish, gelu,
Dense                  sigmoid, tanh, softmax, linear); else the kernels and the output
any other layer        weightless (AttentionCore, Subtract, a custom HardSwish, ...): its
                       output; holding only kernels and biases (Conv1D, SeparableConv1D):
                       the kernels and the output; op layers (``x + 3.0``): trained in
                       float, their ranges measured on the calibration samples at conversion
=====================  ======================================================================

Before fine-tuning, every quantizer range is calibrated from the float model on training
samples (tfmot starts activation ranges at [-6, 6] and moves them by 0.1% a step, which a
short fine-tuning never corrects). ``preserve`` keeps an earlier step's work: tfmot's
pruning-preserving (PQAT) or cluster-preserving (CQAT) scheme for the Conv/Dense layers
it covers, and for the others (LSTM, Embedding) a projection after each batch that keeps
zeros zero and clustered values on their centroids.

The result is the QAT model itself (wrappers kept, learned ranges inside) so a converter
can produce a full-int8 TFLite model from it. The quantize config and the QuantizedLSTM a
saved QAT file refers to live in :mod:`edgesmith.zoo.quantized`, so loading one
(``load_keras_model(path, qat=True)``) needs nothing of this module.

Example:
    >>> from edgesmith.compress.qat import QATConfig
    >>> QATConfig(epochs=2, preserve="sparsity").to_text()
    'qat:epochs=2,preserve=sparsity'
    >>> # qat_model = run(model, data, QATConfig(epochs=2)).model
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgesmith.compress.layer_plan import (
    LayerPlan,
    is_excluded,
    is_input,
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
from edgesmith.core.errors import ConfigError, EdgesmithError
from edgesmith.zoo.datasets import DatasetSplits

PRESERVE = ("auto", "none", "sparsity", "clusters")

# When ``preserve=auto`` looks at the weights: this share of zeros means "pruned", at most
# this many distinct values in every kernel means "clustered".
_SPARSE_ENOUGH = 0.2
_CLUSTERED_MAX_VALUES = 256


@dataclass(frozen=True)
class QATConfig(StepConfig):
    """Quantization-aware fine-tuning with tfmot's default 8-bit scheme, extended.

    Attributes:
        epochs, learning_rate, batch_size: the fine-tuning budget (``epochs=0`` only
            calibrates the ranges).
        preserve: ``auto`` (measure the weights: preserve sparsity when at least 20% of
            kernel weights are zero, clusters when every kernel holds at most 256
            values), ``none``, ``sparsity`` or ``clusters`` (tfmot's CQAT trains the
            centroids, per output channel for convolutions, and keeps zeros).
        calibration_samples: training samples used to set the quantizer ranges before
            fine-tuning (0: keep tfmot's initial ranges).
        keep_best: end with the weights of the best validation epoch.
        exclude: regex; layers whose name it matches stay float.
        freeze_batch_norm: fine-tune with every BatchNormalization in inference mode
            (its moving statistics and scale fixed), so training sees the same
            activations, and the same quantizer ranges, as the converted model;
            ``false`` trains them on batch statistics as in float training.
    """

    step: ClassVar[str] = "qat"

    epochs: int = 1
    learning_rate: float = 1e-4
    batch_size: int | None = None
    preserve: str = "auto"
    calibration_samples: int = 512
    keep_best: bool = True
    exclude: str = ""
    freeze_batch_norm: bool = True

    def validate(self) -> None:
        check_finetune("qat", self.epochs, self.learning_rate, self.batch_size)
        check_choice("qat", "preserve", self.preserve, PRESERVE)
        check_range("qat", "calibration_samples", self.calibration_samples, low=0, example="512")
        check_regex("qat", "exclude", self.exclude)


def save_qat_model(model: Any, path: str | os.PathLike[str]) -> None:
    """Write a QAT model to ``path`` in Keras' HDF5 format (whatever the file's suffix).

    tfmot's quantize wrappers do not survive the Keras v3 zip format (they re-track their
    inner kernels, so the weight lists differ on reload); HDF5 round-trips them, and
    ``keras.models.load_model`` reads it under any name inside
    :func:`edgesmith.zoo.quantized.quantize_scope`.
    """
    import shutil
    import tempfile
    import warnings

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staging = Path(tmp) / "model.h5"
        with warnings.catch_warnings():  # Keras calls HDF5 "legacy"
            warnings.simplefilter("ignore")
            model.save(staging, save_format="h5")
        shutil.move(staging, path)


# Layer class -> arguments of EdgesmithQuantizeConfig.
_CONFIGS: dict[str, dict[str, Any]] = {
    # The LSTM becomes a QuantizedLSTM, which fake-quantizes its own weights and tensors.
    "LSTM": {"weights": [], "output": False},
    "LayerNormalization": {"weights": [], "output": True},
    "Embedding": {"weights": ["embeddings"], "output": False},
    "PositionEmbedding": {"weights": ["positions"], "output": True},
    "AttentionCore": {"weights": [], "output": True},
    # Their statistics/constants fold into the MUL/ADD the converter emits; output only.
    "Normalization": {"weights": [], "output": True},
    "Rescaling": {"weights": [], "output": True},
}
# GRU, SimpleRNN and Bidirectional become a QuantizedRNN (compress/qat_rnn.py).
_TWIN_CONFIG: dict[str, Any] = {"weights": [], "output": False}
# Handled by tfmot's transforms: BatchNormalization after a convolution is folded into
# it, SeparableConv2D is split into DepthwiseConv2D + Conv2D.
_BY_TRANSFORM = frozenset({"BatchNormalization", "SeparableConv2D"})
_FOLDS_BATCH_NORM = frozenset({"Conv2D", "DepthwiseConv2D"})
# Activation names tfmot's Activation config and its QuantizeAwareActivation accept.
_TFMOT_ACTIVATIONS = frozenset(
    {"relu", "relu6", "swish", "gelu", "linear", "softmax", "sigmoid", "tanh"}
)
# Layers computing TensorFlow ops recorded at model-building time (``x + 3.0`` in a
# functional model): a wrapper cannot replay their call arguments, so they are trained in
# float and the converter measures their ranges on the calibration samples.
_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda", "Lambda"})


@dataclass(frozen=True)
class Annotation:
    """How QAT treats one layer: ``how`` is ``tfmot`` (its default 8-bit config), ``own``
    (an EdgesmithQuantizeConfig of ``config``), ``lstm`` / ``rnn`` (an unrolled twin with
    ``config``) or ``float`` (left unwrapped, its range measured at conversion)."""

    how: str
    config: dict[str, Any] | None = None
    reason: str = ""


def annotation(layer: Any, registry: Any) -> Annotation | None:
    """How ``layer`` is made quantization-aware; None when no rule covers it.

    The rules, in order: recurrent layers become unrolled twins; the layers of
    :data:`_CONFIGS` get their config; tfmot's default scheme takes what it supports
    (an Activation only with a name it knows; a Conv/Dense only when its built-in
    activation is one it knows, else its kernel and output are fake-quantized here);
    op layers stay float; any other weightless layer gets an output quantizer, and a
    layer holding only kernels and biases gets its kernels and output quantized.
    """
    from edgesmith.compress.layer_plan import KERNEL_NAMES, short_weight_name
    from edgesmith.compress.qat_rnn import RNN_CLASSES

    cls = type(layer).__name__
    if cls == "LSTM" and not layer.go_backwards:
        return Annotation("lstm", _CONFIGS["LSTM"])
    if cls in RNN_CLASSES or cls == "LSTM":
        return Annotation("rnn", _TWIN_CONFIG)
    if cls in _CONFIGS:
        return Annotation("own", _CONFIGS[cls])
    if cls == "BatchNormalization":
        if _producer_classes(layer) <= _FOLDS_BATCH_NORM:
            return Annotation("tfmot", reason="folded into the convolution before it")
        return Annotation("own", {"weights": [], "output": True})
    if cls in _BY_TRANSFORM:
        return Annotation("tfmot")
    if cls in _OP_LAYERS:
        return Annotation("float", reason="op layer: float in training, range calibrated")
    weights = {short_weight_name(v) for v in layer.weights}
    kernel_names = [n for n in KERNEL_NAMES if n in weights and hasattr(layer, n)]
    if registry.supports(layer):
        activation = _activation_name(layer)
        if activation is None or activation in _TFMOT_ACTIVATIONS:
            return Annotation("tfmot")
        # tfmot refuses this activation; quantize the kernels and the output here.
        return Annotation("own", {"weights": kernel_names, "output": True})
    if not weights:
        return Annotation("own", {"weights": [], "output": True})
    if weights <= {*kernel_names, "bias"}:
        return Annotation("own", {"weights": kernel_names, "output": True})
    return None


def _activation_name(layer: Any) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", type(activation).__name__)


def _producer_classes(layer: Any) -> set[str]:
    """Classes of the layers whose outputs ``layer`` reads (empty when unknown)."""
    found: set[str] = set()
    for node in getattr(layer, "_inbound_nodes", []):
        inbound = node.inbound_layers
        for producer in inbound if isinstance(inbound, (list, tuple)) else [inbound]:
            found.add(type(producer).__name__)
    return found or {"?"}


def plan(model: Any, config: QATConfig) -> LayerPlan:
    """Which layers get fake-quantized, which stay float (excluded), which are unsupported."""
    from edgesmith.compress.qat_lstm import check_convertible as check_lstm
    from edgesmith.compress.qat_rnn import check_convertible as check_rnn

    registry = _registry()
    result = LayerPlan("qat")
    for layer in model_layers(model):
        cls = layer_class(layer)
        if cls.startswith("Quantize"):
            raise ConfigError(
                "qat: the model is already quantization-aware",
                expected="a float model",
                fix="run qat on the model before its QAT step",
            )
        if is_excluded(layer.name, config.exclude):
            result.left[layer.name] = "excluded: stays float"
            continue
        how = annotation(layer, registry)
        if how is None:
            result.unsupported[layer.name] = cls
        elif how.how == "float":
            result.left[layer.name] = how.reason
        else:
            if how.how == "lstm":
                check_lstm(layer)
            elif how.how == "rnn":
                check_rnn(layer)
            result.targets.append(layer.name)
    result.raise_if_unsupported(
        hint="layers of tfmot's default 8-bit scheme, weightless layers, layers holding only "
        "kernels and biases, recurrent layers, or "
        + ", ".join(sorted(_CONFIGS))
        + " (or exclude them to keep them float)"
    )
    return result


def run(
    model: Any,
    data: DatasetSplits,
    config: QATConfig,
    context: StepContext | None = None,
) -> StepResult:
    """The quantization-aware version of ``model``, calibrated and fine-tuned.

    The result's details hold the layer plan, the preservation scheme used, the
    validation accuracy right after calibration and notes (a refused scheme).

    Example:
        >>> from edgesmith.compress import qat  # doctest: +SKIP
        >>> qat_model = qat.run(model, data, qat.QATConfig(epochs=1)).model  # doctest: +SKIP
    """
    from edgesmith.compress.finetune import DECAY_FLOOR, keep_zeros, tensorboard_callbacks
    from edgesmith.compress.qat_calibrate import calibrate_ranges, freeze_batch_norm
    from edgesmith.compress.qat_lstm import quantized_twin
    from edgesmith.compress.qat_rnn import rnn_twin
    from edgesmith.compress.wrapping import copy_model, rewrap, tfmot_errors
    from edgesmith.core.progress import ProgressEvent, as_progress
    from edgesmith.zoo.quantized import custom_objects, quantize_config_class
    from edgesmith.zoo.tfkeras import keras, set_seed, tfmot
    from edgesmith.zoo.train import train_loop

    context = context or StepContext()
    quantization = tfmot().quantization.keras
    batch_size = config.batch_size or context.batch_size
    layers_plan = plan(model, config)
    targets = set(layers_plan.targets)
    registry = _registry()
    preserve = _preserve_mode(model, config.preserve)
    objects = custom_objects()
    notes: list[str] = []

    # Decided on the input model: the clone's layers have no producers yet.
    how = {
        layer.name: annotation(layer, registry)
        for layer in model_layers(model)
        if layer.name in targets
    }

    def annotate(layer: Any) -> Any:
        if is_input(layer) or layer.name not in targets:
            return layer
        found = how[layer.name]
        assert found is not None  # the plan refused unsupported layers
        if found.how == "lstm":
            layer = quantized_twin(layer)
        elif found.how == "rnn":
            layer = rnn_twin(layer)
        if found.config is not None:
            quantize_config = quantize_config_class()(**found.config)
            return quantization.quantize_annotate_layer(layer, quantize_config=quantize_config)
        return quantization.quantize_annotate_layer(layer)

    set_seed(context.seed)
    with tfmot_errors("qat"):
        annotated = rewrap(copy_model(model, float_inputs=True), annotate)
        with quantization.quantize_scope(objects):
            try:
                qat_model = quantization.quantize_apply(annotated, scheme=_scheme(preserve))
            except (ValueError, RuntimeError) as exc:
                if preserve == "none":
                    raise
                notes.append(
                    f"tfmot's {preserve}-preserving scheme refused the model "
                    f"({str(exc).splitlines()[0][:160]}); used the default 8-bit scheme, "
                    "preservation by projection only"
                )
                as_progress(context.progress)(ProgressEvent("qat", notes[-1], level="warning"))
                qat_model = quantization.quantize_apply(annotated)
        _keep_token_ids_exact(qat_model)
        if config.calibration_samples:
            calibrate_ranges(
                qat_model, model, data.x_train[: config.calibration_samples], batch_size
            )
        calibrated = _accuracy(qat_model, data)
        callbacks = tensorboard_callbacks(context.logdir, "train")
        if preserve != "none":
            # tfmot's scheme preserves the layers it covers; project the others (all of
            # them when the scheme was refused).
            callbacks.append(
                _projection_callback(keras(), qat_model, preserve, only_own_configs=not notes)
            )
            callbacks.extend(keep_zeros(qat_model, skip=targets))  # excluded, float layers
        frozen = freeze_batch_norm(qat_model) if config.freeze_batch_norm else []
        try:
            history = train_loop(
                qat_model,
                data,
                epochs=config.epochs,
                learning_rate=config.learning_rate,
                batch_size=batch_size,
                decay_floor=DECAY_FLOOR,
                task="quantization-aware training",
                seed=context.seed,
                progress=context.progress,
                callbacks=callbacks,
                keep_best_from=0 if config.keep_best else None,
            )
        finally:
            for layer in frozen:
                layer.trainable = True
        if preserve == "clusters" and not notes:  # tfmot's cluster-preserving scheme ran
            qat_model = default_scheme_twin(qat_model, annotated, objects, data.x_test[:16])
    details = {
        "plan": layers_plan.to_dict(),
        "preserve": preserve,
        "calibrated_accuracy": calibrated,
        "notes": notes,
    }
    return StepResult(qat_model, history, details)


def default_scheme_twin(trained: Any, annotated: Any, objects: dict[str, Any], x: Any) -> Any:
    """``trained`` (cluster-preserving QAT) as tfmot's default scheme, which a file can hold.

    The cluster-preserving quantizer keeps each layer's centroids, indices and original
    weights as extra variables of its wrapper, but a saved file names only the default
    quantize config: loading it builds default wrappers and finds three weights too many.
    Training leaves the clustered kernel in the kernel variable, so the default-scheme
    twin holding the same kernels and learned ranges computes the same; ``x`` checks it.
    """
    import numpy as np

    from edgesmith.zoo.tfkeras import tfmot

    quantization = tfmot().quantization.keras
    with quantization.quantize_scope(objects):
        twin = quantization.quantize_apply(annotated)
    _keep_token_ids_exact(twin)

    def key(layer: Any, weight: Any) -> str:  # "kernel:0", "min:0": without the layer's name
        name = weight.name.rsplit("/", 1)[-1]
        return name[len(layer.name) + 1 :] if name.startswith(layer.name + "_") else name

    for mine, theirs in zip(twin.layers, trained.layers, strict=True):
        wanted = [key(mine, w) for w in mine.weights]
        shared = [w for w in theirs.weights if key(theirs, w) in set(wanted)]
        names = [key(theirs, w) for w in shared]
        if names != wanted:
            raise EdgesmithError(
                f"layer {mine.name}: the cluster-preserving QAT model holds {names}, the "
                f"default scheme {wanted}",
                expected="the same weights besides the clustering ones",
                fix="run qat:preserve=none after clustering",
            )
        mine.set_weights([w.numpy() for w in shared])
    got, want = twin.predict(x, verbose=0), trained.predict(x, verbose=0)
    if not np.allclose(got, want, atol=1e-4):
        raise EdgesmithError(
            "the cluster-preserving QAT model and its default-scheme twin disagree "
            f"(largest difference {float(np.max(np.abs(got - want))):.3g})",
            expected="the same outputs",
            fix="run qat:preserve=none after clustering",
        )
    return twin


def _registry() -> Any:
    from edgesmith.zoo.tfkeras import tfmot

    tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_module,
    )

    return registry_module.Default8BitQuantizeRegistry()


def _preserve_mode(model: Any, preserve: str) -> str:
    """``auto`` becomes what the weights show: clusters, sparsity, or none."""
    if preserve != "auto":
        return preserve
    from edgesmith.compress.measure import weight_summary

    summary = weight_summary(model)
    big = [i for i in summary["layers"].values() if i["kernel_params"] > _CLUSTERED_MAX_VALUES]
    if big and all(info["unique_weights"] <= _CLUSTERED_MAX_VALUES for info in big):
        return "clusters"
    if summary["sparsity"] >= _SPARSE_ENOUGH:
        return "sparsity"
    return "none"


def _scheme(preserve: str) -> Any:
    from edgesmith.zoo.tfkeras import tfmot

    quantization = tfmot().quantization.keras
    if preserve == "sparsity":
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
            default_8bit_prune_preserve_quantize_scheme as pqat,
        )

        return pqat.Default8BitPrunePreserveQuantizeScheme()
    if preserve == "clusters":
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
            default_8bit_cluster_preserve_quantize_scheme as cqat,
        )

        return cqat.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)
    return quantization.default_8bit.Default8BitQuantizeScheme()


def _keep_token_ids_exact(qat_model: Any) -> None:
    """Token ids feeding an Embedding must not be fake-quantized (ids above 127 would clip).

    tfmot inserts a QuantizeLayer after every model input; the one in front of an
    Embedding is turned into a pass-through (its range variables are dropped so the
    saved model loads back with the same weights).
    """
    for layer in qat_model.layers:
        if type(layer).__name__ != "QuantizeLayer" or layer.quantizer is None:
            continue
        consumers = [node.outbound_layer for node in layer._outbound_nodes]
        if any(layer_class(c) == "Embedding" for c in consumers):
            drop = {id(v) for v in getattr(layer, "quantizer_vars", {}).values()}
            layer.quantizer = None
            layer.quantizer_vars = {}
            layer._non_trainable_weights = [
                w for w in layer._non_trainable_weights if id(w) not in drop
            ]


def _projection_callback(k: Any, qat_model: Any, preserve: str, *, only_own_configs: bool) -> Any:
    """After each batch, put back the zeros (and cluster values) the kernels started with."""
    tracked = []
    for layer in model_layers(qat_model):
        config = getattr(layer, "quantize_config", None)
        if only_own_configs and type(config).__name__ != "EdgesmithQuantizeConfig":
            continue
        for _name, variable in kernels(layer):
            values = np.asarray(variable.numpy())
            zero_mask = (values != 0).astype(values.dtype)
            centroids = np.unique(values) if preserve == "clusters" else None
            tracked.append((variable, zero_mask, centroids))

    class Projection(k.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            for variable, mask, centroids in tracked:
                values = np.asarray(variable.numpy()) * mask
                if centroids is not None:
                    values = _snap(values, centroids)
                variable.assign(values)

    return Projection()


def _snap(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each value replaced by its nearest centroid (``centroids`` sorted ascending)."""
    flat = values.reshape(-1)
    index = np.clip(np.searchsorted(centroids, flat), 1, len(centroids) - 1)
    left, right = centroids[index - 1], centroids[index]
    nearest = np.where(np.abs(flat - left) <= np.abs(right - flat), left, right)
    return nearest.reshape(values.shape).astype(values.dtype)


def _accuracy(model: Any, data: DatasetSplits) -> float:
    from edgesmith.zoo.train import evaluate_model

    return float(evaluate_model(model, data, "val")["accuracy"])
