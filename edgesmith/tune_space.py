"""What ``edgesmith tune`` searches: compression steps, their parameters, conversion targets.

A search space is a mapping (the defaults below, per family, or a YAML/JSON file):

.. code-block:: yaml

    techniques: [baseline, prune, distill]    # the steps before QAT (+ chains them)
    qat: [false, true]                        # whether QAT ends the recipe
    prune: {sparsity: {low: 0.3, high: 0.95, step: 0.05}, structure: [channels]}
    cluster: {clusters: [8, 16, 32]}
    distill: {width: [0.25, 0.5, 0.75]}
    qat_step: {epochs: [1]}                   # the QAT step's own parameters
    targets: [tflite:none, tflite:int8, onnx:int8]
    pruner: {warmup_epochs: 2, slack_pt: 2.0} # epochs of each fine-tuning before pruning, and
                                              # how far below the budget an epoch may fall

The defaults search what changes the deployed file: whole channels removed and smaller
students make the dense model smaller and faster, quantization modes make it smaller
(or faster). Unstructured and m:n sparsity and clustering leave the dense file's size and
speed as they are (``benchmarks/structured_table.py``: unstructured pruning to the
channel-pruned model's parameter count gave the same bytes at 0.97-1.00x the float32
speed), so they would spend trials on files no better on size or latency; a space file
adds them (``techniques: [baseline, prune, cluster, prune+cluster]``,
``prune: {structure: [unstructured, channels]}``), for a smaller compressed download.

A parameter is a list (the choices; ``null`` keeps the step's default, for ``epochs`` and
``learning_rate`` the automatic fine-tuning budget), a ``{low, high[, step][, log]}``
range, or one value. Parameter names are the step configs' fields
(``edgesmith compress --help``). A file's sections replace the defaults' sections of the
same name; the rest stay.

Example:
    >>> space = SearchSpace.default("cnn")
    >>> "prune" in space.techniques and "tflite:int8" in space.targets
    True
    >>> space.recipe({"technique": "prune", "prune.sparsity": 0.8, "qat": False})
    'prune:sparsity=0.8'
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError
from edgesmith.core.tables import BASELINE_RECIPE, FORMAT_QUANT

# Steps a technique may chain before the optional QAT step (QAT always comes last).
STEP_SECTIONS = {"prune": "prune", "cluster": "cluster", "distill": "distill", "qat": "qat_step"}

_BASE: dict[str, Any] = {
    "techniques": [BASELINE_RECIPE, "prune", "distill"],
    "qat": [False, True],
    "prune": {
        "sparsity": {"low": 0.3, "high": 0.95, "step": 0.05},
        # None: the automatic fine-tuning budget (until validation accuracy recovers).
        "epochs": [None],
        "learning_rate": [None],
    },
    "cluster": {"clusters": [8, 16, 32], "epochs": [1, 2]},
    # Students train from scratch: no extra from-scratch baseline in a search.
    "distill": {"width": [0.25, 0.5, 0.75], "epochs": [None], "baseline": False},
    "qat_step": {"epochs": [1]},
    "targets": [],  # filled from the format/quant table: every mode that shrinks or speeds
    # A compressed model recovers over its fine-tuning: an early epoch a little below the
    # budget says little, one far below it (slack_pt more) says the trial is lost.
    "pruner": {"warmup_epochs": 2, "slack_pt": 2.0},
}
# What differs per family: recurrent students need depth kept; attention tolerates less
# pruning without the automatic budget's long recovery.
_FAMILY: dict[str, dict[str, Any]] = {
    "cnn": {},
    "lstm": {"distill": {"width": [0.5, 0.75], "epochs": [None], "baseline": False}},
    "transformer": {
        "prune": {
            "sparsity": {"low": 0.3, "high": 0.9, "step": 0.05},
            "epochs": [None],
            "learning_rate": [None],
        }
    },
}
_DEFAULT_TARGETS = {"tflite": ("none", "fp16", "dynamic", "int8"), "onnx": ("none", "int8")}


def dense_structures() -> list[str]:
    """The pruning structures that make the dense file smaller: ``channels`` where the prune
    step has it (whole channels removed, the model rebuilt), else ``unstructured``."""
    found = supported_structures()
    return ["channels"] if "channels" in found else found


def supported_structures() -> list[str]:
    """Pruning structures the prune step offers: ``unstructured``, and ``channels`` where it
    has it (structured pruning removes whole channels: smaller and faster)."""
    from edgesmith.compress.prune import PruneConfig

    found = ["unstructured"]
    try:
        PruneConfig(structure="channels").validate()
        found.append("channels")
    except Exception:  # not (yet) a structure the prune step knows
        pass
    return found


def default_targets() -> list[str]:
    """Every default target the conversion table offers, ``auto`` (mixed precision) too."""
    from edgesmith.plan import Target

    targets = []
    for fmt, quants in _DEFAULT_TARGETS.items():
        offered = FORMAT_QUANT.get(fmt, ())
        targets += [f"{fmt}:{q}" for q in quants if q in offered]
        # auto is a search over the format's files, not a file mode: the plan's targets say
        with contextlib.suppress(ConfigError):
            targets.append(str(Target.parse(f"{fmt}:auto")))
    return targets


@dataclass
class SearchSpace:
    """A search space (see the module's docstring), validated."""

    techniques: list[str]
    qat: list[bool]
    steps: dict[str, dict[str, Any]]  # step name -> parameter -> spec
    targets: list[str]
    warmup_epochs: int = 2
    source: str = "defaults"
    slack_pt: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def default(cls, family: str | None) -> SearchSpace:
        """The defaults for ``family`` (cnn, lstm, transformer; None: the common ones)."""
        values = copy.deepcopy(_BASE)
        values.update(copy.deepcopy(_FAMILY.get(family or "", {})))
        values["prune"].setdefault("structure", dense_structures())
        values["targets"] = default_targets()
        return cls.from_dict(values, source=f"defaults for {family or 'any family'}")

    @classmethod
    def load(cls, path: str | os.PathLike[str], family: str | None) -> SearchSpace:
        """The defaults for ``family`` with the sections of the YAML/JSON file ``path``."""
        given = _read_mapping(Path(path))
        base = cls.default(family).to_dict()
        unknown = set(given) - set(base)
        if unknown:
            raise ConfigError(
                f"{path}: unknown sections {sorted(unknown)}",
                expected=f"some of {', '.join(sorted(base))}",
            )
        base.update(given)
        return cls.from_dict(base, source=str(path))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "search space") -> SearchSpace:
        from edgesmith.compress.techniques import get_step
        from edgesmith.plan import Target

        techniques = [str(t) for t in _as_list(values.get("techniques", [BASELINE_RECIPE]))]
        steps: dict[str, dict[str, Any]] = {}
        for step, section in STEP_SECTIONS.items():
            params = dict(values.get(section) or {})
            names = {f.name for f in fields(get_step(step).config)}
            bad = set(params) - names
            if bad:
                raise ConfigError(
                    f"{source}: {section} has no parameter {sorted(bad)[0]!r}",
                    expected=f"fields of the {step} step: {', '.join(sorted(names))}",
                )
            steps[step] = {
                name: _check_spec(spec, f"{source}: {section}.{name}")
                for name, spec in params.items()
            }
        for technique in techniques:
            if technique == BASELINE_RECIPE:
                continue
            for step in technique.split("+"):
                if step not in STEP_SECTIONS or step == "qat":
                    raise ConfigError(
                        f"{source}: technique {technique!r}",
                        expected="baseline or steps among prune, cluster, distill joined by "
                        "+ (QAT is the qat: [false, true] choice)",
                    )
        targets = [str(Target.parse(str(t))) for t in _as_list(values.get("targets", []))]
        if not techniques or not targets:
            raise ConfigError(
                f"{source}: empty techniques or targets", expected="at least one of each"
            )
        pruner = values.get("pruner") or {}
        warmup, slack = int(pruner.get("warmup_epochs", 2)), float(pruner.get("slack_pt", 2.0))
        if warmup < 0 or not 0 <= slack <= 100:
            raise ConfigError(
                f"{source}: pruner {pruner}",
                expected="warmup_epochs >= 0 and slack_pt from 0 to 100 (accuracy points)",
            )
        return cls(
            techniques,
            [bool(q) for q in _as_list(values.get("qat", [False]))],
            steps,
            targets,
            warmup,
            source,
            slack,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"techniques": self.techniques, "qat": self.qat}
        for step, section in STEP_SECTIONS.items():
            out[section] = self.steps.get(step, {})
        out["targets"] = self.targets
        out["pruner"] = {"warmup_epochs": self.warmup_epochs, "slack_pt": self.slack_pt}
        return out

    # -- sampling ------------------------------------------------------------------------

    def sample(self, trial: Any) -> dict[str, Any]:
        """Draw one variant's parameters from an Optuna ``trial``."""
        params: dict[str, Any] = {
            "technique": trial.suggest_categorical("technique", self.techniques)
        }
        chosen = [] if params["technique"] == BASELINE_RECIPE else params["technique"].split("+")
        if True in self.qat and (False not in self.qat or len(self.qat) > 1):
            params["qat"] = trial.suggest_categorical("qat", self.qat)
        else:
            params["qat"] = bool(self.qat and self.qat[0])
        if params["qat"]:
            chosen = [*chosen, "qat"]
        for step in chosen:
            for name, spec in self.steps.get(step, {}).items():
                params[f"{step}.{name}"] = _suggest(trial, f"{step}.{name}", spec)
        # A QAT model is for full int8 (the converter keeps the ranges it learned).
        int8 = [t for t in self.targets if t.endswith(":int8")]
        if params["qat"] and int8:
            params["target"] = trial.suggest_categorical("target_qat", int8)
        else:
            params["target"] = trial.suggest_categorical("target", self.targets)
        return params

    def recipe(self, params: dict[str, Any]) -> str:
        """The one-line recipe of sampled ``params`` (``baseline`` for no step)."""
        technique = params.get("technique", BASELINE_RECIPE)
        chosen = [] if technique == BASELINE_RECIPE else technique.split("+")
        if params.get("qat"):
            chosen.append("qat")
        parts = []
        for step in chosen:
            values = {
                k.split(".", 1)[1]: v
                for k, v in params.items()
                if k.startswith(f"{step}.") and v is not None
            }
            args = ",".join(f"{k}={_text(v)}" for k, v in values.items())
            parts.append(f"{step}:{args}" if args else step)
        return "+".join(parts) or BASELINE_RECIPE


def _read_mapping(path: Path) -> dict[str, Any]:
    from edgesmith.core.fileio import parse_error_text

    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the search space ({exc.strerror or exc})") from exc
    except Exception as exc:  # yaml's error types vary; the message is what matters
        raise ConfigError(f"{path}: not valid YAML/JSON ({parse_error_text(exc)})") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the search space is a {type(data).__name__}",
            expected="a mapping of sections (techniques, qat, prune, ..., targets)",
        )
    return data


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_spec(spec: Any, where: str) -> Any:
    if isinstance(spec, dict):
        if not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "step", "log"}:
            raise ConfigError(f"{where}: {spec}", expected="{low, high[, step][, log]}")
        if not spec["low"] <= spec["high"]:
            raise ConfigError(f"{where}: low {spec['low']} > high {spec['high']}")
    elif isinstance(spec, list) and not spec:
        raise ConfigError(f"{where}: no choices", expected="a non-empty list")
    return spec


def _suggest(trial: Any, name: str, spec: Any) -> Any:
    if isinstance(spec, dict):
        low, high, step = spec["low"], spec["high"], spec.get("step")
        log = bool(spec.get("log", False))
        if all(isinstance(v, int) for v in (low, high)) and isinstance(step or 1, int):
            return trial.suggest_int(name, low, high, step=step or 1, log=log)
        value = trial.suggest_float(name, float(low), float(high), step=step, log=log)
        return round(value, 6)  # 0.35000000000000003 would make another cache key
    if isinstance(spec, list):
        return spec[0] if len(spec) == 1 else trial.suggest_categorical(name, spec)
    return spec


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def space_for(path: str | os.PathLike[str] | None, family: str | None) -> SearchSpace:
    """The space of a search: the file at ``path`` over the family's defaults, or those."""
    if path is None:
        return SearchSpace.default(family)
    if not Path(path).is_file():
        raise ConfigError(f"--space {path}: file not found", expected="a YAML or JSON file")
    return SearchSpace.load(path, family)
