"""``edgesmith tune``: the smallest or fastest variant of a model within an accuracy budget.

Optuna searches the space of :mod:`edgesmith.tune_space` (compression steps, their
parameters, conversion targets) with a multi-objective sampler over validation accuracy,
file size and latency. Each trial's stages go through the plan runner's stage cache
(:mod:`edgesmith.tune_trial`), several trials at a time on the executor's workers; the
benchmarks run one at a time, between batches, so no latency is measured next to a
training. A trial whose fine-tuning falls below the budget stops early (pruned). The study
lives in ``DIR/study.db`` (SQLite): a killed tune resumes where it stopped, and a larger
``trials`` extends it.

Accuracy is the validation split's during the search; only the Pareto front is measured
on the test split, after the search, so the test set never selects the winner.

Example:
    >>> result = run_tune(TuneConfig("cnn-digits", budget=1.0, trials=20, out="tune/cnn"))  # doctest: +SKIP
    >>> result["recommended"]["recipe"]  # doctest: +SKIP
    'prune:sparsity=0.85,structure=unstructured'
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError
from edgesmith.core.fileio import write_json
from edgesmith.core.progress import Progress, ProgressEvent, as_progress
from edgesmith.core.tables import BASELINE_RECIPE
from edgesmith.tune_trial import TrialJob, best_within, measure_trial, pareto_front, trial_stages

STUDY_NAME = "edgesmith-tune"
OBJECTIVES = ("size", "latency")
TASK = "edgesmith tune"
DEFAULT_BACKENDS = {"tflite": "litert", "onnx": "onnxruntime"}
RESAMPLES = 5  # asks for a point not measured yet before a repeat runs (see ask_novel)


@dataclass(frozen=True)
class TuneConfig:
    """One search: the model, the budget (accuracy points below the float model) and more."""

    model: str
    budget: float
    out: str | os.PathLike[str]
    objective: str = "size"
    data: str | None = None
    image_scale: float | None = None  # as --image-scale everywhere: pixels 0-255 times this
    backend: str | None = None  # None: litert for .tflite, onnxruntime for .onnx
    trials: int = 40
    seconds: float | None = None  # stop starting trials after this long
    space: str | os.PathLike[str] | None = None  # a search-space file
    data_dir: str | None = None
    store: str | None = None
    sampler: str = "tpe"  # tpe or nsga2
    seed: int = 0
    bench_runs: int = 30
    calibration_samples: int = 200
    parity_samples: int = 100

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective {self.objective}", expected="size or latency")
        if not 0 <= self.budget <= 100:
            raise ConfigError(f"--budget {self.budget}", expected="accuracy points, 0 to 100")
        if self.trials < 1:
            raise ConfigError(f"--trials {self.trials}", expected="at least 1")
        if self.sampler not in ("tpe", "nsga2"):
            raise ConfigError(f"--sampler {self.sampler}", expected="tpe or nsga2")


def run_tune(
    config: TuneConfig, *, executor: Any = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Search, then write ``tune.json``, the recommended file and the report to ``config.out``.

    Returns what ``tune.json`` holds: ``front`` and ``recommended`` (test-split accuracy),
    the reference accuracies and the trial counts.
    """
    from edgesmith.cache import StageCache
    from edgesmith.executor import SerialExecutor
    from edgesmith.plan_runner import PlanRunner

    config.check()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    report = as_progress(progress)
    executor = executor or SerialExecutor()
    cache = StageCache(out / "stages")
    with cache.exclusive():
        plan = _plan(config)
        runner = PlanRunner(plan, cache, config.store, progress)
        search = _Search(config, plan, runner, executor, report)
        search.reference()
        study = search.open_study()
        search.run(study)
        result = search.finish(study)
    return result


def _plan(config: TuneConfig) -> Any:
    from edgesmith.plan import Plan
    from edgesmith.zoo.registry import model_names

    if config.model in model_names():
        if config.data:
            raise ConfigError(
                f"{config.model} with --data {config.data}",
                expected="a zoo model on its own data set, or a model file with --data",
                fix="drop --data, or give the model's file",
            )
        models: Any = [config.model]
    else:
        if not config.data:
            raise ConfigError(
                f"{config.model}: a model of your own needs --data",
                expected="--data PATH (.npz, image folder or zoo set name)",
            )
        name = Path(config.model).stem or "model"
        source = {"file": str(Path(config.model).resolve()), "data": config.data}
        if config.image_scale is not None:
            source["image_scale"] = config.image_scale
        models = {name: source}
    backends = [config.backend] if config.backend else list(DEFAULT_BACKENDS.values())
    return Plan.from_dict(
        {
            "models": models,
            "targets": ["tflite:none"],  # each trial brings its own target
            "backends": backends,
            "bench": {"runs": config.bench_runs, "warmup": 3},
            "data_dir": config.data_dir,
            "calibration_samples": config.calibration_samples,
            "parity_samples": config.parity_samples,
            "name": f"tune {config.model}",
        }
    )


class _Search:
    def __init__(self, config: TuneConfig, plan: Any, runner: Any, executor: Any, report: Any):
        self.config, self.plan, self.runner = config, plan, runner
        self.executor, self.report = executor, report
        self.out = Path(config.out)
        self.root = str((self.out / "stages").resolve())
        self.started = time.monotonic()
        self.floor: float | None = None
        self.stop_below: float | None = None
        self.space: Any = None

    def job(self, recipe: str, target: str, *, floor: float | None = None) -> TrialJob:
        name = BASELINE_RECIPE if recipe in ("", BASELINE_RECIPE) else recipe
        text = "" if name == BASELINE_RECIPE else recipe
        plan = _with_backend(self.plan, target, self.config.backend)
        return TrialJob(
            plan,
            self.root,
            self.config.store,
            name,
            text,
            target,
            floor,
            self.space.warmup_epochs if self.space else 0,
        )

    def reference(self) -> None:
        """The float model's validation and test accuracy: the budget's reference."""
        from edgesmith.tune_space import space_for

        parent = self.runner.train(self.plan.models[0])
        family = _family(parent.folder)
        self.space = space_for(self.config.space, family)
        if self.config.backend:
            runs = {t for t in self.space.targets if _backend_runs(self.config.backend, t)}
            self.space.targets = [t for t in self.space.targets if t in runs]
            if not self.space.targets:
                raise ConfigError(
                    f"--backend {self.config.backend}: runs none of the space's targets",
                    expected="a backend for .tflite (litert) or .onnx (onnxruntime) targets",
                )
        target = next((t for t in self.space.targets if t.endswith(":none")), self.space.targets[0])
        self.report(ProgressEvent(TASK, f"reference: float model as {target}"))
        job = self.job(BASELINE_RECIPE, target)
        built = trial_stages(job)
        if "error" in built:
            raise ConfigError(f"{self.config.model}: the float model failed: {built['error']}")
        val = measure_trial(self.runner, job, built, "val")
        test = _test_record(self.runner, job)
        if val.error or val.accuracy is None:
            raise ConfigError(f"{self.config.model}: cannot measure the float model: {val.error}")
        self.reference_accuracy = {"validation": val.accuracy, "test": test.accuracy}
        self.floor = val.accuracy - self.config.budget / 100.0
        # The pruner stops a trial only this far below the budget (see tune_space's pruner).
        self.stop_below = self.floor - self.space.slack_pt / 100.0

    def open_study(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # library code never prints
        storage = f"sqlite:///{(self.out / 'study.db').resolve()}"

        def constraints(trial: Any) -> list[float]:
            return trial.user_attrs.get("constraint", [0.0])

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's "experimental feature" warnings
            if self.config.sampler == "nsga2":
                sampler: Any = optuna.samplers.NSGAIISampler(
                    population_size=max(4, min(20, self.config.trials // 3)),
                    seed=self.config.seed,
                    constraints_func=constraints,
                )
            else:
                sampler = optuna.samplers.TPESampler(
                    seed=self.config.seed,
                    multivariate=True,
                    group=True,
                    constant_liar=True,
                    n_startup_trials=max(2, min(10, self.config.trials // 4)),
                    constraints_func=constraints,
                )
            study = optuna.create_study(
                study_name=STUDY_NAME,
                storage=storage,
                sampler=sampler,
                directions=["maximize", "minimize", "minimize"],
                load_if_exists=True,
            )
        known = study.user_attrs.get("model")
        if known is not None and known != self.config.model:
            raise ConfigError(
                f"{self.out}: its study searched {known}, not {self.config.model}",
                fix="choose another --out for another model",
            )
        study.set_user_attr("model", self.config.model)
        # A killed tune left trials running: close them and run their parameters again.
        for trial in study.get_trials(deepcopy=False):
            if trial.state == optuna.trial.TrialState.RUNNING:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
                study.enqueue_trial(trial.params)
        return study

    def finished(self, study: Any) -> int:
        import optuna

        states = optuna.trial.TrialState
        return sum(
            1
            for t in study.get_trials(deepcopy=False)
            if "repeat_of" not in t.user_attrs
            and (
                t.state in (states.COMPLETE, states.PRUNED)
                or (t.state == states.FAIL and "error" in t.user_attrs)
            )
        )

    def run(self, study: Any) -> None:
        from edgesmith.executor import Task, run_graph

        while True:
            left = self.config.trials - self.finished(study)
            if left <= 0 or self.out_of_time():
                return
            batch: list[tuple[Any, TrialJob]] = []
            for _ in range(min(left, max(1, self.executor.workers))):
                trial, job = self.ask_novel(study, {(j.recipe_name, j.target) for _, j in batch})
                batch.append((trial, job))
                self.report(
                    ProgressEvent(TASK, f"trial {trial.number}: {job.recipe_name} -> {job.target}")
                )
            built = run_graph(
                self.executor,
                [
                    Task(_numbered, (i, j), label=f"trial {t.number}")
                    for i, (t, j) in enumerate(batch)
                ],
                progress=self.report,
            )
            by_index = dict(built)
            for index, (trial, job) in enumerate(batch):  # benchmarks one at a time
                self.tell(study, trial, job, by_index[index])

    def ask_novel(self, study: Any, in_batch: set[tuple[str, str]]) -> tuple[Any, TrialJob]:
        """A trial whose recipe and target no finished trial has measured yet.

        Once TPE has found a good point it proposes it again and again. Such a repeat is
        told the earlier trial's numbers at once (nothing runs; ``repeat_of`` marks it and
        it does not count towards ``trials``) and the sampler is asked again; after
        :data:`RESAMPLES` repeats in a row the last one runs (its stages are cached).
        """
        import optuna

        states = optuna.trial.TrialState
        seen = {
            (t.user_attrs.get("recipe"), t.user_attrs.get("target")): t
            for t in study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))
            if "repeat_of" not in t.user_attrs
        }
        for attempt in range(RESAMPLES):
            trial = study.ask()
            params = self.space.sample(trial)
            job = self.job(self.space.recipe(params), params["target"], floor=self.stop_below)
            key = (job.recipe_name, job.target)
            earlier = seen.get(key)
            if earlier is None or key in in_batch or attempt == RESAMPLES - 1:
                return trial, job
            for name, value in earlier.user_attrs.items():
                if name != "record":  # one record per measured variant in the report
                    trial.set_user_attr(name, value)
            trial.set_user_attr("repeat_of", earlier.number)
            if earlier.state == states.PRUNED:
                study.tell(trial, state=states.PRUNED)
            else:
                study.tell(trial, earlier.values)
        raise AssertionError("unreachable: the last attempt returns")

    def out_of_time(self) -> bool:
        limit = self.config.seconds
        return limit is not None and time.monotonic() - self.started >= limit

    def tell(self, study: Any, trial: Any, job: TrialJob, built: dict[str, Any]) -> None:
        import optuna

        states = optuna.trial.TrialState
        trial.set_user_attr("recipe", job.recipe_name)
        trial.set_user_attr("target", job.target)
        trial.set_user_attr("val_accuracy_epochs", list(built.get("epochs", {}).values()))
        if built.get("pruned"):
            study.tell(trial, state=states.PRUNED)
            self.report(ProgressEvent(TASK, f"trial {trial.number}: pruned (out of budget)"))
            return
        record = None if "error" in built else measure_trial(self.runner, job, built, "val")
        error = built.get("error") or (record.error if record else None)
        if record is not None:
            trial.set_user_attr("record", record.to_dict())
        if error or record is None or record.accuracy is None or not record.latency_ms:
            trial.set_user_attr("error", error or "no accuracy or latency measured")
            study.tell(trial, state=states.FAIL)
            return
        values = [record.accuracy, float(record.size_bytes), float(record.latency_ms["p50"])]
        trial.set_user_attr("constraint", [float(self.floor - record.accuracy)])
        study.tell(trial, values)
        self.report(
            ProgressEvent(
                TASK,
                f"trial {trial.number}: accuracy {values[0]:.4f}, "
                f"{int(values[1]):,} bytes, {values[2]:.3f} ms",
            )
        )

    def finish(self, study: Any) -> dict[str, Any]:
        """The front (confirmed on test), the recommended variant, tune.json and the report."""
        import optuna

        from edgesmith.core.records import ResultRecord
        from edgesmith.report import write_report

        trials = study.get_trials(deepcopy=False)
        rows, records = [], []
        for trial in trials:
            if "record" not in trial.user_attrs:
                continue
            record = ResultRecord.from_dict(trial.user_attrs["record"])
            records.append(
                record.updated(
                    notes=[*record.notes, f"trial {trial.number}; accuracy on the validation split"]
                )
            )
            if trial.state == optuna.trial.TrialState.COMPLETE:
                acc, size, latency = trial.values
                if acc >= self.floor - 1e-12:
                    rows.append(
                        {
                            "recipe": trial.user_attrs["recipe"],
                            "target": trial.user_attrs["target"],
                            "accuracy": acc,
                            "size_bytes": int(size),
                            "latency_ms": latency,
                        }
                    )
        unique = {(r["recipe"], r["target"]): r for r in rows}
        front = pareto_front(list(unique.values()))
        choice = best_within(front, self.config.objective)
        confirmed = []
        for row in sorted(front, key=lambda r: (r["size_bytes"], r["latency_ms"])):
            record = _test_record(self.runner, self.job(row["recipe"], row["target"]))
            records.append(
                record.updated(notes=[*record.notes, "Pareto front, confirmed on the test split"])
            )
            confirmed.append((row, record))
        front_out = [_row(record, row) for row, record in confirmed]
        recommended = None
        for row, record in confirmed:
            if row is choice:
                recommended = {
                    **_row(record, row),
                    "file": _copy(record.file, self.out),
                    "validation_accuracy": row["accuracy"],
                }
        measured = [t for t in trials if "repeat_of" not in t.user_attrs]
        counts = {
            s.name.lower(): sum(1 for t in measured if t.state == s)
            for s in optuna.trial.TrialState
        }
        counts["repeats"] = len(trials) - len(measured)  # told an earlier trial's numbers
        result = {
            "model": self.config.model,
            "objective": self.config.objective,
            "budget_points": self.config.budget,
            "reference_accuracy": self.reference_accuracy,
            "accuracy_split": "test (the search judged on the validation split; only the "
            "front was measured on the test split)",
            "trials": {k: v for k, v in counts.items() if v},
            "space": self.space.to_dict(),
            "seconds": round(time.monotonic() - self.started, 1),
            "front": front_out,
            "recommended": recommended,
        }
        write_json(self.out / "tune.json", result)
        title = (
            f"tune {self.config.model}: {len(records)} variants (trials on the validation "
            "split; the Pareto front confirmed on the test split)"
        )
        result["report"] = {
            k: str(v) for k, v in write_report(records, self.out, title=title).items()
        }
        return result


def _numbered(index: int, job: TrialJob) -> tuple[int, dict[str, Any]]:
    return index, trial_stages(job)


def _test_record(runner: Any, job: TrialJob) -> Any:
    """The trial's variant benchmarked on the test split (its entries are cached)."""
    built = trial_stages(job)  # cached: the search built these entries
    parent = runner.train(job.plan.models[0])
    model = runner.variant(parent, job.recipe_name, job.recipe)
    built["evalset"] = str(runner.evalset(model, "test"))
    return measure_trial(runner, job, built, "test")


def _row(record: Any, row: dict[str, Any]) -> dict[str, Any]:
    latency = (record.latency_ms or {}).get("p50")
    return {
        "recipe": row["recipe"],
        "target": row["target"],
        "accuracy": record.accuracy,
        "size_bytes": record.size_bytes,
        "latency_ms": latency if latency is not None else row["latency_ms"],
    }


def _copy(file: str | None, out: Path) -> str | None:
    if not file:
        return None
    dest = out / f"recommended{Path(file).suffix}"
    shutil.copyfile(file, dest)
    return str(dest)


def _family(folder: Path) -> str | None:
    from edgesmith.core.fileio import read_json

    card = folder / "card.json"
    return read_json(card).get("family") if card.is_file() else None


def _backend_runs(backend: str, target: str) -> bool:
    from edgesmith.plan_runner import _runs
    from edgesmith.runtime.backends import BACKENDS

    return _runs(BACKENDS, backend, target.split(":", 1)[0])


def _with_backend(plan: Any, target: str, backend: str | None) -> Any:
    """The plan measuring ``target`` with ``backend`` or the default for its format."""
    from dataclasses import replace

    return replace(plan, backends=(backend or DEFAULT_BACKENDS[target.split(":", 1)[0]],))
