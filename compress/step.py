"""One recipe step's contract: its config, the context it runs in, the result it returns.

Every technique module exposes one step: a frozen config class (a :class:`StepConfig`
subclass with ``step = "name"``) and ``run(model, data, config, context) -> StepResult``;
:mod:`~edgesmith.compress.techniques` lists them and the recipe runner calls them in order.

A step config is a frozen dataclass. Building one with an impossible value raises a
:class:`~edgesmith.core.errors.ConfigError` that says what was given, what is allowed and
how to fix it; ``from_dict`` rejects unknown keys (with a "did you mean") and turns the
strings of a one-line recipe into the field's type. TF-free.

Example:
    >>> from edgesmith.compress.prune import PruneConfig
    >>> config = PruneConfig.from_dict({"sparsity": "0.8", "schedule": "poly"})
    >>> config.sparsity, PruneConfig.from_dict(config.to_dict()) == config
    (0.8, True)
    >>> context = StepContext(seed=1)
    >>> context.seed, context.batch_size, context.progress is None
    (1, 32, True)
    >>> StepResult(model="m", details={"plan": {}}).clustered is None
    True
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from edgesmith.core.errors import ConfigError, UnknownNameError
from edgesmith.core.progress import Progress

if TYPE_CHECKING:
    from edgesmith.zoo.datasets import DatasetSplits

C = TypeVar("C", bound="StepConfig")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Base of the config of one recipe step (subclasses are frozen dataclasses)."""

    step: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an impossible value (subclasses extend this)."""

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field, plus ``step`` (the step's name), as JSON-able values."""
        return {"step": self.step, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Build from a mapping; strings (from a one-line recipe) become the field's type."""
        data = dict(data)
        given_step = data.pop("step", cls.step)
        if given_step != cls.step:
            raise ConfigError(
                f"step {given_step!r} given to the {cls.step!r} config",
                expected=f"step={cls.step!r}",
            )
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        values = {}
        for key, value in data.items():
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                raise UnknownNameError(
                    f"{cls.step}: unknown key {key!r}",
                    expected=f"one of {', '.join(names)}",
                    fix=f"did you mean {close[0]!r}?" if close else f"see {cls.__name__}",
                )
            values[key] = _coerce(cls.step, key, value, hints[key])
        return cls(**values)

    def to_text(self) -> str:
        """The step in the one-line recipe syntax, with only the values that differ from defaults.

        Example:
            >>> from edgesmith.compress.cluster import ClusterConfig
            >>> ClusterConfig(clusters=8).to_text()
            'cluster:clusters=8'
        """
        changed = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                changed.append(f"{f.name}={_text(value)}")
        return self.step + (":" + ",".join(changed) if changed else "")


# -- validation helpers used by the technique configs ---------------------------------------


def check_range(
    step: str,
    name: str,
    value: float | int | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    meaning: str = "",
    example: str = "",
) -> None:
    """Raise when ``value`` is outside [low, high] (open ends where asked); None passes."""
    if value is None:
        return
    bad = (
        (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high))
        or value != value  # NaN
    )
    if bad:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = (
            f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        )
        raise ConfigError(
            f"{step}: {name}={value}",
            expected=f"a value in {interval}" + (f" ({meaning})" if meaning else ""),
            fix=f"use for example {name}={example}" if example else None,
        )


def check_choice(step: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise when ``value`` is not one of ``choices``."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        raise ConfigError(
            f"{step}: {name}={value!r}",
            expected=f"one of {', '.join(choices)}",
            fix=f"did you mean {name}={close[0]}?" if close else f"use {name}={choices[0]}",
        )


def check_regex(step: str, name: str, value: str) -> None:
    """Raise when ``value`` is not a valid regular expression."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ConfigError(
            f"{step}: {name}={value!r} is not a valid regular expression ({exc})",
            expected="a Python regex searched in each layer name, for example "
            f"{name}=logits or {name}='^conv0|logits'",
        ) from None


def check_finetune(
    step: str,
    epochs: int | None,
    learning_rate: float | None,
    batch_size: int | None,
    *,
    min_epochs: int = 0,
) -> None:
    """The fine-tuning budget every step carries."""
    check_range(step, "epochs", epochs, low=min_epochs, high=10_000, example="2")
    check_range(
        step,
        "learning_rate",
        learning_rate,
        low=0.0,
        high=1.0,
        low_open=True,
        meaning="the Adam learning rate of the fine-tuning",
        example="1e-4",
    )
    check_range(step, "batch_size", batch_size, low=1, high=65_536, example="32")


# -- type coercion -------------------------------------------------------------------------


def _coerce(step: str, key: str, value: Any, hint: Any) -> Any:
    """Turn ``value`` (often a string from the command line) into the type ``hint``."""
    allowed = _types_of(hint)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in allowed:
            return None
        if isinstance(value, str) and str in allowed:
            return value
        raise ConfigError(f"{step}: {key}={value!r}", expected=f"a {_describe(allowed)}")
    for kind in (bool, int, float, str):
        if kind not in allowed:
            continue
        converted = _convert(value, kind)
        if converted is not _FAIL:
            return converted
    raise ConfigError(
        f"{step}: {key}={value!r}",
        expected=f"a {_describe(allowed)}",
        fix=f"write for example {key}={_example(allowed)}",
    )


_FAIL = object()


def _convert(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        return _FAIL
    if isinstance(value, bool):
        return _FAIL  # True is an int in Python, never a number of epochs
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        return _FAIL
    if kind is float:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return _FAIL
        return _FAIL
    if kind is str:
        return value if isinstance(value, str) else _FAIL
    return _FAIL


def _types_of(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _describe(allowed: tuple[Any, ...]) -> str:
    names = {bool: "true/false", int: "whole number", float: "number", str: "text"}
    parts = [names.get(t, getattr(t, "__name__", str(t))) for t in allowed if t is not type(None)]
    text = " or ".join(parts)
    return text + (" or none" if type(None) in allowed else "")


def _example(allowed: tuple[Any, ...]) -> str:
    for kind, example in ((bool, "true"), (int, "2"), (float, "0.5"), (str, "name")):
        if kind in allowed:
            return example
    return "none"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


# -- what a step runs with and gives back ---------------------------------------------


@dataclass(frozen=True)
class StepContext:
    """What a step may need beyond its config.

    Attributes:
        seed: seeds the fine-tuning (and any random initialisation).
        batch_size: the batch size when the step's config leaves it open (the parent
            model's training batch size).
        logdir: where TensorBoard logs of this step go (None: none).
        progress: receives the fine-tuning's progress events (None: silence).
        builder: the architecture of the input model (its card's ``builder`` plus
            ``layout``); distillation builds a student of it when no ``student=`` is given.
        model_name: the recipe's model's name as its card gives it (a Keras model rebuilt
            from Keras 3 is often just called "functional").
        original_model: the recipe's model before its first step (None: a step run on its
            own); ``distill:teacher=original`` learns from it.
        original_builder: that model's architecture (card ``builder`` plus ``layout``).
    """

    seed: int = 0
    batch_size: int = 32
    logdir: str | None = None
    progress: Progress | None = None
    builder: Mapping[str, Any] | None = None
    model_name: str = ""
    original_model: Any = None
    original_builder: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Architecture:
    """A step that builds a new model (distillation) says what it is."""

    layout: str  # image | sequence | tokens: how data samples are shaped for it
    builder: dict[str, Any]  # builder name (``arch``) and options
    family: str | None = None  # None: the input model's family


@dataclass(frozen=True)
class StepResult:
    """The model a step produced and what the step measured.

    ``history`` and ``details`` go into the step's entry of the card's ``steps`` (details
    as top-level keys: ``plan``, ``schedule``, ``preserve``, ...). ``data`` is set when
    the new model reads the data in another layout, ``architecture`` when the step built
    a new model, ``clustered`` when it changed which layers hold clustered kernels.
    """

    model: Any
    history: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    data: DatasetSplits | None = None
    architecture: Architecture | None = None
    clustered: tuple[str, ...] | None = None


# The signature every technique's ``run`` has.
StepRun = Callable[[Any, "DatasetSplits", StepConfig, StepContext], StepResult]
