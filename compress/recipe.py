"""Recipes: an ordered list of compression steps, written as data or as one line. TF-free.

One-line form (the CLI's ``--recipe``): steps joined by ``+``, each a step name with
optional ``key=value`` parameters after ``:`` separated by commas::

    prune:sparsity=0.8,schedule=poly+qat:epochs=2
    distill:student=dscnn-kws,width=0.5,temperature=4
    prune:structure=2:4,exclude=^logits$

The value of ``exclude`` is a regex and may itself hold ``,`` and ``+`` (``a{1,2}``,
``conv.+``): the parser only starts a new parameter at ``,key=`` and a new step at
``+step`` or ``+step:`` where ``step`` is a known step name.

As a file (``.json``, ``.yaml``/``.yml``)::

    steps:
      - prune: {sparsity: 0.8, schedule: poly}
      - qat: {epochs: 2}

(``{"step": "prune", "sparsity": 0.8}`` items work too, which is what ``recipe.json``
holds: every parameter of every step, defaults included, so the file alone says exactly
what was run.)

Example:
    >>> recipe = parse_recipe("prune:sparsity=0.8,schedule=poly+qat:epochs=2")
    >>> [step.step for step in recipe.steps]
    ['prune', 'qat']
    >>> Recipe.from_dict(recipe.to_dict()) == recipe
    True
    >>> recipe.to_text()
    'prune:sparsity=0.8,schedule=poly+qat:epochs=2'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.compress.step import StepConfig
from edgesmith.compress.techniques import STEPS, get_step
from edgesmith.core.errors import ConfigError, DataError
from edgesmith.core.fileio import parse_error_text

_KEY = re.compile(r"[A-Za-z_]\w*=")
_FREE_TEXT_KEYS = ("exclude",)  # values that may hold "," and "+"


@dataclass(frozen=True)
class Recipe:
    """An ordered, validated list of step configs.

    Rules: at least one step; ``qat`` is the last step (anything after it would train
    the QAT model's float shadow weights without the quantizers' knowledge) and appears
    once.
    """

    steps: tuple[StepConfig, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ConfigError(
                "empty recipe",
                expected="at least one step",
                fix="for example --recipe prune:sparsity=0.8",
            )
        names = [step.step for step in self.steps]
        if "qat" in names and names.index("qat") != len(names) - 1:
            raise ConfigError(
                f"recipe {self.to_text()!r}: qat is followed by {names[names.index('qat') + 1]}",
                expected="qat as the last step (it yields the quantization-aware model)",
                fix="move qat to the end, e.g. "
                + "+".join([n for n in names if n != "qat"] + ["qat"]),
            )

    @property
    def has_qat(self) -> bool:
        return any(step.step == "qat" for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """``{"recipe": one line, "steps": [every parameter of every step]}``."""
        return {"recipe": self.to_text(), "steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[Any]) -> Recipe:
        """From ``{"steps": [...]}`` or a bare list of steps (see the module docstring)."""
        steps = data.get("steps") if isinstance(data, Mapping) else data
        if not isinstance(steps, Sequence) or isinstance(steps, (str, bytes)):
            raise ConfigError(
                f"recipe data {str(data)[:80]!r}",
                expected='a list of steps, or a mapping with "steps": [...]',
            )
        return cls(tuple(_step_from_item(item) for item in steps))

    def to_text(self) -> str:
        """The recipe as one line (parameters that differ from the defaults only)."""
        return "+".join(step.to_text() for step in self.steps)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def parse_recipe(text: str) -> Recipe:
    """Parse the one-line form (see the module docstring).

    Example:
        >>> parse_recipe("cluster:clusters=16").steps[0].clusters
        16
    """
    text = text.strip()
    if not text:
        return Recipe(())
    return Recipe(tuple(_parse_step(chunk) for chunk in _split_steps(text)))


def load_recipe(source: str | os.PathLike[str]) -> Recipe:
    """A recipe from a ``.json``/``.yaml``/``.yml`` file, or from a one-line string.

    Example:
        >>> load_recipe("prune:sparsity=0.5").steps[0].sparsity
        0.5
    """
    path = Path(source)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise DataError(f"recipe file {path}: not found", expected="a JSON or YAML recipe file")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:  # json and yaml raise their own error types
            raise DataError(
                f"recipe file {path}: cannot be parsed ({parse_error_text(exc)})",
                expected="valid JSON or YAML",
            ) from exc
        return Recipe.from_dict(data)
    return parse_recipe(str(source))


def _split_steps(text: str) -> list[str]:
    """Split at ``+`` where a known step starts; a ``+`` inside an exclude regex stays."""
    parts = text.split("+")
    chunks = [parts[0]]
    for part in parts[1:]:
        starts_step = re.match(r"^\s*([A-Za-z_][\w-]*)\s*(:|$)", part)
        known = starts_step is not None and starts_step[1] in STEPS
        if not known and _ends_in_free_text(chunks[-1]):
            chunks[-1] += "+" + part
        else:
            chunks.append(part)
    return chunks


def _ends_in_free_text(chunk: str) -> bool:
    params = chunk.partition(":")[2]
    last = None
    for match in _KEY.finditer(params):
        last = match.group()[:-1]
    return last in _FREE_TEXT_KEYS


def _parse_step(chunk: str) -> StepConfig:
    name, _, params = chunk.strip().partition(":")
    name = name.strip()
    values: dict[str, str] = {}
    if params.strip():
        for piece in _split_params(name, params):
            key, _, value = piece.partition("=")
            key = key.strip()
            if key in values:
                raise ConfigError(
                    f"{name}: {key} given twice in {chunk!r}", expected="each key once"
                )
            values[key] = value.strip()
    return _make(name, values, chunk)


def _split_params(name: str, params: str) -> list[str]:
    """``a=1,b=x{1,2}`` -> ``["a=1", "b=x{1,2}"]``: a comma starts a parameter only before ``key=``."""
    pieces: list[str] = []
    for part in params.split(","):
        if _KEY.match(part.strip()) or not pieces:
            if not _KEY.match(part.strip()):
                raise ConfigError(
                    f"{name}: parameter {part.strip()!r}",
                    expected="key=value pairs separated by commas",
                    fix=f"write for example {name}:epochs=2",
                )
            pieces.append(part)
        elif pieces[-1].split("=", 1)[0].strip() in _FREE_TEXT_KEYS:
            pieces[-1] += "," + part
        else:
            raise ConfigError(
                f"{name}: parameter {part.strip()!r}",
                expected="key=value pairs separated by commas",
                fix=f"write for example {name}:epochs=2",
            )
    return pieces


def _step_from_item(item: Any) -> StepConfig:
    if isinstance(item, str):
        return _parse_step(item)
    if isinstance(item, Mapping) and "step" in item:
        params = {k: v for k, v in item.items() if k != "step"}
        return _make(str(item["step"]), params, str(dict(item)))
    if isinstance(item, Mapping) and len(item) == 1:
        ((name, params),) = item.items()
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ConfigError(
                f"step {name!r}: parameters {params!r}",
                expected="a mapping of parameters, for example {sparsity: 0.8}",
            )
        return _make(str(name), dict(params), str(dict(item)))
    raise ConfigError(
        f"recipe step {item!r}",
        expected='"name:key=value,...", {"step": name, ...} or {name: {key: value}}',
    )


def _make(name: str, params: Mapping[str, Any], source: str) -> StepConfig:
    return get_step(name, source=source).config.from_dict(params)
