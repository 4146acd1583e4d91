"""Magnitude pruning (constant or polynomial-decay schedule) and m:n structured sparsity.

Covers Conv1D/Conv2D, DepthwiseConv2D and SeparableConv1D/2D (tfmot prunes no
depthwise kernel: here every kernel is pruned), Dense (so the zoo Transformer's query, key,
value and output projections), Embedding, and the kernels and recurrent kernels of LSTM,
GRU, SimpleRNN and Bidirectional layers (tfmot's registry has no Bidirectional: both
directions' kernels are pruned here). Weightless layers pass through. tfmot's
wrappers do the masking during fine-tuning and are stripped afterwards; the sparsity
reported is measured from the stripped weights.

Example:
    >>> from edgesmith.compress.prune import PruneConfig
    >>> PruneConfig(sparsity=0.8, schedule="poly").target_sparsity
    0.8
    >>> PruneConfig(structure="2:4").target_sparsity
    0.5
    >>> # pruned = run(model, data, PruneConfig(sparsity=0.8)).model   # wrappers stripped
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from edgesmith.compress.layer_plan import (
    DEPTHWISE,
    LEFT_DENSE,
    LayerPlan,
    is_excluded,
    kernels,
    layer_class,
    model_layers,
    own_kernels,
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

SCHEDULES = ("constant", "poly")
_M_BY_N = re.compile(r"(\d+):(\d+)")


@dataclass(frozen=True)
class PruneConfig(StepConfig):
    """Magnitude pruning of kernels to a target sparsity, or to an m:n pattern.

    Attributes:
        sparsity: share of each pruned kernel's weights set to zero, in [0, 1).
            Defaults to 0.5, or to m/n with ``structure="m:n"``.
        schedule: ``poly`` (polynomial decay from ``initial_sparsity``, reaching the
            target after ``ramp_end`` of the steps) or ``constant`` (prune to ``sparsity``
            at once, re-select masks while fine-tuning). None: ``poly`` for unstructured
            sparsity, ``constant`` for m:n and channels (which have no ramp). With every
            setting automatic at 80%, poly lost 0.33 pt on dscnn-kws and transformer-kws
            where constant lost 2.67 and 1.00.
        initial_sparsity: where the ``poly`` schedule starts.
        structure: ``unstructured``, ``m:n`` (for example ``2:4``: at least m zeros in
            every n consecutive input weights, the pattern sparse tensor cores run), or
            ``channels``: whole filters, units and attention heads are removed and the
            model is rebuilt dense and smaller (:mod:`~edgesmith.compress.prune_channels`);
            ``sparsity`` is then the share of each group's channels removed.
        target_params, target_macs: with ``channels``, instead of ``sparsity``: remove the
            smallest share of channels that brings the parameters (or multiply-accumulates)
            to at most this number.
        criterion: with ``channels``, how channels are ranked: ``taylor`` (the default:
            first-order loss change on training data) or ``l2`` (norm of the weights
            computing them).
        rounds: with ``channels``, how many prune-and-fine-tune rounds reach the target.
        distill: with ``channels``, whether each round's fine-tuning also learns from the
            unpruned model's softened outputs (None: yes, the default; ``false``: labels
            only, about half the time).
        ramp_end: share of the fine-tuning steps after which ``poly`` holds the target.
        frequency: steps between mask updates (0: about ten updates over the budget).
        epochs, learning_rate, batch_size: the fine-tuning budget. None: automatic
            (:func:`~edgesmith.compress.finetune.resolve_budget`: the input model's
            training learning rate and batch size; at most its training epochs, stopping
            once validation accuracy has recovered or stops improving).
        keep_best: end with the weights of the best validation epoch among those where
            the target sparsity is reached (else the last epoch's).
        exclude: regex; layers whose name it matches are left dense.
    """

    step: ClassVar[str] = "prune"

    sparsity: float | None = None
    schedule: str | None = None
    initial_sparsity: float = 0.0
    structure: str = "unstructured"
    ramp_end: float = 0.3
    frequency: int = 0
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    keep_best: bool = True
    exclude: str = ""
    target_params: int | None = None
    target_macs: int | None = None
    criterion: str = "taylor"
    rounds: int = 3
    distill: bool | None = None

    def validate(self) -> None:
        check_range(
            "prune",
            "sparsity",
            self.sparsity,
            low=0.0,
            high=1.0,
            high_open=True,
            meaning="the share of kernel weights set to zero",
            example="0.8",
        )
        if self.schedule is not None:
            check_choice("prune", "schedule", self.schedule, SCHEDULES)
        check_range(
            "prune", "ramp_end", self.ramp_end, low=0.0, high=1.0, low_open=True, example="0.3"
        )
        check_range("prune", "frequency", self.frequency, low=0, example="0 (automatic)")
        check_finetune("prune", self.epochs, self.learning_rate, self.batch_size, min_epochs=1)
        check_regex("prune", "exclude", self.exclude)
        self._validate_channels()
        if self.structure not in ("unstructured", "channels"):
            match = _M_BY_N.fullmatch(self.structure)
            if not match or not 0 < int(match[1]) < int(match[2]) <= 32:
                raise ConfigError(
                    f"prune: structure={self.structure!r}",
                    expected="unstructured, or m:n with 0 < m < n <= 32 (m zeros in every n weights)",
                    fix="use structure=2:4",
                )
            m, n = int(match[1]), int(match[2])
            if self.sparsity is not None and abs(self.sparsity - m / n) > 1e-9:
                raise ConfigError(
                    f"prune: sparsity={self.sparsity} with structure={self.structure}",
                    expected=f"no sparsity (the {m}:{n} pattern fixes it at {m / n:g})",
                    fix="drop sparsity=, or use structure=unstructured",
                )
            if self.schedule not in (None, "constant"):
                raise ConfigError(
                    f"prune: schedule={self.schedule} with structure={self.structure}",
                    expected="schedule=constant (an m:n pattern has no sparsity ramp)",
                    fix="drop schedule=",
                )
        check_range(
            "prune",
            "initial_sparsity",
            self.initial_sparsity,
            low=0.0,
            high=self.target_sparsity,
            high_open=self.target_sparsity > 0,
            meaning="where the poly schedule starts, below the target sparsity",
            example="0.0",
        )

    def _validate_channels(self) -> None:
        from edgesmith.compress.prune_channels import CRITERIA

        check_choice("prune", "criterion", self.criterion, CRITERIA)
        check_range("prune", "rounds", self.rounds, low=1, high=20, example="3")
        check_range("prune", "target_params", self.target_params, low=1, example="20000")
        check_range("prune", "target_macs", self.target_macs, low=1, example="1000000")
        targets = [n for n in ("target_params", "target_macs") if getattr(self, n) is not None]
        channel_only = [*targets, *(["criterion"] if self.criterion != "taylor" else [])]
        channel_only += ["rounds"] if self.rounds != 3 else []
        channel_only += ["distill"] if self.distill is not None else []
        if self.structure != "channels" and channel_only:
            raise ConfigError(
                f"prune: {channel_only[0]}= with structure={self.structure}",
                expected="structure=channels (only channel pruning has it)",
                fix="add structure=channels, or drop " + channel_only[0] + "=",
            )
        if len(targets) + (self.sparsity is not None) > 1:
            raise ConfigError(
                "prune: "
                + " and ".join([*targets, *(["sparsity"] if self.sparsity is not None else [])]),
                expected="one of sparsity=, target_params=, target_macs=",
                fix="keep one",
            )
        if self.structure == "channels" and self.schedule not in (None, "constant"):
            raise ConfigError(
                f"prune: schedule={self.schedule} with structure=channels",
                expected="no schedule (channel pruning goes in rounds=)",
                fix="use rounds=3 instead of schedule=",
            )

    @property
    def m_by_n(self) -> tuple[int, int] | None:
        """``(m, n)`` for structured sparsity, None for unstructured."""
        match = _M_BY_N.fullmatch(self.structure)
        return (int(match[1]), int(match[2])) if match else None

    @property
    def schedule_kind(self) -> str:
        """The schedule that runs: ``schedule``, or the structure's default when None."""
        if self.schedule is not None:
            return self.schedule
        return "poly" if self.structure == "unstructured" else "constant"

    @property
    def channels(self) -> bool:
        """Whether whole channels are removed (the model gets smaller)."""
        return self.structure == "channels"

    @property
    def target_sparsity(self) -> float:
        if self.m_by_n:
            return self.m_by_n[0] / self.m_by_n[1]
        return 0.5 if self.sparsity is None else self.sparsity


def plan(model: Any, config: PruneConfig) -> LayerPlan:
    """Which layers ``config`` prunes, leaves dense, or cannot handle."""
    from edgesmith.compress.measure import input_channels
    from edgesmith.zoo.tfkeras import tfmot

    tfmot()  # tfmot's registry is internal: import it once Keras 2 is selected
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry as registry,
    )

    result = LayerPlan("prune")
    for layer in model_layers(model):
        if not layer.weights:
            continue
        cls = layer_class(layer)
        found = kernels(layer)
        if is_excluded(layer.name, config.exclude):
            result.left[layer.name] = "excluded"
        elif cls in LEFT_DENSE:
            result.left[layer.name] = "normalisation / position weights kept dense"
        elif (
            hasattr(layer, "get_prunable_weights")
            or (found and registry.supports(layer))
            or (cls == "Bidirectional" and found and registry.supports(layer.forward_layer))
        ):
            shapes = [tuple(v.shape) for _, v in found]
            if config.m_by_n and any(input_channels(s) % config.m_by_n[1] for s in shapes):
                sizes = sorted({input_channels(s) for s in shapes})
                result.left[layer.name] = (
                    f"input size {sizes} is not a multiple of {config.m_by_n[1]}: left dense"
                )
            else:
                result.targets.append(layer.name)
        else:
            result.unsupported[layer.name] = cls
    result.raise_if_unsupported(
        hint="Conv, DepthwiseConv2D, Dense, Embedding, LSTM/GRU layers, or custom layers "
        "with tfmot's get_prunable_weights()"
    )
    return result


def run(
    model: Any,
    data: DatasetSplits,
    config: PruneConfig,
    context: StepContext | None = None,
) -> StepResult:
    """Prune a copy of ``model`` (the input is left unchanged); wrappers are stripped.

    The result's details hold the layer plan and the schedule actually used.

    Example:
        >>> from edgesmith.compress import prune  # doctest: +SKIP
        >>> pruned = prune.run(model, data, prune.PruneConfig(sparsity=0.8)).model  # doctest: +SKIP
    """
    if config.channels:
        from edgesmith.compress.prune_channels import run_channels

        return run_channels(model, data, config, context, teacher=config.distill)
    import numpy as np

    from edgesmith.compress.finetune import (
        DECAY_FLOOR,
        SETTLE,
        keep_zeros,
        recovery_stop,
        step_budget,
        tensorboard_callbacks,
    )
    from edgesmith.compress.wrapping import copy_model, rewrap, tfmot_errors
    from edgesmith.zoo.tfkeras import tfmot
    from edgesmith.zoo.train import evaluate_model, train_loop

    context = context or StepContext()
    logdir = context.logdir
    sparsity_api = tfmot().sparsity.keras
    batch_size = config.batch_size or context.batch_size
    layers_plan = plan(model, config)
    if not layers_plan.targets:
        raise ConfigError(
            "prune: no layer left to prune",
            expected="at least one Conv/Dense/Embedding/LSTM layer not matched by exclude=",
            fix=f"loosen exclude={config.exclude!r}",
        )
    budget = step_budget(config, data, context)
    epochs = budget.epochs
    steps_per_epoch = int(np.ceil(len(data.y_train) / batch_size))
    steps = steps_per_epoch * epochs
    frequency = config.frequency or max(1, min(100, steps // 10))
    # The first epoch that ends at the target sparsity. A constant schedule reaches it at
    # its first pruning step, which tfmot takes at step ``frequency`` (not step 0): an
    # epoch that ends before it holds the unpruned weights and must not be kept as best.
    first_full = min(epochs - 1, frequency // steps_per_epoch)
    end = 0
    if config.schedule_kind == "poly":
        end = max(frequency, int(steps * config.ramp_end) // frequency * frequency)
        end = min(end, max(0, steps - 1) // frequency * frequency) or frequency
        first_full = min(epochs - 1, (end + 1 + steps_per_epoch - 1) // steps_per_epoch - 1)
    targets = set(layers_plan.targets)

    def schedule_for(sparsity: float) -> Any:
        if config.schedule_kind == "poly":
            return sparsity_api.PolynomialDecay(
                initial_sparsity=min(config.initial_sparsity, sparsity),
                final_sparsity=sparsity,
                begin_step=0,
                end_step=end,
                frequency=frequency,
            )
        return sparsity_api.ConstantSparsity(sparsity, begin_step=0, frequency=frequency)

    def wrap(layer: Any) -> Any:
        if layer.name not in targets:
            return layer
        if type(layer).__name__ in DEPTHWISE or type(layer).__name__ == "Bidirectional":
            # tfmot prunes no DepthwiseConv2D weight, only the pointwise kernel of a
            # separable convolution, and no Bidirectional: prune every kernel they hold.
            layer.get_prunable_weights = lambda: own_kernels(layer)
        return sparsity_api.prune_low_magnitude(
            layer,
            pruning_schedule=schedule_for(config.target_sparsity),
            sparsity_m_by_n=config.m_by_n,
        )

    with tfmot_errors("prune"):
        wrapped = rewrap(copy_model(model), wrap)
        callbacks = [sparsity_api.UpdatePruningStep(), *keep_zeros(wrapped, skip=targets)]
        if logdir:
            callbacks.append(sparsity_api.PruningSummaries(log_dir=logdir))
        stop = None
        if budget.automatic:
            reference = evaluate_model(model, data, "val")["accuracy"] if len(data.y_val) else None
            # Not before the learning rate has come down (SETTLE), nor before the target.
            first = max(first_full, int(epochs * SETTLE))
            stop = recovery_stop(
                reference, first_epoch=first, cap=epochs, val_samples=len(data.y_val)
            )
            callbacks.append(stop)
        history = train_loop(
            wrapped,
            data,
            epochs=epochs,
            learning_rate=budget.learning_rate,
            batch_size=batch_size,
            decay_floor=DECAY_FLOOR,
            task=f"prune to {config.target_sparsity:.0%}",
            seed=context.seed,
            progress=context.progress,
            callbacks=callbacks + tensorboard_callbacks(logdir, "train"),
            keep_best_from=first_full if config.keep_best else None,
        )
        for layer in wrapped.layers:
            for weight, mask, _threshold in getattr(layer, "pruning_vars", []):
                weight.assign(weight * mask)  # the kept epoch's masks, applied for sure
        stripped = sparsity_api.strip_pruning(wrapped)
    return StepResult(
        stripped,
        history,
        {
            "plan": layers_plan.to_dict(),
            "schedule": {"kind": config.schedule_kind, "frequency": frequency, "steps": steps},
            "budget": {
                **budget.to_dict(),
                "epochs": epochs,
                "batch_size": batch_size,
                **(stop.outcome() if stop else {}),
            },
        },
    )
