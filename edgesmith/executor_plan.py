"""A plan's stage entries as a task graph, built in parallel before the serial pass.

The graph: each model's ``train``/``import`` entry; then, per recipe, its ``compress``
entry; then, per compressed variant, its test ``evalset`` and each target's ``convert``
entry. A task runs in a worker (:mod:`edgesmith.executor`) the same
:class:`~edgesmith.plan_runner.PlanRunner` method the serial pass calls, so both compute
the same keys and the same entries; the worker writes the entry into the stage cache (under
its lock) and returns only whether it failed. The serial pass then finds every entry built
and benchmarks the variants one by one. An entry whose build failed is not built again:
the serial pass records the worker's error for it, word for word. The workers' progress
(epochs, compression steps) reaches the runner's ``progress`` while they run, each event's
``source`` the task's label ("cnn-digits prune50", "cnn-digits prune50 tflite:int8").

Example:
    >>> from edgesmith.executor import make_executor  # doctest: +SKIP
    >>> with make_executor("local") as executor:  # doctest: +SKIP
    ...     summary = run_plan(plan, out="reports/x", executor=executor)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesmith.cache import StageCache
from edgesmith.core.progress import ProgressEvent
from edgesmith.core.tables import BASELINE_RECIPE
from edgesmith.executor import Executor, Task, run_graph, task_progress
from edgesmith.plan import Plan


def build_stage(
    plan: Plan, cache_root: str, store: Any, method: str, args: tuple[Any, ...]
) -> str | None:
    """In a worker: build one entry with ``PlanRunner.<method>(*args)``; its error or None.

    The build's progress (training epochs, compression steps) goes back to the caller; the
    worker's own "stage: entry" messages do not: the caller said so when it sent the task.
    """
    from edgesmith.plan_runner import TASK, PlanRunner, _describe

    forward = task_progress()

    def progress(event: ProgressEvent) -> None:
        if forward is not None and event.task != TASK:
            forward(event)

    runner = PlanRunner(plan, StageCache(cache_root), store, progress)
    try:
        getattr(runner, method)(*args)
    except Exception as exc:
        return _describe(exc)  # described here, where the traceback is
    return None


def prefetch(runner: Any, executor: Executor) -> None:
    """Build every train, compress, evalset and convert entry of ``runner.plan`` on
    ``executor``; failures go to ``runner.failures`` for the serial pass to report."""
    graph = _PlanGraph(runner)
    run_graph(executor, graph.models(), progress=runner.progress)


class _PlanGraph:
    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.plan: Plan = runner.plan
        self.root = str(Path(runner.cache.root).resolve())

    def task(
        self, stage: str, key: str, label: str, method: str, args: tuple[Any, ...], then: Any
    ) -> Task | None:
        """A task building entry ``stage/key``; None when it is cached (``then`` runs now)."""
        if self.runner.cache.has(stage, key):
            return None
        self.runner.on_stage(f"{stage}: {label}")
        self.runner.computed[stage] = self.runner.computed.get(stage, 0) + 1

        def done(error: str | None, exc: BaseException | None) -> list[Task]:
            message = error or (None if exc is None else f"{type(exc).__name__}: {exc}")
            if message:
                self.runner.failures[stage, key] = message
                return []
            return then()

        args = (self.plan, self.root, self.runner.store_arg, method, args)
        return Task(build_stage, args, then=done, label=label, priority=_priority(stage, args))

    def _now_or_later(self, task: Task | None, then: Any) -> list[Task]:
        return [task] if task is not None else then()

    def models(self) -> list[Task]:
        tasks: list[Task] = []
        for name in self.plan.models:
            if self.plan.source_of(name).file is not None:
                task = self.task(
                    "import",
                    self.runner.import_key(name),
                    name,
                    "train",
                    (name,),
                    lambda name=name: self.recipes(name),
                )
            elif not self.runner.store.has(name):
                # A zoo model trains into the store, not the stage cache.
                self.runner.on_stage(f"train: {name}")
                self.runner.computed["train"] = self.runner.computed.get("train", 0) + 1
                args = (self.plan, self.root, self.runner.store_arg, "train", (name,))
                task = Task(
                    build_stage,
                    args,
                    then=lambda e, x, n=name: self.trained(n, e or x),
                    label=name,
                    priority=STAGE_PRIORITY["train"],
                )
            else:
                task = None
            tasks += self._now_or_later(task, lambda name=name: self.recipes(name))
        return tasks

    def trained(self, name: str, failed: Any) -> list[Task]:
        # A failed training is not retried here: the serial pass meets it and records it.
        return [] if failed else self.recipes(name)

    def recipes(self, name: str) -> list[Task]:
        try:
            parent = self.runner.train(name)  # built by now: reads the card
        except Exception:
            return []  # the serial pass trains it again and records why it fails
        tasks: list[Task] = []
        for recipe_name in self.plan.recipes:
            recipe = self.plan.recipe_for(recipe_name, name)
            try:
                model = self.runner.variant(parent, recipe_name, recipe)
            except Exception:
                continue  # a recipe that does not parse: the serial pass reports it
            if recipe_name == BASELINE_RECIPE or model is parent:
                tasks += self.targets(model)
                continue
            task = self.task(
                "compress",
                model.key,
                f"{name} {recipe_name}",
                "compress",
                (parent, recipe_name, recipe),
                lambda m=model: self.targets(m),
            )
            tasks += self._now_or_later(task, lambda m=model: self.targets(m))
        return tasks

    def targets(self, model: Any) -> list[Task]:
        tasks = []
        label = f"{model.name} {model.recipe}"
        evalset = self.task(
            "evalset", self.runner.evalset_key(model), label, "evalset", (model,), list
        )
        tasks += [evalset] if evalset else []
        for target in self.plan.targets_for(model.recipe):
            key = self.runner.convert_key(model, target)
            task = self.task("convert", key, f"{label} {target}", "convert", (model, target), list)
            tasks += [task] if task else []
        return tasks


# Which ready task starts first (see Task.priority): the stages that train before those that
# convert, and a conversion that measures candidates (auto) before a plain one.
STAGE_PRIORITY = {"train": 4.0, "import": 4.0, "compress": 3.0, "convert": 1.0, "evalset": 0.0}
AUTO_CONVERT_PRIORITY = 2.0


def _priority(stage: str, args: tuple[Any, ...]) -> float:
    if stage == "convert" and str(args[-1][-1]).endswith(":auto"):
        return AUTO_CONVERT_PRIORITY
    return STAGE_PRIORITY.get(stage, 0.0)
