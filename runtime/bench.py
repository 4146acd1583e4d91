"""Benchmark one model file on one or more backends: latency, memory and accuracy. TF-free.

What one benchmark measures, in this order:

1. ``init``: loading and preparing the model on the backend (the library import is not
   counted: a real app pays it once per process);
2. ``first``: the first inference, which often pays lazy set-up (weight packing, shaders);
3. ``warmup`` untimed inferences, then ``runs`` timed ones (and more until ``min_time``
   seconds have passed, when given). Only the call that runs the model is timed, with
   ``time.perf_counter_ns``, inputs set once beforehand and the garbage collector paused,
   so the numbers are the model's and not edgesmith's;
4. with an eval set (``x``, ``y`` as ``edgesmith zoo export-eval`` writes them), accuracy at
   the model's batch size (1 unless the file fixes another) with inputs quantized and
   outputs dequantized by the tensors' own scale and zero point. Without one, inputs are
   random values of the right shapes and types (state inputs get zeros).

Memory is the process's resident set: before loading, after loading, after the runs, and
its peak. :func:`bench_file` runs each backend in a fresh child process by default, so each
peak belongs to one backend alone and a native crash cannot take the caller down.

Example:
    >>> from edgesmith.runtime.bench import benchmark
    >>> record = benchmark("cnn.tflite", "litert", threads=1, runs=50)  # doctest: +SKIP
    >>> record.latency_ms["p50"], record.peak_rss_mb  # doctest: +SKIP
    (0.012, 61.3)
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import (
    BackendUnavailableError,
    ConfigError,
    DataError,
    EdgesmithError,
    ModelFileError,
)
from edgesmith.core.records import ResultRecord
from edgesmith.core.tables import DEFAULT_RUNS, DEFAULT_WARMUP
from edgesmith.runtime.backends import (
    BACKENDS,
    available_backends,
    backend_label,
    missing,
    parse_backend,
)
from edgesmith.runtime.modelfile import ModelInfo, inspect_model
from edgesmith.runtime.runners import Runner, TensorSpec, is_state_input, open_runner, quantize
from edgesmith.runtime.sysinfo import environment, peak_rss_mb, rss_mb


@dataclass(frozen=True)
class EvalSet:
    """Labelled inputs for accuracy: ``arrays`` by input (``x``, or input names) and labels ``y``."""

    path: Path
    arrays: dict[str, np.ndarray]
    y: np.ndarray
    model: str | None = None
    split: str | None = None

    def __len__(self) -> int:
        return len(self.y)


def load_eval_set(path: str | os.PathLike[str]) -> EvalSet:
    """Read an eval set (.npz with ``x`` and ``y``, as ``edgesmith zoo export-eval`` writes).

    Example:
        >>> load_eval_set("/no/such.npz")
        Traceback (most recent call last):
        ...
        edgesmith.core.errors.DataError: /no/such.npz: file not found: expected an .npz eval set with arrays x and y; write one with: edgesmith zoo export-eval NAME --out FILE.npz
    """
    path = Path(path)
    expected = "an .npz eval set with arrays x and y"
    fix = "write one with: edgesmith zoo export-eval NAME --out FILE.npz"
    if not path.is_file():
        raise DataError(f"{path}: file not found", expected=expected, fix=fix)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # BadZipFile, ValueError (pickled objects), OSError
        raise DataError(
            f"{path}: not a readable .npz file ({exc})", expected=expected, fix=fix
        ) from None
    if "y" not in arrays or not any(
        k not in ("y", "class_names", "model", "split") for k in arrays
    ):
        raise DataError(f"{path}: has arrays {sorted(arrays)}", expected=expected, fix=fix)
    y = arrays.pop("y")
    meta = {k: arrays.pop(k) for k in ("class_names", "model", "split") if k in arrays}
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.reshape(len(y), -1) if y.ndim > 1 and y.shape[1:] != (1,) else y.reshape(-1)
    if y.dtype.kind not in "iub" or len(y) == 0:
        raise DataError(
            f"{path}: y holds {len(y)} {y.dtype} labels",
            expected="at least one integer class label per sample",
            fix=fix,
        )
    for key, x in arrays.items():
        if x.ndim == 0 or len(x) != len(y):
            raise DataError(
                f"{path}: {key} has {len(x) if x.ndim else 0} samples and y has {len(y)}",
                expected="one label per sample",
                fix=fix,
            )
    return EvalSet(
        path=path,
        arrays=arrays,
        y=y,
        model=str(meta["model"]) if "model" in meta else None,
        split=str(meta["split"]) if "split" in meta else None,
    )


def state_inputs(info: ModelInfo, names: Iterable[str] = ()) -> set[str]:
    """Inputs fed zeros: those named in ``names`` plus, with several inputs, state-like names."""
    names = set(names)
    unknown = names - {t.name for t in info.inputs}
    if unknown:
        raise ConfigError(
            f"--state {', '.join(sorted(unknown))}",
            expected="input names of the model: " + ", ".join(t.name for t in info.inputs),
        )
    if len(info.inputs) > 1:
        names |= {t.name for t in info.inputs if is_state_input(t.name)}
    return names


def match_eval_set(
    info: ModelInfo,
    evalset: EvalSet,
    state: set[str],
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> tuple[list[np.ndarray | None], dict[str, tuple[int, ...]]]:
    """The eval arrays in the model's input order (None: zeros) and the shapes they need.

    Raises :class:`ModelFileError` naming both files when the samples do not fit the model.
    """
    arrays: list[np.ndarray | None] = [None] * len(info.inputs)
    pool = dict(evalset.arrays)
    data = [i for i, t in enumerate(info.inputs) if t.name not in state]
    for i in data:
        if info.inputs[i].name in pool:
            arrays[i] = pool.pop(info.inputs[i].name)
    for i in data:
        if arrays[i] is None and "x" in pool:
            arrays[i] = pool.pop("x")
    fix = "export the eval set of the model this file came from: edgesmith zoo export-eval NAME --out FILE.npz"
    lacking = [info.inputs[i].name for i in data if arrays[i] is None]
    if lacking or not data:
        raise ModelFileError(
            f"{evalset.path}: no samples for input(s) {', '.join(lacking) or '(none)'} of {info.path}",
            expected="x for the model's data input, or one array named after each input",
            fix=fix,
        )
    needed: dict[str, tuple[int, ...]] = {}
    shapes = shapes or {}
    for i in data:
        tensor, x = info.inputs[i], arrays[i]
        signature, sample = tensor.shape_signature, tuple(x.shape[1:])
        fits = len(signature) == len(sample) + 1 and all(
            s < 0 or s == d for s, d in zip(signature[1:], sample, strict=True)
        )
        if not fits:
            shown = "(" + ", ".join("?" if d < 0 else str(d) for d in signature[1:]) + ")"
            raise ModelFileError(
                f"{info.path}: input {tensor.name!r} takes samples of shape {shown} but "
                f"{evalset.path.name} has samples of shape {sample}",
                expected="an eval set made for this model",
                fix=fix,
            )
        integer_input = np.dtype(tensor.dtype).kind in "iub" and tensor.scale is None
        if integer_input and x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
            raise ModelFileError(
                f"{info.path}: input {tensor.name!r} takes {tensor.dtype} values (token ids) but "
                f"{evalset.path.name} holds fractional {x.dtype} samples",
                expected="an eval set made for this model",
                fix=fix,
            )
        if tensor.dynamic and tensor.name not in shapes:
            batch = signature[0] if signature and signature[0] > 0 else 1
            needed[tensor.name] = (batch, *sample)
    return arrays, needed


def random_feeds(specs: Sequence[TensorSpec], state: set[str], seed: int = 0) -> list[np.ndarray]:
    """Inputs of the right shapes and types: random values, zeros for state inputs.

    Quantized inputs get integers over their whole range; other integer inputs (token ids)
    get 0 or 1, which every vocabulary has; floats are uniform in [-1, 1).
    """
    rng = np.random.default_rng(seed)
    feeds = []
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if spec.name in state:
            feeds.append(np.zeros(spec.shape, dtype))
        elif dtype.kind == "f":
            feeds.append(rng.uniform(-1.0, 1.0, spec.shape).astype(dtype))
        elif dtype.kind == "b":
            feeds.append(rng.integers(0, 2, spec.shape).astype(dtype))
        elif spec.quantized:
            info = np.iinfo(dtype)
            feeds.append(rng.integers(info.min, info.max, spec.shape, endpoint=True).astype(dtype))
        else:
            feeds.append(rng.integers(0, 2, spec.shape).astype(dtype))
    return feeds


def eval_feeds(runner: Runner, arrays: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """The first batch of the eval set in the model's dtypes (the timed runs' input)."""
    feeds = []
    for spec, x in zip(runner.inputs, arrays, strict=True):
        feed = np.zeros(spec.shape, np.dtype(spec.dtype))
        if x is not None:
            n = min(len(x), spec.shape[0] if spec.shape else 1)
            feed[:n] = quantize(x[:n], spec)
        feeds.append(feed)
    return feeds


def score(y: np.ndarray, outputs: np.ndarray) -> float:
    """Top-1 accuracy; a single output column is read as a probability (> 0.5 is class 1)."""
    from edgesmith.core.metrics import accuracy

    outputs = (
        outputs.reshape(len(y), *outputs.shape[1:])
        if outputs.ndim > 1
        else outputs.reshape(len(y), 1)
    )
    if outputs.shape[-1] == 1:
        return float(
            np.mean((outputs.reshape(len(y), -1)[:, 0] > 0.5).astype(np.int64) == y.reshape(-1))
        )
    return accuracy(y, outputs)


def timed_runs(invoke: Callable[[], object], runs: int, min_time: float = 0.0) -> list[int]:
    """Nanoseconds of each call of ``invoke``: at least ``runs`` calls and ``min_time`` seconds."""
    clock = time.perf_counter_ns
    times: list[int] = []
    append = times.append
    deadline = clock() + int(min_time * 1e9)
    collecting = gc.isenabled()
    gc.disable()  # a collection inside a timed call would be charged to the model
    try:
        while len(times) < runs or clock() < deadline:
            start = clock()
            invoke()
            append(clock() - start)
    finally:
        if collecting:
            gc.enable()
    return times


def latency_stats(times_ns: Sequence[int]) -> dict[str, float]:
    """mean, std, min, max, p50, p90, p99 in milliseconds of per-run times in nanoseconds."""
    ms = np.asarray(times_ns, np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "mean": float(ms.mean()),
        "std": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        "min": float(ms.min()),
        "max": float(ms.max()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
    }


def quant_label(info: ModelInfo) -> str | None:
    """int8 / uint8 / int16 for quantized inputs or outputs, float16 for float16 weights."""
    for tensor in (*info.inputs, *info.outputs):
        if tensor.scale is not None and tensor.dtype in ("int8", "uint8", "int16"):
            return tensor.dtype
    return "float16" if info.float16_weights else None


def _check_counts(runs: int, warmup: int, min_time: float, threads: int | None = None) -> None:
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads}", expected="1 or more")
    if runs < 1 and min_time <= 0:
        raise ConfigError(f"--runs {runs}", expected="1 or more (or --min-time SECONDS)")
    if runs < 0 or warmup < 0 or min_time < 0:
        raise ConfigError(
            f"--runs {runs} --warmup {warmup} --min-time {min_time}", expected="values of 0 or more"
        )


def benchmark(
    path: str | os.PathLike[str],
    backend: str = "auto",
    *,
    threads: int | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    min_time: float = 0.0,
    eval_set: str | os.PathLike[str] | EvalSet | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    state: Iterable[str] = (),
    seed: int = 0,
    log: str | os.PathLike[str] | None = None,
    **options: Any,
) -> ResultRecord:
    """Benchmark ``path`` on one backend in this process and return its :class:`ResultRecord`.

    ``options`` go to :func:`~edgesmith.runtime.runners.open_runner` (``xnnpack``,
    ``delegate_options``, ``providers``, ``swiftshader``, ``gpu_fp32``). The peak memory is
    this process's, so use :func:`bench_file` (a child process per backend) to compare
    backends. What native code writes to stderr meanwhile goes to ``log`` (default: a
    temporary file) and is read for GPU program errors, which set the record's ``error``.

    Example:
        >>> rec = benchmark("cnn.tflite", "litert", threads=1, eval_set="digits.npz")  # doctest: +SKIP
        >>> rec.accuracy, rec.samples  # doctest: +SKIP
        (0.974, 1797)
    """
    _check_counts(runs, warmup, min_time, threads)
    path = Path(path)
    info = inspect_model(path)
    evalset = (
        eval_set if isinstance(eval_set, EvalSet) or eval_set is None else load_eval_set(eval_set)
    )
    zeros = state_inputs(info, state)
    all_shapes = dict(shapes or {})
    arrays = None
    if evalset is not None:
        arrays, needed = match_eval_set(info, evalset, zeros, all_shapes)
        all_shapes.update(needed)
    memory: dict[str, float | None] = {"before_load": rss_mb()}
    with native_log(log) as log_file:
        runner = open_runner(
            path, backend=backend, threads=threads, shapes=all_shapes, info=info, **options
        )
        measured = _measure(runner, arrays, evalset, zeros, seed, warmup, runs, min_time, memory)
        failure = accelerator_failure(log_file.read_text(encoding="utf-8", errors="replace"))
    times, first_ms, accuracy, samples = measured
    stats = latency_stats(times)
    latency = {"init": runner.init_ms, "first": first_ms, **stats}
    notes = list(info.notes) + list(runner.notes)
    if failure:
        notes.append(f"the native library reported: {failure}")
    if memory["after_runs"] is not None and memory["after_warmup"] is not None:
        # Growth over the timed runs alone points at a leak. It stays a number here, not a
        # note: notes say what is always true of a file and backend, never a measurement.
        memory["timed_runs_growth"] = round(memory["after_runs"] - memory["after_warmup"], 2)
    if memory["before_load"] is not None:
        memory["growth"] = round(memory["peak"] - memory["before_load"], 2)
    name = parse_backend(runner.backend)[0]
    settings = {
        "runs": len(times),
        "warmup": warmup,
        "min_time_s": min_time,
        "batch": runner.batch_size,
        "inputs": (
            f"eval set {evalset.path.name} (first batch timed)"
            if evalset is not None
            else f"random (seed {seed})"
        ),
        "input_shapes": {s.name: list(s.shape) for s in runner.inputs},
        "timer": "time.perf_counter_ns around each native run call",
        "pid": os.getpid(),
    }
    return ResultRecord(
        model=evalset.model if evalset is not None else None,
        split=evalset.split if evalset is not None else None,
        format=info.format,
        quant=quant_label(info),
        backend=runner.backend,
        threads=runner.threads,
        file=str(path),
        size_bytes=info.size_bytes,
        accuracy=accuracy,
        samples=samples,
        latency_ms={k: round(v, 6) for k, v in latency.items()},
        throughput_per_s=round(runner.batch_size * 1000.0 / stats["mean"], 3)
        if stats["mean"] > 0
        else None,
        peak_rss_mb=memory["peak"],
        fully_accelerated=runner.fully_accelerated if BACKENDS[name].accelerator else None,
        environment=environment(runtime=runner.details, bench=settings, memory_mb=memory),
        notes=notes,
        error=(
            f"{runner.backend}: the accelerator rejected its own GPU program ({failure}), so "
            "the runs did not compute the model: these numbers are not valid"
            if failure
            else None
        ),
    )


def _measure(
    runner: Runner,
    arrays: list[np.ndarray | None] | None,
    evalset: EvalSet | None,
    zeros: set[str],
    seed: int,
    warmup: int,
    runs: int,
    min_time: float,
    memory: dict[str, float | None],
) -> tuple[list[int], float, float | None, int | None]:
    """First run, warm-up, timed runs and accuracy on an open runner (closed at the end)."""
    try:
        memory["after_load"] = rss_mb()
        feeds = (
            eval_feeds(runner, arrays)
            if arrays is not None
            else random_feeds(runner.inputs, zeros, seed)
        )
        runner.set_inputs(runner.check_feeds(feeds))
        call = runner.timed_call()
        start = time.perf_counter_ns()
        call()
        first_ms = (time.perf_counter_ns() - start) / 1e6
        for _ in range(warmup):
            call()
        memory["after_warmup"] = rss_mb()
        times = timed_runs(call, runs, min_time)
        del call  # the Interpreter takes no other call while its native run is held
        memory["after_runs"] = rss_mb()
        accuracy = samples = None
        if evalset is not None and arrays is not None:
            accuracy = score(evalset.y, runner.predict_inputs(arrays))
            samples = len(evalset)
        memory["peak"] = peak_rss_mb()
    finally:
        runner.close()
    return times, first_ms, accuracy, samples


# WebGPU (Dawn) reports a shader it cannot compile on stderr and goes on: the runs then do
# nothing and return garbage, with no error from the Python API. Seen with LiteRT 2.3.0's
# GPU accelerator on int8 transformers ("cannot assign 'vec4<f32>' to 'vec4<i32>'").
_VALIDATION_ERROR = re.compile(r"Validation error: (.*)")


def accelerator_failure(log: str) -> str | None:
    """The first GPU program error in a native log (what WebGPU rejected), or None.

    Example:
        >>> accelerator_failure("E0 environment.cc:105] Validation error: Error while parsing WGSL")
        'WebGPU validation error: Error while parsing WGSL'
    """
    match = _VALIDATION_ERROR.search(log)
    if match is None:
        return None
    # The parser's message continues on the next line with the offending WGSL.
    rest = log[match.end() :].splitlines()[1:2]
    detail = " ".join([match.group(1).strip(), *(line.strip() for line in rest if line.strip())])
    return "WebGPU validation error: " + detail[:200]


@contextlib.contextmanager
def native_log(path: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Send what native libraries write to stderr (file descriptor 2) to a file meanwhile.

    Runtimes log from C++ straight to fd 2 (INFO chatter, and errors no Python exception
    carries); the benchmark reads them afterwards. ``path`` keeps the file (a worker's log
    that the parent reads if the worker dies); without it a temporary file is used.
    """
    with contextlib.ExitStack() as stack:
        if path is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="edgesmith-log-"))
            path = Path(folder, "native.log")
        path = Path(path)
        path.touch()
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (a daemon): nothing to take
            yield path
            return
        try:
            with open(path, "ab") as target:
                os.dup2(target.fileno(), 2)
                try:
                    yield path
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, 2)
        finally:
            os.close(saved)


@dataclass(frozen=True)
class Plan:
    """What :func:`bench_file` will do with each requested backend."""

    backend: str  # with its argument: external:PATH
    skip: str | None  # why it cannot run here (None: it runs)
    explicit: bool  # asked for by name rather than through auto


def plan_backends(
    requested: Sequence[str], info: ModelInfo, *, swiftshader: bool = False
) -> list[Plan]:
    """Expand ``auto`` and check each backend against the file's format and this machine."""
    plans: dict[str, Plan] = {}
    for value in requested or ("auto",):
        for part in [p for p in str(value).split(",") if p.strip()]:
            name, argument = parse_backend(part.strip())
            if name == "auto":
                names = available_backends(info.format, swiftshader=swiftshader)
                others = [
                    b.name for b in BACKENDS.values()
                    if b.format == info.format and b.name != "external" and b.name not in names
                ]  # fmt: skip
                entries = [(n, None, False) for n in [*names, *others]]
            else:
                entries = [(name, argument, True)]
            for entry_name, entry_arg, explicit in entries:
                label = backend_label(entry_name, entry_arg)
                if label in plans and not (explicit and not plans[label].explicit):
                    continue  # asked twice; asking by name makes a skip an error
                if BACKENDS[entry_name].format != info.format:
                    runs = [b.name for b in BACKENDS.values() if b.format == info.format]
                    reason = (
                        f"runs {BACKENDS[entry_name].format} files and {info.path.name} is "
                        f"{info.format}: use {' or '.join(runs)}"
                    )
                else:
                    reason = missing(entry_name, entry_arg, swiftshader=swiftshader)
                plans[label] = Plan(label, reason, explicit)
    return list(plans.values())


def bench_file(
    path: str | os.PathLike[str],
    backends: Sequence[str] = ("auto",),
    *,
    isolate: bool = True,
    eval_set: str | os.PathLike[str] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> list[ResultRecord]:
    """Benchmark ``path`` on each of ``backends``; return one record per backend that was tried.

    The file and the eval set are checked here first (a bad one raises, naming it). Each
    backend then runs in a fresh child process (``isolate=False``: in this one). A backend
    that cannot run here, or that fails, gives a record with ``error`` set and the others
    still run; ``auto`` leaves out the backends that are not available (``on_plan`` sees them).

    Example:
        >>> records = bench_file("cnn.tflite", ["litert", "edgetpu"], runs=50)  # doctest: +SKIP
        >>> [(r.backend, r.error is None) for r in records]  # doctest: +SKIP
        [('litert', True), ('edgetpu', False)]
    """
    from edgesmith.runtime.worker import benchmark_in_child

    _check_counts(
        kwargs.get("runs", DEFAULT_RUNS),
        kwargs.get("warmup", DEFAULT_WARMUP),
        kwargs.get("min_time", 0.0),
        kwargs.get("threads"),
    )
    path = Path(path)
    info = inspect_model(path)
    if eval_set is not None:
        evalset = load_eval_set(eval_set)
        match_eval_set(
            info, evalset, state_inputs(info, kwargs.get("state", ())), kwargs.get("shapes")
        )
    else:
        state_inputs(info, kwargs.get("state", ()))
    plans = plan_backends(backends, info, swiftshader=bool(kwargs.get("swiftshader")))
    records: list[ResultRecord] = []
    for plan in plans:
        if on_plan is not None:
            on_plan(plan)
        base = ResultRecord(
            format=info.format, backend=plan.backend, file=str(path), size_bytes=info.size_bytes
        )
        if plan.skip is not None:
            if plan.explicit:
                records.append(base.updated(error=f"{plan.backend}: {plan.skip}"))
            continue
        try:
            if isolate:
                record = benchmark_in_child(
                    path, plan.backend, eval_set=eval_set, timeout=timeout, **kwargs
                )
            else:
                record = benchmark(path, plan.backend, eval_set=eval_set, **kwargs)
        except BackendUnavailableError as exc:
            if plan.explicit:
                records.append(base.updated(error=str(exc)))
            elif on_plan is not None:
                on_plan(Plan(plan.backend, str(exc), False))
            continue
        except EdgesmithError as exc:
            records.append(base.updated(error=str(exc)))
            continue
        records.append(record)
    if not records and not any(p.explicit for p in plans):
        raise BackendUnavailableError(
            f"{path}: no backend for {info.format} files can run here",
            expected="ai-edge-litert or tflite-runtime for .tflite, onnxruntime for .onnx",
            fix="pip install ai-edge-litert (or tflite-runtime with numpy<2) / pip install onnxruntime",
        )
    return records


__all__ = [
    "DEFAULT_RUNS",
    "DEFAULT_WARMUP",
    "EvalSet",
    "Plan",
    "bench_file",
    "benchmark",
    "latency_stats",
    "load_eval_set",
    "match_eval_set",
    "plan_backends",
    "random_feeds",
    "timed_runs",
]
