"""A run plan: models x recipes x (format, quant) x backends, plus data and bench settings.

Plans are written as YAML or JSON; every field is validated when the plan is built, so a
typo fails before any training starts.

Example:
    >>> plan = Plan.from_dict({"models": ["cnn-digits"], "targets": ["tflite:int8"]})
    >>> plan.targets[0].format, plan.targets[0].quant
    ('tflite', 'int8')
    >>> Plan.from_dict(plan.to_dict()) == plan
    True
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError
from edgesmith.core.fileio import parse_error_text
from edgesmith.core.tables import BASELINE_RECIPE, FORMAT_QUANT
from edgesmith.devices.device_spec import DeviceSpec, parse_device


@dataclass(frozen=True)
class Target:
    """One file format and quantization mode to convert every variant to."""

    format: str
    quant: str

    def __post_init__(self) -> None:
        if self.format not in FORMAT_QUANT:
            raise ConfigError(
                f"format {self.format!r}", expected=f"one of {', '.join(FORMAT_QUANT)}"
            )
        # ``auto`` (convert/quant_auto.py, quant_auto_onnx.py) is a search over files of the
        # format, measured on its CPU runtime, not a file mode.
        modes = (*FORMAT_QUANT[self.format], "auto")
        if self.quant not in modes:
            raise ConfigError(
                f"{self.format}:{self.quant}",
                expected=f"a quant mode of {self.format}: {', '.join(modes)}",
            )

    @classmethod
    def parse(cls, text: str) -> Target:
        """``tflite:int8`` -> Target('tflite', 'int8'); a bare format means ``none``."""
        fmt, _, quant = text.strip().partition(":")
        return cls(fmt, quant or "none")

    def __str__(self) -> str:
        return f"{self.format}:{self.quant}"


@dataclass(frozen=True)
class BenchSettings:
    """How each file is benchmarked."""

    runs: int = 50
    warmup: int = 5
    threads: int | None = None
    profile: bool = False  # a per-op latency profile in each record (litert, onnxruntime)
    # Time each compressed or quantized file interleaved with the same model's float32 file
    # of its format, so its speedup compares runs of one window (record field ``paired``).
    paired: bool = True

    def __post_init__(self) -> None:
        for flag in ("profile", "paired"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"bench.{flag}={getattr(self, flag)!r}", expected="true or false")
        for name in ("runs", "warmup", "threads"):
            value = getattr(self, name)
            if not (value is None and name == "threads") and not _is_int(value):
                raise ConfigError(f"bench.{name}={value!r}", expected="a whole number")
        if self.runs < 1 or self.warmup < 0:
            raise ConfigError(
                f"runs={self.runs}, warmup={self.warmup}", expected="runs >= 1, warmup >= 0"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(
                f"threads={self.threads}", expected="a positive number of threads or null"
            )


@dataclass(frozen=True)
class ModelSource:
    """A model of the user's in a plan: its file and data, and what may run from it.

    Example:
        >>> ModelSource.parse("kws", {"file": "kws.keras", "data": "kws.npz"}).data
        'kws.npz'
    """

    file: str | None = None  # None: the plan entry's name is a zoo model
    data: str | None = None  # given with file: (zoo models bring their own set)
    image_scale: float | None = None
    trust: bool = False
    custom_objects: str | None = None

    @classmethod
    def parse(cls, name: str, entry: Any) -> ModelSource:
        where = f"models.{name}"
        if entry is None:
            return cls()
        _check(
            entry, (dict,), where, "a mapping with file: and data: (or nothing, for a zoo model)"
        )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(entry) - known
        if unknown:
            raise ConfigError(
                f"{where}: unknown keys {sorted(unknown)}", expected=f"some of {sorted(known)}"
            )
        for key in ("file", "data", "custom_objects"):
            _check(entry.get(key), (str, type(None)), f"{where}.{key}", "a path")
        scale = entry.get("image_scale")
        if scale is not None and (not isinstance(scale, (int, float)) or isinstance(scale, bool)):
            raise ConfigError(f"{where}.image_scale: {scale!r}", expected="a number such as 0.0039")
        _check(entry.get("trust", False), (bool,), f"{where}.trust", "true or false")
        if entry.get("data") and not entry.get("file"):
            raise ConfigError(
                f"{where}: data with no file",
                expected="file: PATH of your model next to data: (a zoo model is trained on "
                "its own data set)",
            )
        if entry.get("file") and not entry.get("data"):
            raise ConfigError(
                f"{where}: a model file with no data",
                expected="data: PATH (an .npz, a folder of class folders of images, or a zoo "
                "data set name) to train, calibrate and evaluate it on",
            )
        return cls(**{k: v for k, v in entry.items() if k in known})

    def resolved(self, folder: Path) -> ModelSource:
        """Relative paths taken from ``folder`` (the plan file's), zoo set names kept."""

        def resolve(value: str | None) -> str | None:
            if value is None or Path(value).is_absolute():
                return value
            candidate = folder / value
            return str(candidate) if candidate.exists() or not _looks_like_name(value) else value

        return dataclasses.replace(
            self,
            file=resolve(self.file),
            data=resolve(self.data),
            custom_objects=resolve(self.custom_objects),
        )


def _looks_like_name(value: str) -> bool:
    """A zoo data set name such as ``mnist`` rather than a path."""
    return "/" not in value and "." not in value


@dataclass(frozen=True)
class Plan:
    """Everything one ``edgesmith run`` does."""

    models: tuple[str, ...]
    recipes: dict[str, str] = field(default_factory=lambda: {BASELINE_RECIPE: ""})
    targets: tuple[Target, ...] = (Target("tflite", "none"),)
    backends: tuple[str, ...] = ("litert",)
    # Where every variant x backend is measured: this machine and/or boards over SSH.
    devices: tuple[DeviceSpec, ...] = (DeviceSpec(),)
    bench: BenchSettings = field(default_factory=BenchSettings)
    data_dir: str | None = None
    calibration_samples: int = 200
    parity_samples: int = 100
    name: str = "edgesmith run"
    # The accuracy a variant may lose against the float baseline, in percentage points,
    # and still be recommended (the report's "within budget").
    budget: float = 1.0
    # Recipes whose output only makes sense in some targets (a QAT model is meant for int8).
    recipe_targets: dict[str, tuple[Target, ...]] = field(default_factory=dict)
    # Per-model recipe text under one recipe name: fine-tuning budgets differ between models
    # (a 24k-weight DS-CNN needs longer to recover from 80% sparsity than a 470k-weight CNN).
    recipe_models: dict[str, dict[str, str]] = field(default_factory=dict)
    # Models of the user's (a file and its data), and zoo models given other data, by name.
    model_sources: dict[str, ModelSource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from edgesmith.zoo.registry import get_spec

        if not self.models:
            raise ConfigError("plan has no models", expected="at least one zoo model name")
        unknown = set(self.model_sources) - set(self.models)
        if unknown:
            raise ConfigError(f"sources given for models not in the plan: {sorted(unknown)}")
        for model in self.models:
            if self.source_of(model).file is None:
                get_spec(model)  # unknown names list the known ones
        if BASELINE_RECIPE not in self.recipes:
            # The float model is the baseline row of every table: always part of the run.
            object.__setattr__(self, "recipes", {BASELINE_RECIPE: "", **self.recipes})
        if (
            isinstance(self.budget, bool)
            or not isinstance(self.budget, (int, float))
            or not 0 <= self.budget <= 100
        ):
            raise ConfigError(
                f"budget={self.budget!r}",
                expected="accuracy points a variant may lose, a number from 0 to 100 (default 1)",
            )
        if not self.targets or not self.backends:
            raise ConfigError("plan has no targets or no backends", expected="at least one of each")
        if not self.devices:
            raise ConfigError(
                "plan has no devices", expected="at least one (local is this machine)"
            )
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"devices: names {names}", expected="a different name for each device"
            )
        unknown = set(self.recipe_targets) - set(self.recipes)
        if unknown:
            raise ConfigError(f"targets given for unknown recipes {sorted(unknown)}")
        unknown = set(self.recipe_models) - set(self.recipes)
        if unknown:
            raise ConfigError(f"per-model recipes given for unknown recipes {sorted(unknown)}")
        for overrides in self.recipe_models.values():
            for model in set(overrides) - set(self.models):
                get_spec(model)  # a zoo model not in this plan is harmless; a typo is not

    def source_of(self, model: str) -> ModelSource:
        """Where ``model`` comes from: a file of the user's, or the zoo (``file`` None)."""
        return self.model_sources.get(model) or ModelSource()

    def recipe_for(self, recipe_name: str, model: str) -> str:
        """The recipe text ``model`` gets under ``recipe_name`` (its own when the plan gives one).

        Example:
            >>> plan = Plan.from_dict({"models": ["cnn-digits", "lstm-digits"], "recipes": {"p": {
            ...     "recipe": "prune:sparsity=0.8",
            ...     "models": {"lstm-digits": "prune:sparsity=0.8,epochs=20"}}}})
            >>> plan.recipe_for("p", "cnn-digits"), plan.recipe_for("p", "lstm-digits")
            ('prune:sparsity=0.8', 'prune:sparsity=0.8,epochs=20')
        """
        return self.recipe_models.get(recipe_name, {}).get(model, self.recipes[recipe_name])

    def targets_for(self, recipe_name: str) -> tuple[Target, ...]:
        """The targets of one recipe: its own list when the plan gives one, else the plan's."""
        return self.recipe_targets.get(recipe_name, self.targets)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"unknown plan keys {sorted(unknown)}", expected=f"some of {sorted(known)}"
            )
        values = dict(data)
        if "models" not in values:
            raise ConfigError("plan has no models", expected="models: a list of zoo model names")
        models = values["models"]
        if isinstance(models, dict):  # {name: {file: ..., data: ...}} or {zoo-name: null}
            sources = {str(n): ModelSource.parse(str(n), e) for n, e in models.items()}
            values["models"] = tuple(str(n) for n in models)
            values["model_sources"] = {n: s for n, s in sources.items() if s != ModelSource()}
        else:
            values["models"] = _names(models, "models")
        sources = values.get("model_sources") or {}
        _check(sources, (dict,), "model_sources", "a mapping of model names")
        values["model_sources"] = {
            str(n): s if isinstance(s, ModelSource) else ModelSource.parse(str(n), s)
            for n, s in sources.items()
        }
        for key in ("recipe_targets", "recipe_models"):
            _check(values.get(key), (dict, type(None)), key, "a mapping of recipe names")
            if key in values and values[key] is None:  # written as null: none given
                del values[key]
        if "recipes" in values:
            recipes = values["recipes"]
            _check(recipes, (dict, list, type(None)), "recipes", "a mapping of names to recipes")
            if isinstance(recipes, list):  # a list of recipe strings: name them by themselves
                _names(recipes, "recipes", allow_empty=True)
                recipes = {r or BASELINE_RECIPE: r for r in recipes}
            flat, only = {}, dict(values.get("recipe_targets") or {})
            per_model = dict(values.get("recipe_models") or {})
            for name, entry in (recipes or {}).items():
                _check(entry, (dict, str, type(None)), f"recipes.{name}", "a recipe or a mapping")
                if isinstance(entry, dict):  # {recipe: "...", targets: [...], models: {...}}
                    extra = set(entry) - {"recipe", "targets", "models"}
                    if extra:
                        raise ConfigError(
                            f"recipe {name!r} has unknown keys {sorted(extra)}",
                            expected="recipe, targets and models",
                        )
                    flat[str(name)] = str(entry.get("recipe") or "")
                    if entry.get("targets"):
                        only[str(name)] = entry["targets"]
                    if entry.get("models"):
                        per_model[str(name)] = entry["models"]
                else:
                    flat[str(name)] = str(entry or "")
            values["recipes"] = flat
            for name, models in per_model.items():
                _check(models, (dict,), f"recipes.{name}.models", "a mapping of model to recipe")
            values["recipe_targets"] = {
                k: _targets(v, f"recipes.{k}.targets") for k, v in only.items()
            }
            values["recipe_models"] = {
                str(k): {str(m): str(r or "") for m, r in v.items()} for k, v in per_model.items()
            }
        if "targets" in values:
            values["targets"] = _targets(values["targets"], "targets")
        if "backends" in values:
            values["backends"] = _names(values["backends"], "backends")
        if "devices" in values:
            devices = values["devices"]
            devices = [devices] if isinstance(devices, (str, dict)) else devices
            _check(
                devices, (list, tuple), "devices", "a list such as [local, {name: pi4, ssh: ...}]"
            )
            values["devices"] = tuple(
                parse_device(d, where=f"devices[{i}]") for i, d in enumerate(devices)
            )
        bench = values.get("bench")
        _check(
            bench, (dict, BenchSettings, type(None)), "bench", "a mapping (runs, warmup, threads)"
        )
        if isinstance(bench, dict):
            unknown = set(bench) - {f.name for f in dataclasses.fields(BenchSettings)}
            if unknown:
                raise ConfigError(
                    f"unknown bench keys {sorted(unknown)}", expected="runs, warmup, threads"
                )
            values["bench"] = BenchSettings(**bench)
        elif bench is None:
            values.pop("bench", None)
        for key in ("calibration_samples", "parity_samples"):
            if key in values and not _is_int(values[key]):
                raise ConfigError(f"{key}={values[key]!r}", expected="a whole number")
        _check(values.get("name", ""), (str,), "name", "a text")
        _check(values.get("data_dir"), (str, type(None)), "data_dir", "a folder path")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["models"] = list(self.models)
        data["model_sources"] = {
            name: {k: v for k, v in dataclasses.asdict(source).items() if v not in (None, False)}
            for name, source in self.model_sources.items()
        }
        data["targets"] = [str(t) for t in self.targets]
        data["backends"] = list(self.backends)
        data["devices"] = [device.to_plan() for device in self.devices]
        data["recipe_targets"] = {
            name: [str(t) for t in targets] for name, targets in self.recipe_targets.items()
        }
        return data


def _targets(items: Any, where: str) -> tuple[Target, ...]:
    """``format:quant`` strings or {format, quant} mappings, as Targets."""
    if isinstance(items, str):
        items = [items]
    _check(items, (list, tuple), where, "a list such as [tflite:int8, onnx]")
    targets = []
    for item in items:
        if isinstance(item, Target):
            targets.append(item)
        elif isinstance(item, str):
            targets.append(Target.parse(item))
        elif isinstance(item, dict) and set(item) <= {"format", "quant"} and "format" in item:
            targets.append(Target(str(item["format"]), str(item.get("quant") or "none")))
        else:
            raise ConfigError(f"{where}: {item!r}", expected="format:quant, such as tflite:int8")
    return tuple(targets)


def _names(items: Any, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """A list of names (one name alone is a list of one)."""
    if isinstance(items, str):
        items = [items]
    _check(items, (list, tuple), where, "a list of names")
    for item in items:
        if not (isinstance(item, str) or (allow_empty and item is None)):
            raise ConfigError(f"{where}: {item!r}", expected="a name (text)")
    return tuple(items)


def _check(value: Any, types: tuple[type, ...], where: str, expected: str) -> None:
    if not isinstance(value, types):
        raise ConfigError(f"{where}: {value!r}"[:200], expected=expected)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read a plan from a YAML or JSON file, naming the file in any error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the plan ({exc.strerror or exc})") from exc
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception as exc:  # yaml's error types vary; the message is what matters
        raise ConfigError(f"{path}: not valid YAML/JSON ({parse_error_text(exc)})") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the plan is a {type(data).__name__}", expected="a mapping of plan keys"
        )
    try:
        plan = Plan.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    folder = path.parent
    sources = {n: s.resolved(folder) for n, s in plan.model_sources.items()}
    devices = tuple(d.resolved(folder) for d in plan.devices)
    return dataclasses.replace(plan, model_sources=sources, devices=devices)
