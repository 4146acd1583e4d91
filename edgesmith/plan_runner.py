"""``edgesmith run``: a plan of models x recipes x targets x backends, end to end.

Stages: ``train`` (the zoo store) -> ``compress`` (one folder per recipe) -> ``convert``
(one file per format and quant) -> ``evalset`` (the test split as the file consumes it)
-> ``bench`` (one record per backend, measured in a child process). Each stage's output
lives in the stage cache under a key derived from its config and the keys of its
inputs, so a re-run recomputes nothing that is done and a changed recipe recomputes
only what depends on it. A failing variant is recorded with its error; the others go on.
With an ``executor`` (:mod:`edgesmith.executor`: worker processes or Ray) the entries
that do not depend on each other are built in parallel first
(:func:`edgesmith.executor_plan.prefetch`); the records then come from the same serial
pass over the cache, so they are those of a serial run. Benchmarks always run one at a
time: a latency measured next to a training process would measure the contention.

Example:
    >>> from edgesmith.plan import Plan
    >>> plan = Plan.from_dict({"models": ["cnn-digits"], "targets": ["tflite:int8"]})
    >>> summary = run_plan(plan, out="reports/quick")  # doctest: +SKIP
    >>> summary.failed  # doctest: +SKIP
    0
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesmith.cache import StageCache
from edgesmith.core.errors import EdgesmithError
from edgesmith.core.fileio import read_json, write_json
from edgesmith.core.progress import Progress, ProgressEvent, as_progress
from edgesmith.core.records import ResultRecord
from edgesmith.core.tables import BASELINE_RECIPE
from edgesmith.devices.device_spec import DeviceSpec
from edgesmith.plan import Plan, Target
from edgesmith.report_model import (
    ACCELERATOR_TARGETS,
    analysis_note,
    measured_compatibility,
    offline_compatibility,
)

RECORD_FILE = "record.json"
TASK = "edgesmith run"  # the task name of the runner's stage messages


@dataclass
class RunSummary:
    """What a run produced: the records (one per variant x backend) and where the report is."""

    records: list[ResultRecord]
    report: dict[str, Path] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)  # stage -> entries built this run

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if r.error)


@dataclass(frozen=True)
class _Model:
    """A model folder ready to convert: the zoo model itself or a compressed variant."""

    name: str
    recipe: str
    folder: Path
    key: str


def run_plan(
    plan: Plan,
    *,
    out: str | os.PathLike[str],
    store: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    executor: Any = None,
) -> RunSummary:
    """Run every variant of ``plan`` and write the report into ``out``.

    ``progress`` receives a message for each stage entry that is computed (not cached)
    and the training progress of the zoo and compress stages (a worker's events arrive
    live, named after its task); without it nothing is shown. ``executor``
    (:func:`edgesmith.executor.make_executor`) builds independent entries in parallel;
    None runs everything here, one entry at a time.
    """
    from edgesmith.report import write_report

    out = Path(out)
    cache = StageCache(out / "stages")
    runner = PlanRunner(plan, cache, store, progress)
    with cache.exclusive():
        if executor is not None and executor.parallel:
            from edgesmith.executor_plan import prefetch

            prefetch(runner, executor)
        records = list(runner.records())
        write_json(out / "plan.json", plan.to_dict())
        report = write_report(records, out, title=f"{plan.name}: accuracy vs size vs latency")
    return RunSummary(records, report, runner.computed)


class PlanRunner:
    def __init__(
        self, plan: Plan, cache: StageCache, store: Any, progress: Progress | None = None
    ) -> None:
        from edgesmith.zoo.store import ModelStore

        self.plan = plan
        self.cache = cache
        self.store_arg = store  # what a worker process opens the same store with
        self.store = ModelStore(store)
        self.progress = progress
        self.computed: dict[str, int] = {}
        self.remotes: dict[str, Any] = {}  # device name -> RemoteDevice, checked once
        self.device_faults: dict[str, str] = {}  # device name -> why it cannot be used
        # (stage, key) -> the error a worker met building that entry: not built again here.
        self.failures: dict[tuple[str, str], str] = {}

    def on_stage(self, text: str) -> None:
        """Say that a stage entry is being computed."""
        as_progress(self.progress)(ProgressEvent(TASK, text))

    # -- stages -------------------------------------------------------------------------

    def _build(self, stage: str, key: str, label: str, produce: Callable[[Path], Any]) -> Path:
        if (stage, key) in self.failures:
            raise BuildFailed(self.failures[stage, key])
        if not self.cache.has(stage, key):
            self.on_stage(f"{stage}: {label}")
            self.computed[stage] = self.computed.get(stage, 0) + 1
        return self.cache.build(stage, key, produce)

    def train(self, name: str) -> _Model:
        if self.plan.source_of(name).file is not None:
            return self.import_model(name)
        from edgesmith.zoo.train import train_zoo_model

        if not self.store.has(name):
            self.on_stage(f"train: {name}")
            self.computed["train"] = self.computed.get("train", 0) + 1
        card = train_zoo_model(
            name, data_dir=self.plan.data_dir, store=self.store, progress=self.progress
        )
        # Retraining a zoo model changes its card, so everything downstream is rebuilt.
        key = StageCache.key("train", card.to_dict())
        return _Model(name, BASELINE_RECIPE, self.store.path(name), key)

    def import_key(self, name: str) -> str:
        """The cache key of a model of the user's: the content hashes of its files."""
        from edgesmith.zoo.user_model import content_hash

        source = self.plan.source_of(name)
        assert source.file is not None and source.data is not None
        config = {
            "name": name,
            "file": content_hash(source.file),
            "data": content_hash(source.data) if Path(source.data).exists() else source.data,
            "image_scale": source.image_scale,
            "custom_objects": content_hash(source.custom_objects)
            if source.custom_objects
            else None,
        }
        return StageCache.key("import", config)

    def import_model(self, name: str) -> _Model:
        """A model of the user's as a model folder, keyed by the content of its files."""
        from edgesmith.zoo.user_model import import_model

        source = self.plan.source_of(name)
        key = self.import_key(name)
        folder = self._build(
            "import",
            key,
            f"{name} ({source.file})",
            lambda tmp: import_model(
                source.file,
                out=tmp / "model",
                name=name,
                data=source.data,
                data_dir=self.plan.data_dir,
                trust=source.trust,
                custom_objects=source.custom_objects,
                image_scale=source.image_scale,
            ),
        )
        return _Model(name, BASELINE_RECIPE, folder / "model", key)

    def variant(self, parent: _Model, recipe_name: str, recipe: str) -> _Model:
        """The model ``recipe`` makes of ``parent``, where its entry is (or will be)."""
        if recipe_name == BASELINE_RECIPE or not recipe.strip():
            return parent
        from edgesmith.compress.recipe import parse_recipe

        steps = parse_recipe(recipe).to_dict()
        key = StageCache.key("compress", steps, upstream=[parent.key])
        return _Model(parent.name, recipe_name, self.cache.path("compress", key) / "model", key)

    def compress(self, parent: _Model, recipe_name: str, recipe: str) -> _Model:
        model = self.variant(parent, recipe_name, recipe)
        if model is parent:
            return parent
        from edgesmith.compress.recipe_runner import compress_model

        key = model.key
        folder = self._build(
            "compress",
            key,
            f"{parent.name} {recipe_name}",
            lambda tmp: compress_model(
                parent.folder,
                recipe,
                out=tmp / "model",
                data_dir=self.plan.data_dir,
                progress=self.progress,
            ),
        )
        return _Model(parent.name, recipe_name, folder / "model", key)

    def _conversion(self, target: Target) -> Any:
        from edgesmith.convert.config import ConversionConfig

        return ConversionConfig(
            format=target.format,
            quant=target.quant,
            calibration_samples=self.plan.calibration_samples,
            eval_samples=self.plan.parity_samples,
        )

    def convert_key(self, model: _Model, target: Target) -> str:
        return StageCache.key("convert", self._conversion(target).to_dict(), upstream=[model.key])

    def convert(self, model: _Model, target: Target) -> tuple[Path, str]:
        from edgesmith.convert.converter import convert_model

        config = self._conversion(target)
        suffix = ".tflite" if target.format == "tflite" else ".onnx"
        key = self.convert_key(model, target)

        def produce(tmp: Path) -> None:
            file = tmp / f"model{suffix}"
            try:
                result = convert_model(
                    model.folder,
                    out=file,
                    config=config,
                    data_dir=self.plan.data_dir,
                    json_out=tmp / RECORD_FILE,
                )
                record = result.record
            except EdgesmithError as exc:
                # A parity failure is a measured result: keep its record with the error.
                if not (tmp / RECORD_FILE).is_file():
                    raise
                record = ResultRecord.from_dict(read_json(tmp / RECORD_FILE))
                record = record.updated(error=str(exc))
            write_json(tmp / RECORD_FILE, _relocated(record, tmp, Path(".")).to_dict())

        folder = self._build("convert", key, f"{model.name} {model.recipe} {target}", produce)
        return folder, key

    def converted_record(self, folder: Path) -> ResultRecord:
        """The conversion record with its paths pointing into the finished cache entry."""
        return _relocated(
            ResultRecord.from_dict(read_json(folder / RECORD_FILE)), Path("."), folder
        )

    def evalset_key(self, model: _Model, split: str = "test") -> str:
        return StageCache.key("evalset", {"split": split}, upstream=[model.key])

    def evalset(self, model: _Model, split: str = "test") -> Path:
        """The ``split`` (``test``; ``val`` for searches) as the model eats it, as .npz."""
        from edgesmith.zoo.evaluate import export_eval

        folder = self._build(
            "evalset",
            self.evalset_key(model, split),
            f"{model.name} {model.recipe}" + ("" if split == "test" else f" ({split})"),
            lambda tmp: export_eval(
                model.folder, out=tmp / f"{split}.npz", data_dir=self.plan.data_dir, split=split
            ),
        )
        return folder / f"{split}.npz"

    def bench_key(
        self, convert_key: str, backend: str, device: DeviceSpec, split: str = "test", ref: str = ""
    ) -> str:
        settings = {"backend": backend, **self.plan.bench.__dict__}
        # Settings added later enter the key only when they change what is measured, so
        # earlier entries stay valid: a profile, and the float32 file a pair is timed with.
        if settings.pop("profile"):
            settings["profile"] = True
        del settings["paired"]
        upstream = [convert_key, ref] if ref else [convert_key]
        settings["device"] = device.cache_identity()
        if split != "test":  # the test split's keys stay those of earlier versions
            settings["split"] = split
        return StageCache.key("bench", settings, upstream=upstream)

    def bench(
        self,
        converted: Path,
        convert_key: str,
        backend: str,
        evalset: Path,
        device: DeviceSpec | None = None,
        split: str = "test",
        reference: tuple[Path, str] | None = None,
    ) -> ResultRecord:
        """One file on one backend, timed interleaved with ``reference`` (a convert entry, key)."""
        from edgesmith.devices import bench_on

        device = device or DeviceSpec()
        key = self.bench_key(convert_key, backend, device, split, reference[1] if reference else "")
        file = _model_file(converted)

        def produce(tmp: Path) -> None:
            settings = {
                "eval_set": evalset,
                "runs": self.plan.bench.runs,
                "warmup": self.plan.bench.warmup,
                "threads": self.plan.bench.threads,
            }
            if self.plan.bench.profile:
                settings["profile"] = True
            if reference is not None:
                settings["reference"] = _model_file(reference[0])
            if device.is_local:
                records = bench_on(device, file, [backend], **settings)
            else:
                records = self.remote(device).bench(file, [backend], **settings)
            write_json(tmp / RECORD_FILE, records[0].to_dict())

        where = "" if device.is_local else f" ({device.name})"
        folder = self._build("bench", key, f"{file.parent.name} on {backend}{where}", produce)
        return ResultRecord.from_dict(read_json(folder / RECORD_FILE))

    # -- devices ------------------------------------------------------------------------

    def remote(self, device: DeviceSpec) -> Any:
        """The checked RemoteDevice for ``device``; a device that failed its check fails
        again at once (with the same one-line reason) instead of being retried per variant."""
        from edgesmith.core.errors import DeviceError
        from edgesmith.devices.remote_bench import RemoteDevice

        if device.name in self.device_faults:
            raise DeviceError(self.device_faults[device.name])
        if device.name not in self.remotes:
            remote = RemoteDevice(device)
            try:
                remote.check()
            except Exception as exc:
                self.device_faults[device.name] = _describe(exc)
                raise
            self.remotes[device.name] = remote
        return self.remotes[device.name]

    def device_unavailable(self, backend: str, device: DeviceSpec) -> str | None:
        """Why ``backend`` cannot run on ``device`` (None: it can, or only a bench can tell)."""
        if device.is_local:
            return _unavailable(backend)
        info = self.remote(device).info()
        return (info.get("missing") or {}).get(backend.split(":", 1)[0])

    def device_stub(self, device: DeviceSpec) -> dict[str, Any]:
        """A record's ``device`` where nothing was measured (a failure, a missing backend)."""
        from edgesmith.devices.probe import DESCRIPTION_KEYS, local_description

        if device.is_local:
            return local_description()
        remote = self.remotes.get(device.name)
        if remote is not None:
            return remote.description()
        return {**dict.fromkeys(DESCRIPTION_KEYS), "name": device.name, "ssh": device.ssh}

    def measure(
        self,
        converted: ResultRecord,
        folder: Path,
        key: str,
        backend: str,
        evalset: Path,
        device: DeviceSpec,
        split: str = "test",
        reference: tuple[Path, str] | None = None,
    ) -> ResultRecord:
        """One variant x backend on one device: its record, a note, or its error."""
        ref = reference[1] if reference else ""
        cached = not device.is_local and self.cache.has(
            "bench", self.bench_key(key, backend, device, split, ref)
        )
        try:
            reason = None if cached else self.device_unavailable(backend, device)
        except Exception as exc:  # the device cannot be reached or used: its records say why
            return converted.updated(
                backend=backend, device=self.device_stub(device), error=_describe(exc)
            )
        if reason:
            # Not a failed variant: the device lacks the backend. Say so, and give the
            # offline compatibility analysis where there is one.
            here = "here" if device.is_local else f"on {device.name}"
            notes = [f"{backend} not available {here}: {reason}"]
            compat = dict(converted.compatibility)
            try:
                compat.update(self.offline_analysis(folder, key, backend, notes))
            except Exception as exc:
                notes.append(f"offline analysis failed: {_describe(exc)}")
            return converted.updated(
                backend=backend,
                device=self.device_stub(device),
                compatibility=compat,
                notes=[*converted.notes, *notes],
            )
        try:
            measured = self.bench(folder, key, backend, evalset, device, split, reference)
        except Exception as exc:
            return converted.updated(
                backend=backend, device=self.device_stub(device), error=_describe(exc)
            )
        return _merge(converted, measured)

    def offline_analysis(
        self, converted: Path, convert_key: str, backend: str, notes: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The predicted ``compatibility`` with an accelerator that is not here; what the
        analysis says beyond it (the Edge TPU's parameter cache) is appended to ``notes``."""
        target = ACCELERATOR_TARGETS.get(backend.split(":", 1)[0])
        file = _model_file(converted)
        if target is None or file.suffix != ".tflite":
            return {}
        from edgesmith.convert.analyze import analyze

        key = StageCache.key("analyze", {"target": target}, upstream=[convert_key])
        folder = self._build(
            "analyze",
            key,
            f"{file.parent.name} for {target}",
            lambda tmp: write_json(tmp / "analysis.json", analyze(file, target)),
        )
        report = read_json(folder / "analysis.json")
        note = analysis_note(report)
        notes += [note] if note else []
        return {target: offline_compatibility(report)}

    def reference(self, parent: _Model, model: _Model, target: Target) -> tuple[Path, str] | None:
        """The float32 convert entry of ``parent`` that ``model`` x ``target`` is timed beside."""
        if not self.plan.bench.paired or (model.key == parent.key and target.quant == "none"):
            return None
        try:
            folder, key = self.convert(parent, Target(target.format, "none"))
        except Exception:  # no float file to pair with: measured alone, the report says so
            return None
        return None if self.converted_record(folder).error else (folder, key)

    # -- the run ------------------------------------------------------------------------

    def records(self) -> Iterator[ResultRecord]:
        from edgesmith.runtime.backends import BACKENDS

        for name in self.plan.models:
            try:
                parent = self.train(name)
            except Exception as exc:  # one broken model must not stop the others
                yield ResultRecord(model=name, recipe=BASELINE_RECIPE, error=_describe(exc))
                continue
            for recipe_name in self.plan.recipes:
                recipe = self.plan.recipe_for(recipe_name, name)
                try:
                    model = self.compress(parent, recipe_name, recipe)
                    evalset = self.evalset(model)
                except Exception as exc:
                    yield ResultRecord(model=name, recipe=recipe_name, error=_describe(exc))
                    continue
                for target in self.plan.targets_for(recipe_name):
                    base = ResultRecord(
                        model=name, recipe=recipe_name, format=target.format, quant=target.quant
                    )
                    try:
                        folder, key = self.convert(model, target)
                        converted = self.converted_record(folder)
                    except Exception as exc:
                        yield base.updated(error=_describe(exc))
                        continue
                    converted = converted.updated(recipe=recipe_name, model=name)
                    if converted.error:
                        yield converted
                        continue
                    backends = [b for b in self.plan.backends if _runs(BACKENDS, b, target.format)]
                    if not backends:
                        yield converted.updated(notes=[*converted.notes, "no backend runs it"])
                    pair = self.reference(parent, model, target) if backends else None
                    for backend in backends:
                        for device in self.plan.devices:
                            yield self.measure(
                                converted, folder, key, backend, evalset, device, reference=pair
                            )


def _model_file(converted: Path) -> Path:
    """The .tflite or .onnx file inside a finished convert entry."""
    return next(p for p in converted.iterdir() if p.suffix in (".tflite", ".onnx"))


def _unavailable(backend: str) -> str | None:
    from edgesmith.runtime.backends import missing, parse_backend

    name, argument = parse_backend(backend)
    return missing(name, argument)


def _runs(backends: dict[str, Any], backend: str, fmt: str) -> bool:
    name = backend.split(":", 1)[0]
    if name == "external":
        return fmt == "tflite"
    return name in backends and backends[name].format == fmt


def _relocated(record: ResultRecord, old: Path, new: Path) -> ResultRecord:
    """``record`` with file paths under ``old`` moved under ``new``.

    Entries are built in a temporary folder and renamed, so records store paths relative
    to their entry and get absolute ones when read back.
    """

    def move(path: str | None) -> str | None:
        if not path:
            return path
        p = Path(path)
        try:
            return str(new / p.relative_to(old)) if p.is_absolute() == old.is_absolute() else path
        except ValueError:
            return path

    steps = [
        {**step, "file": move(step["file"])} if "file" in step else step for step in record.steps
    ]
    return record.updated(file=move(record.file), steps=steps)


def _merge(converted: ResultRecord, measured: ResultRecord) -> ResultRecord:
    """The conversion record plus what the backend measured (its accuracy wins: it ran there)."""
    return converted.updated(
        backend=measured.backend,
        threads=measured.threads,
        accuracy=measured.accuracy if measured.accuracy is not None else converted.accuracy,
        samples=measured.samples if measured.samples is not None else converted.samples,
        latency_ms=measured.latency_ms,
        throughput_per_s=measured.throughput_per_s,
        peak_rss_mb=measured.peak_rss_mb,
        fully_accelerated=measured.fully_accelerated,
        compatibility=_measured_compatibility(converted, measured),
        device=measured.device,
        correct=measured.correct if measured.correct is not None else converted.correct,
        op_profile=measured.op_profile,
        op_profile_by_type=measured.op_profile_by_type,
        op_profile_calibration=measured.op_profile_calibration,
        paired=measured.paired,
        environment={**converted.environment, **measured.environment},
        notes=[*converted.notes, *measured.notes],
        error=measured.error,
    )


def _measured_compatibility(converted: ResultRecord, measured: ResultRecord) -> dict[str, Any]:
    """The record's ``compatibility`` once an accelerator ran it: what that bench measured."""
    target = ACCELERATOR_TARGETS.get((measured.backend or "").split(":", 1)[0])
    if target is None or measured.fully_accelerated is None or measured.error is not None:
        return converted.compatibility
    return {**converted.compatibility, target: measured_compatibility(measured.fully_accelerated)}


class BuildFailed(Exception):
    """A stage entry whose build already failed in a worker; ``str`` is that failure."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (EdgesmithError, BuildFailed)):
        return str(exc)
    # An unexpected failure: keep the innermost frame so the record says where it broke.
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def records_from_jsonl(path: str | os.PathLike[str]) -> list[ResultRecord]:
    """Read ``results.jsonl`` back into records."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ResultRecord.from_dict(json.loads(line)) for line in lines if line.strip()]
