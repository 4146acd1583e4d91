"""One trial of ``edgesmith tune``: its stages in a worker, its pruning, its numbers.

A trial is a recipe and a target. Its stages (compress, convert, the validation
``evalset``) run through :class:`~edgesmith.plan_runner.PlanRunner` and its stage cache in a
worker, so a trial repeating another's recipe reuses its compressed model. While the
recipe fine-tunes, each epoch's validation accuracy goes to an Optuna
:class:`~optuna.pruners.ThresholdPruner` whose floor is the budget less the search space's
``slack_pt``: a trial whose accuracy is still below it in the second half of a training
(and after ``warmup`` epochs) stops there. Interim trainings (a channel-pruning round before
the last) are not judged: the next round changes the model again. (Optuna's own
``Trial.report``/``should_prune`` refuse multi-objective studies, so the worker asks the
pruner itself with the trial's intermediate values, which are kept on the trial.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgesmith.core.progress import ProgressEvent
from edgesmith.plan import Plan, Target


class TrialStopped(BaseException):
    """Raised from the fine-tuning's epoch callback when the pruner stops a trial.

    A BaseException, so that no ``except Exception`` on the way turns it into a result.
    """

    def __init__(self, values: dict[int, float]) -> None:
        super().__init__(f"validation accuracy out of the budget: {values}")
        self.values = values


JUDGE_FROM = 0.5  # share of a training's epochs before the pruner may stop it


class AccuracyWatch:
    """The progress callback of a trial's stages: epochs' validation accuracy -> pruner."""

    def __init__(self, floor: float | None, warmup: int) -> None:
        self.floor = floor
        self.warmup = max(0, warmup)
        self.values: dict[int, float] = {}
        self.in_training = 0  # epochs of the current training (a step, a student)
        self.judged = True  # False in an interim training (a channel-pruning round)

    def __call__(self, event: ProgressEvent) -> None:
        if event.message == "started":
            self.in_training = 0
            self.judged = not event.fields.get("interim")
            return
        accuracy = event.fields.get("val_accuracy") if event.message == "epoch" else None
        if accuracy is None:
            return
        self.values[len(self.values)] = float(accuracy)
        self.in_training += 1
        # A model climbs back (or, a student, up from nothing) over the first half of its
        # schedule: only the second half of a training that is not interim is judged.
        settled = math.ceil(JUDGE_FROM * event.total) if event.total else 0
        if self.floor is None or not self.judged or self.in_training < max(self.warmup, settled):
            return
        import optuna

        pruner = optuna.pruners.ThresholdPruner(lower=self.floor)
        frozen = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, intermediate_values=dict(self.values)
        )
        if pruner.prune(None, frozen):  # type: ignore[arg-type]  # it reads the trial only
            raise TrialStopped(dict(self.values))


@dataclass(frozen=True)
class TrialJob:
    """What a worker needs to run one trial's stages (picklable)."""

    plan: Plan
    cache_root: str
    store: Any
    recipe_name: str
    recipe: str
    target: str
    floor: float | None
    warmup: int


def trial_stages(job: TrialJob) -> dict[str, Any]:
    """In a worker: compress, convert and export the validation split for one trial.

    Returns ``{"convert", "key", "evalset", "epochs", "reference"}``, or ``{"pruned", "epochs"}``, or
    ``{"error", "epochs"}``: nothing is raised, so every executor returns the same.
    """
    from edgesmith.cache import StageCache
    from edgesmith.executor import task_progress
    from edgesmith.plan_runner import PlanRunner, _describe

    watch = AccuracyWatch(job.floor, job.warmup)
    forward = task_progress()

    def progress(event: ProgressEvent) -> None:
        if forward is not None:
            forward(event)  # to the caller first: the pruner may stop the trial here
        watch(event)

    runner = PlanRunner(job.plan, StageCache(job.cache_root), job.store, progress=progress)
    try:
        parent = runner.train(job.plan.models[0])
        model = runner.compress(parent, job.recipe_name, job.recipe)
        target = Target.parse(job.target)
        folder, key = runner.convert(model, target)
        # The float32 file of the same format, timed beside this one (plan bench.paired).
        reference = runner.reference(parent, model, target)
        evalset = runner.evalset(model, "val")
    except TrialStopped as stop:
        return {"pruned": True, "epochs": stop.values}
    except Exception as exc:
        return {"error": _describe(exc), "epochs": watch.values}
    return {
        "convert": str(folder),
        "key": key,
        "evalset": str(evalset),
        "epochs": watch.values,
        "reference": [str(reference[0]), reference[1]] if reference else None,
    }


def measure_trial(runner: Any, job: TrialJob, built: dict[str, Any], split: str = "val") -> Any:
    """The trial's record: the conversion record plus the benchmark on ``split``."""
    from pathlib import Path

    from edgesmith.devices.device_spec import DeviceSpec

    folder = Path(built["convert"])
    converted = runner.converted_record(folder).updated(
        recipe=job.recipe_name, model=job.plan.models[0]
    )
    if converted.error:
        return converted
    backend = job.plan.backends[0]
    pair = built.get("reference")
    reference = (Path(pair[0]), pair[1]) if pair else None
    record = runner.measure(
        converted,
        folder,
        built["key"],
        backend,
        Path(built["evalset"]),
        DeviceSpec(),
        split,
        reference,
    )
    return record.updated(split=split)


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on every one of accuracy (up), size and latency (down).

    Example:
        >>> rows = [{"accuracy": 0.9, "size_bytes": 10, "latency_ms": 1.0},
        ...         {"accuracy": 0.8, "size_bytes": 20, "latency_ms": 2.0},
        ...         {"accuracy": 0.95, "size_bytes": 30, "latency_ms": 1.0}]
        >>> [r["size_bytes"] for r in pareto_front(rows)]
        [10, 30]
    """

    def beats(a: dict[str, Any], b: dict[str, Any]) -> bool:
        keys = (-a["accuracy"], a["size_bytes"], a["latency_ms"])
        other = (-b["accuracy"], b["size_bytes"], b["latency_ms"])
        return all(x <= y for x, y in zip(keys, other, strict=True)) and keys != other

    return [r for r in rows if not any(beats(o, r) for o in rows if o is not r)]


def best_within(rows: list[dict[str, Any]], objective: str) -> dict[str, Any] | None:
    """The row with the best ``objective`` (size or latency); ties go to accuracy."""
    if not rows:
        return None
    first = "size_bytes" if objective == "size" else "latency_ms"
    second = "latency_ms" if objective == "size" else "size_bytes"
    return min(rows, key=lambda r: (r[first], -r["accuracy"], r[second]))
