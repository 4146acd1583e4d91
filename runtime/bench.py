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

With a ``reference`` file (the float32 baseline, say), the timed runs of the two files
alternate in blocks of :data:`PAIRED_BLOCK_RUNS` in one process, on the same backend and
threads, and the record's ``paired`` field holds the reference's latency measured in that
same window and the speedup reference p50 / file p50: a speedup that machine drift between
two separate benchmarks can neither fake nor hide.

Example:
    >>> from edgesmith.runtime.bench import benchmark
    >>> record = benchmark("cnn.tflite", "litert", threads=1, runs=50)  # doctest: +SKIP
    >>> record.latency_ms["p50"], record.peak_rss_mb  # doctest: +SKIP
    (0.012, 61.3)
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import (
    BackendUnavailableError,
    ConfigError,
    EdgesmithError,
    ModelFileError,
)
from edgesmith.core.native_log import native_log
from edgesmith.core.records import ResultRecord
from edgesmith.core.tables import DEFAULT_RUNS, DEFAULT_WARMUP
from edgesmith.runtime.backend_plan import BackendPlan, plan_backends
from edgesmith.runtime.backends import BACKENDS, parse_backend
from edgesmith.runtime.evalset import (
    EvalSet,
    eval_feeds,
    load_eval_set,
    match_eval_set,
    random_feeds,
    score,
    state_inputs,
)
from edgesmith.runtime.modelfile import ModelInfo, inspect_model
from edgesmith.runtime.runner_base import Runner, guessed_inputs, shape_hint
from edgesmith.runtime.runners import open_runner
from edgesmith.runtime.sysinfo import environment, peak_rss_mb, rss_mb
from edgesmith.runtime.timing import latency_stats, timed_runs

# Timed runs per block when a file is measured side by side with a reference: small enough
# that both files see the same machine state, large enough that a switch between the two
# models (caches, weights paged in) is paid once per block rather than once per run.
PAIRED_BLOCK_RUNS = 5


def quant_label(info: ModelInfo) -> str | None:
    """int8 / uint8 / int16 for quantized inputs or outputs, float16 for float16 weights."""
    for tensor in (*info.inputs, *info.outputs):
        if tensor.scale is not None and tensor.dtype in ("int8", "uint8", "int16"):
            return tensor.dtype
    return "float16" if info.float16_weights else None


def _metric(info: ModelInfo) -> str:
    """What the file's accuracy counts: one output column is a probability, else top-1."""
    from edgesmith.core.metrics import metric_name

    shape = info.outputs[0].shape_signature if info.outputs else ()
    single = bool(shape) and shape[-1] == 1
    return metric_name("sigmoid" if single else "softmax")


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
    profile: bool = False,
    reference: str | os.PathLike[str] | None = None,
    **options: Any,
) -> ResultRecord:
    """Benchmark ``path`` on one backend in this process and return its :class:`ResultRecord`.

    With ``reference`` (a file of the same format), its timed runs alternate with those of
    ``path`` in the same window and the record's ``paired`` holds its latency and the
    speedup reference p50 / ``path`` p50 (see the module's docstring).

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
    zeros, all_shapes, arrays = _inputs_of(info, evalset, state, shapes)
    memory: dict[str, float | None] = {"before_load": rss_mb()}
    guessed = guessed_inputs([i for i in info.inputs if i.name not in zeros], all_shapes)
    with native_log(log) as log_file:
        pair = None
        try:
            runner = open_runner(
                path, backend=backend, threads=threads, shapes=all_shapes, info=info, **options
            )
            if reference is not None:
                try:
                    pair = _open_reference(
                        Path(reference), info, runner, evalset, shapes, state, seed, options
                    )
                except BaseException:
                    runner.close()
                    raise
            measured = _measure(
                runner, arrays, evalset, zeros, seed, warmup, runs, min_time, memory, pair
            )
        except (BackendUnavailableError, ConfigError):
            raise
        except Exception as exc:  # a load or run failure; guessed sizes are a likely cause
            if not guessed:
                raise
            raise guessed_shape_error(path, backend, guessed, exc) from exc
        failure = accelerator_failure(log_file.read())
    times, first_ms, accuracy, samples, correct, reference_times = measured
    stats = latency_stats(times)
    # The low end of the spread the report shows next to p50 (p10-p90).
    stats["p10"] = float(np.percentile(np.asarray(times, np.float64) / 1e6, 10))
    paired = None
    if pair is not None:
        paired = _paired(Path(reference or ""), reference_times, stats["p50"])
    latency = {"init": runner.init_ms, "first": first_ms, **stats}
    notes = list(info.notes) + list(runner.notes)
    if paired is not None:
        notes.append(
            f"timed runs interleaved with {paired['reference']} (blocks of {PAIRED_BLOCK_RUNS}); "
            "peak memory includes that file"
        )
    if failure:
        notes.append(f"the native library reported: {failure}")
    if memory["after_runs"] is not None and memory["after_warmup"] is not None:
        # Growth over the timed runs alone points at a leak. It stays a number here, not a
        # note: notes say what is always true of a file and backend, never a measurement.
        memory["timed_runs_growth"] = round(memory["after_runs"] - memory["after_warmup"], 2)
    if memory["before_load"] is not None:
        memory["growth"] = round(memory["peak"] - memory["before_load"], 2)
    name = parse_backend(runner.backend)[0]
    profiled: dict[str, Any] = {}
    if profile:
        feeds = random_feeds(runner.inputs, zeros, seed)
        with native_log(None):  # the C API's start-up lines are not the user's business
            profiled = _profile(path, runner, feeds, runs, warmup, stats["p50"], options)
        notes.extend(profiled.pop("notes"))
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
        metric=_metric(info) if accuracy is not None else None,
        samples=samples,
        correct=correct,
        latency_ms={k: round(v, 6) for k, v in latency.items()},
        throughput_per_s=round(runner.batch_size * 1000.0 / stats["mean"], 3)
        if stats["mean"] > 0
        else None,
        peak_rss_mb=memory["peak"],
        fully_accelerated=runner.fully_accelerated if BACKENDS[name].accelerator else None,
        environment=environment(runtime=runner.details, bench=settings, memory_mb=memory),
        **profiled,
        paired=paired,
        notes=notes,
        error=(
            f"{runner.backend}: the accelerator rejected its own GPU program ({failure}), so "
            "the runs did not compute the model: these numbers are not valid"
            if failure
            else None
        ),
    )


def _profile(
    path: Path,
    runner: Runner,
    feeds: Sequence[np.ndarray | None],
    runs: int,
    warmup: int,
    latency_ms: float,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """The record's op_profile fields for ``path`` on ``runner``'s backend, or why there are none."""
    from edgesmith.runtime.profile_ops import ProfileUnavailable, profile_file

    named = {s.name: f for s, f in zip(runner.inputs, feeds, strict=True) if f is not None}
    try:
        if not options.get("xnnpack", True):
            raise ProfileUnavailable(
                "the profiler runs LiteRT with XNNPACK; --no-xnnpack was given"
            )
        result = profile_file(
            path,
            runner.backend,
            threads=runner.threads,
            runs=max(runs, 20),
            warmup=warmup,
            feeds=named,
            # LiteRT's profiler runs the C API's CompiledModel, whose XNNPACK partitioning
            # (and so latency) differs from the Interpreter's: it measures its own.
            latency_ms=None if parse_backend(runner.backend)[0] == "litert" else latency_ms,
            providers=options.get("providers"),
        )
    except ProfileUnavailable as exc:
        return {
            "op_profile": None,
            "op_profile_by_type": None,
            "notes": [f"op_profile: none: {runner.backend} cannot profile this file here ({exc})"],
        }
    result.calibration["bench_p50_ms"] = round(latency_ms, 6)
    unprofiled = result.calibration["unprofiled_ms"]
    if abs(unprofiled - latency_ms) > 0.15 * latency_ms:
        result.notes.append(
            f"op_profile: the profiled session runs in {unprofiled:.4f} ms unprofiled, the "
            f"benchmark in {latency_ms:.4f} ms: {result.calibration['api']} runs this file "
            "differently from the benchmarked API"
        )
    return {
        "op_profile": result.ops,
        "op_profile_by_type": result.by_type,
        "op_profile_calibration": result.calibration,
        "notes": result.notes,
    }


def guessed_shape_error(
    path: Path,
    backend: str,
    guessed: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]],
    exc: BaseException,
) -> ModelFileError:
    """A failure of a model run with guessed dynamic sizes: what was guessed, what to give."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = (text[:300] + ("..." if len(text) > 300 else "")) or type(exc).__name__
    what, options = shape_hint(guessed)
    return ModelFileError(
        f"{path}: {backend} failed on inputs whose dynamic dimensions were guessed as 1 "
        f"({what}): {text}",
        expected="the sizes the model needs for its dynamic dimensions",
        fix=f"give them with {options}",
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
    pair: tuple[Runner, list[np.ndarray | None]] | None = None,
) -> tuple[list[int], float, float | None, int | None, str | None, list[int]]:
    """First run, warm-up, timed runs, accuracy and per-sample outcomes (closed at the end).

    With ``pair`` (the reference's runner and feeds), the timed runs alternate with the
    reference's; the last item is the reference's times (empty without one).
    """
    reference_times: list[int] = []
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
        if pair is None:
            memory["after_warmup"] = rss_mb()
            times = timed_runs(call, runs, min_time)
        else:
            pair[0].set_inputs(pair[0].check_feeds(pair[1]))
            other = pair[0].timed_call()
            for _ in range(max(warmup, 1)):
                other()
            memory["after_warmup"] = rss_mb()
            times, reference_times = _interleaved(call, other, runs, min_time)
            del other
        del call  # the Interpreter takes no other call while its native run is held
        memory["after_runs"] = rss_mb()
        accuracy = samples = correct = None
        if evalset is not None and arrays is not None:
            outputs = runner.predict_inputs(arrays)
            accuracy = score(evalset.y, outputs)
            samples = len(evalset)
            correct = _outcomes(evalset.y, outputs)
        memory["peak"] = peak_rss_mb()
    finally:
        runner.close()
        if pair is not None:
            pair[0].close()
    return times, first_ms, accuracy, samples, correct, reference_times


def _inputs_of(
    info: ModelInfo,
    evalset: EvalSet | None,
    state: Iterable[str],
    shapes: Mapping[str, Sequence[int]] | None,
) -> tuple[Any, dict[str, Any], Any]:
    """A file's state inputs (fed zeros), its input shapes with those the eval set fixes,
    and the eval set's arrays matched to its inputs (None without an eval set)."""
    zeros = state_inputs(info, state)
    all_shapes = dict(shapes or {})
    arrays = None
    if evalset is not None:
        arrays, needed = match_eval_set(info, evalset, zeros, all_shapes)
        all_shapes.update(needed)
    return zeros, all_shapes, arrays


def _open_reference(
    reference: Path,
    info: ModelInfo,
    runner: Runner,
    evalset: EvalSet | None,
    shapes: Mapping[str, Sequence[int]] | None,
    state: Iterable[str],
    seed: int,
    options: Mapping[str, Any],
) -> tuple[Runner, list[np.ndarray | None]]:
    """The reference file opened like ``runner``'s (backend, threads), and its feeds."""
    ref_info = inspect_model(reference)
    if ref_info.format != info.format:
        raise ConfigError(
            f"reference {reference.name} is a {ref_info.format} file, {info.path.name} a "
            f"{info.format} one",
            expected="a reference of the same format, run by the same backend",
        )
    zeros, ref_shapes, arrays = _inputs_of(ref_info, evalset, state, shapes)
    other = open_runner(
        reference,
        backend=runner.backend,
        threads=runner.threads,
        shapes=ref_shapes,
        info=ref_info,
        **options,
    )
    try:
        feeds = (
            eval_feeds(other, arrays)
            if arrays is not None
            else random_feeds(other.inputs, zeros, seed)
        )
    except BaseException:
        other.close()
        raise
    return other, feeds


def _interleaved(
    call: Callable[[], object], other: Callable[[], object], runs: int, min_time: float
) -> tuple[list[int], list[int]]:
    """Timed runs of ``call`` and ``other`` in alternating blocks, the same count of each.

    The order within a round swaps every round (ABBA), so neither file always runs first
    after the switch.
    """
    times: list[int] = []
    others: list[int] = []
    deadline = time.perf_counter_ns() + int(min_time * 1e9)
    first = True
    while len(times) < runs or time.perf_counter_ns() < deadline:
        block = (
            min(PAIRED_BLOCK_RUNS, runs - len(times)) if len(times) < runs else PAIRED_BLOCK_RUNS
        )
        if first:
            times += timed_runs(call, block)
            others += timed_runs(other, block)
        else:
            others += timed_runs(other, block)
            times += timed_runs(call, block)
        first = not first
    return times, others


def _paired(reference: Path, times: Sequence[int], p50: float) -> dict[str, Any]:
    """The record's ``paired``: the reference's latency in the same window and the speedup."""
    ms = np.asarray(times, np.float64) / 1e6
    p10, ref_p50, p90 = (float(x) for x in np.percentile(ms, [10, 50, 90]))
    return {
        "reference": reference.name,
        "reference_latency_ms": {
            "p50": round(ref_p50, 6),
            "p10": round(p10, 6),
            "p90": round(p90, 6),
        },
        "speedup": round(ref_p50 / p50, 4) if p50 > 0 else None,
        "runs": len(times),
        "block_runs": PAIRED_BLOCK_RUNS,
    }


def _outcomes(y: np.ndarray, outputs: np.ndarray) -> str:
    """Which samples the file got right, packed (the same decision as ``score``)."""
    from edgesmith.core.metrics import predicted_classes
    from edgesmith.core.records import pack_outcomes

    outputs = outputs.reshape(len(y), -1) if outputs.ndim != 2 else outputs
    return pack_outcomes(predicted_classes(outputs) == np.asarray(y).reshape(-1))


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


def bench_file(
    path: str | os.PathLike[str],
    backends: Sequence[str] = ("auto",),
    *,
    isolate: bool = True,
    eval_set: str | os.PathLike[str] | None = None,
    on_plan: Callable[[BackendPlan], None] | None = None,
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
    if kwargs.get("reference") is not None:  # checked here too, so a bad one names itself
        inspect_model(kwargs["reference"])
        kwargs["reference"] = str(Path(kwargs["reference"]).resolve())
    zeros = state_inputs(info, kwargs.get("state", ()))
    shapes = dict(kwargs.get("shapes") or {})
    if eval_set is not None:
        evalset = load_eval_set(eval_set)
        shapes.update(match_eval_set(info, evalset, zeros, kwargs.get("shapes"))[1])
    guessed = guessed_inputs([i for i in info.inputs if i.name not in zeros], shapes)
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
                on_plan(BackendPlan(plan.backend, str(exc), False))
            continue
        except EdgesmithError as exc:
            if guessed and isinstance(exc, ModelFileError) and "--shape" not in str(exc):
                # The worker died (a native abort): the guessed sizes may be why.
                exc = guessed_shape_error(path, plan.backend, guessed, exc)
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
    "PAIRED_BLOCK_RUNS",
    "accelerator_failure",
    "bench_file",
    "benchmark",
    "quant_label",
]
