"""The compression steps a recipe may name: step name -> (config class, run). TF-free.

A new technique is one module with a frozen config class (``step = "name"``) and
``run(model, data, config, context) -> StepResult``, plus one :func:`register` line
below. Recipe parsing and the recipe runner both look steps up here.

Example:
    >>> step_names()
    ('prune', 'qat', 'distill', 'cluster')
    >>> get_step("cluster").config.__name__
    'ClusterConfig'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from edgesmith.compress import cluster, distill, prune, qat
from edgesmith.compress.step import StepConfig, StepRun
from edgesmith.core.errors import UnknownNameError


@dataclass(frozen=True)
class Step:
    """One registered technique: its config class and the function that runs it."""

    config: type[StepConfig]
    run: StepRun

    @property
    def name(self) -> str:
        return self.config.step


STEPS: dict[str, Step] = {}


def register(config: type[StepConfig], run: StepRun) -> None:
    """Make ``config.step`` a step name recipes may use."""
    STEPS[config.step] = Step(config, run)


register(prune.PruneConfig, prune.run)
register(qat.QATConfig, qat.run)
register(distill.DistillConfig, distill.run)
register(cluster.ClusterConfig, cluster.run)


def step_names() -> tuple[str, ...]:
    """Every registered step, in registration order."""
    return tuple(STEPS)


def get_step(name: str, *, source: str | None = None) -> Step:
    """The step called ``name``; an unknown name says which exist (``source``: where it came from)."""
    if name in STEPS:
        return STEPS[name]
    close = difflib.get_close_matches(name, list(STEPS), n=1)
    where = f" in {source!r}" if source is not None else ""
    raise UnknownNameError(
        f"unknown step {name!r}{where}",
        expected=f"one of {', '.join(STEPS)}",
        fix=f"did you mean {close[0]!r}?" if close else "see `edgesmith compress --help`",
    )
