"""``--quant auto``: the fastest (or smallest) .tflite within an accuracy budget, measured here.

Which precision is fast depends on the kernels of the machine that runs the file, so the
search measures instead of guessing. It builds a handful of files from one model:

1. float32 (the reference), full int8, dynamic-range int8, fp16, and float32 with int8
   weights unpacked when the file loads (``int8-weights``: float32 speed, 8-bit size);
2. from the per-op profile of the full-int8 file on the target backend, selective int8
   files that keep in float32 the op types that ran on reference kernels (and, as a second
   file, every op type without weights), with int8 weights and int8 products elsewhere;
3. from the per-op profiles of the float32 and the full-int8 file aligned node by node
   (:mod:`edgesmith.convert.quant_nodes`), full int8 except the single weight ops that ran
   clearly slower in int8 than in float32, kept in float32 (``int8-float-slow-nodes``);
4. int16x8 only when no file with 8-bit weights keeps the accuracy.

Each file's accuracy is measured on the validation samples (top-1 against the labels, or
agreement with the float32 file where there are none) and its latency on the target
backend (1 thread), all files side by side in alternating rounds so that a busy machine
slows them alike. The choice: among the files within ``budget`` points of float32, those
with 8-bit weights (the point of quantizing: about 4x smaller), the fastest
(``objective="latency"``; of files within 3% of the fastest, a tie timing cannot split,
the smallest) or the smallest (``"size"``); only when none keeps the accuracy,
the best of the rest. The record's ``strategy.auto`` has every candidate's numbers.

Example:
    >>> from edgesmith.convert.config import ConversionConfig
    >>> from edgesmith.convert.quant_auto import auto_tflite
    >>> result = auto_tflite(model, "transformer", ConversionConfig(quant="auto"),
    ...                      x_calibration=x_train, x_val=x_test, y_val=y_test)  # doctest: +SKIP
    >>> result.strategy["auto"]["chosen"]  # doctest: +SKIP
    'int8-float-activations'
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.quant_candidates import (
    Candidate,
    graph_op_types,
    int16x8_candidate,
    plain_candidates,
    precision_by_dtype,
    profile_int8,
    selective_candidates,
    slow_node_candidates,
    weight_only_candidate,
)
from edgesmith.convert.quant_nodes import plan_slow_nodes
from edgesmith.convert.tflite import TfliteResult, pick_samples, to_tflite
from edgesmith.core.errors import ConfigError, EdgesmithError

THREADS = 1  # edge devices run one inference on one core; XNNPACK's default here too
VALIDATION_SAMPLES = 500  # without labelled data: calibration samples compared with float32
ROUNDS = 12  # alternating rounds of the latency measurement
SAME_SPEED = 0.03  # p50s closer than this are a tie (timing noise here is about 1-2%)
ROUND_SECONDS = 0.03  # each file runs at least this long per round (and at least 5 times)


def auto_tflite(
    model: Any,
    family: str,
    config: ConversionConfig,
    *,
    x_calibration: np.ndarray | None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    logits: bool = False,
    qat: bool = False,
) -> TfliteResult:
    """Build the candidates, measure them on ``config.backend`` and return the chosen file.

    ``x_calibration`` calibrates the int8 candidates; ``x_val``/``y_val`` measure their
    accuracy (without ``y_val``, top-1 agreement with the float32 file; without ``x_val``,
    calibration samples stand in). The result's ``strategy["auto"]`` lists every
    candidate (accuracy, drop in points, size, p50 latency, speed ratio to float32) and
    why the chosen one won.
    """
    x_val, labelled = auto_inputs(
        "--quant auto", x_calibration, x_val, y_val, config.seed, qat=qat,
        qat_expected="--quant int8: QAT learned its 8-bit ranges for full int8",
    )  # fmt: skip
    candidates = plain_candidates()
    with tempfile.TemporaryDirectory(prefix="edgesmith-auto-") as tmp:
        folder = Path(tmp)
        for cand in candidates:
            _build(cand, model, family, config, x_calibration)
        int8 = next(c for c in candidates if c.name == "int8")
        reference = next(c for c in candidates if c.quant == "none" and c.bits is None)
        if reference.content:
            add_distinct(candidates, weight_only_candidate(reference.content))
        profile_info: dict[str, Any] = {"source": "not profiled: full int8 did not convert"}
        nodes_info: dict[str, Any] = {"skipped": "full int8 or float32 did not convert"}
        if int8.content:
            path = write_candidate(folder, int8)
            graph_ops = graph_op_types(int8.content)
            found, profile_info, int8_ops = profile_int8(path, config.backend, THREADS, graph_ops)
            more = selective_candidates(list(found), graph_ops)
            if reference.content:
                slow, nodes_info = plan_slow_nodes(
                    write_candidate(folder, reference),
                    reference.content,
                    int8.content,
                    int8_ops,
                    config.backend,
                    THREADS,
                )
                # Ops found on reference kernels only by the static list were not measured.
                measured = list(found) if int8_ops is not None else []
                more += slow_node_candidates(slow, measured)
            for cand in more:
                _build(cand, model, family, config, x_calibration)
                add_distinct(candidates, cand)  # e.g. an LSTM's gates were float already
        measure_accuracy(candidates, folder, config.backend, x_val, y_val, logits)
        if not any(
            c.weight_bits == 8 and c.drop_pt is not None and c.drop_pt <= config.budget
            for c in candidates
        ):
            extra = int16x8_candidate()
            _build(extra, model, family, config, x_calibration)
            candidates.append(extra)
            measure_accuracy(candidates, folder, config.backend, x_val, y_val, logits)
        runnable = {
            c.name: write_candidate(folder, c) for c in candidates if c.content and not c.error
        }
        latencies = measure_latencies(runnable, config.backend, x=x_val[:1], threads=THREADS)
    for cand in candidates:
        cand.latency_ms = latencies.get(cand.name)
    chosen, reason = select_candidate(candidates, config.budget, config.objective)
    profiles = {"int8_profile": profile_info, "slow_nodes": nodes_info}
    return _result(chosen, candidates, config, reason, profiles, labelled, len(x_val))


def auto_inputs(
    what: str,
    x_calibration: np.ndarray | None,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    seed: int,
    *,
    qat: bool,
    qat_expected: str,
) -> tuple[np.ndarray, bool]:
    """The samples an auto search measures accuracy on, and whether they have labels.

    Refuses a QAT model (it learned ranges for full int8) and a search without
    calibration data; without ``x_val``, calibration samples stand in (unlabelled).
    """
    if qat:
        raise ConfigError(
            f"{what} on a quantization-aware-trained model",
            expected=qat_expected,
            fix="convert the QAT model with --quant int8, or the float model with --quant auto",
        )
    if x_calibration is None:
        raise ConfigError(
            f"{what} without calibration data",
            expected="real input samples (the int8 candidates are calibrated on them)",
            fix="convert a zoo model or model folder, or pass --data or --calibration FILE.npz",
        )
    labelled = x_val is not None and y_val is not None
    if x_val is None:
        x_val = pick_samples(x_calibration, VALIDATION_SAMPLES, seed + 1)
    return x_val, labelled


def add_distinct(candidates: list[Candidate], cand: Candidate) -> None:
    """Append ``cand``; a file identical to an earlier candidate's is marked, not re-measured."""
    same = next((c for c in candidates if c.content == cand.content), None)
    if same is not None and cand.content:
        cand.error = f"the same file as {same.name}: not measured twice"
    candidates.append(cand)


def select_candidate(
    candidates: Sequence[Candidate], budget: float, objective: str
) -> tuple[Candidate, str]:
    """The candidate to keep, and why: see the module's docstring for the rule.

    Example:
        >>> a = Candidate("float32", "none", "", content=b"x" * 400, drop_pt=0.0, latency_ms=2.0)
        >>> b = Candidate("int8", "int8", "", content=b"x" * 100, drop_pt=0.2, latency_ms=3.0)
        >>> c = Candidate("dynamic", "dynamic", "", content=b"x" * 110, drop_pt=0.1, latency_ms=1.5)
        >>> select_candidate([a, b, c], 0.5, "latency")[0].name
        'dynamic'
        >>> select_candidate([a, b, c], 0.5, "size")[0].name
        'int8'
    """
    measured = [
        c
        for c in candidates
        if not c.error and c.content and c.drop_pt is not None and c.latency_ms is not None
    ]
    if not measured:
        raise EdgesmithError(
            "--quant auto: no candidate could be converted and measured",
            expected="at least the float32 file",
            fix="convert with a fixed --quant mode; its error says what failed",
        )
    within = [c for c in measured if c.drop_pt <= budget + 1e-9]
    eight_bit = [c for c in within if c.weight_bits == 8]
    if eight_bit:
        pool, scope = eight_bit, f"files with 8-bit weights within {budget:g} pt of float32"
    elif within:
        pool, scope = within, f"no 8-bit file within {budget:g} pt: files within the budget"
    else:
        pool, scope = measured, f"no file within {budget:g} pt of float32: the most accurate"
        best = min(c.drop_pt for c in measured if c.drop_pt is not None)
        pool = [c for c in measured if c.drop_pt == best]

    def by_size(c: Candidate) -> tuple[float, int]:
        return (float(c.size_bytes), int((c.latency_ms or 0.0) * 1e6))

    what = "fastest" if objective == "latency" else "smallest"
    if objective == "latency":
        # Files within SAME_SPEED of the fastest are as fast as timing here can tell: the
        # smallest of them wins, so that noise does not pick between equals run to run.
        fastest = min(float(c.latency_ms or 0.0) for c in pool)
        tied = [c for c in pool if float(c.latency_ms or 0.0) <= fastest * (1 + SAME_SPEED)]
        chosen = min(tied, key=by_size)
        if len(tied) > 1:
            what = f"smallest of the fastest (within {SAME_SPEED:.0%} of each other)"
    else:
        chosen = min(pool, key=by_size)
    return chosen, f"{what} of the {scope} ({', '.join(c.name for c in pool)})"


def measure_latencies(
    paths: Mapping[str, str | Path],
    backend: str,
    *,
    x: np.ndarray | None = None,
    threads: int = THREADS,
    rounds: int = ROUNDS,
    round_seconds: float = ROUND_SECONDS,
) -> dict[str, float]:
    """p50 latency (ms) of each file, measured side by side in alternating rounds.

    Every file is opened once on ``backend``; each round runs every file (in a rotated
    order) for at least ``round_seconds``, so a machine that gets busier for a while slows
    every file alike and the ratios stay fair. ``x``: one sample fed to every file.
    """
    from edgesmith.core.native_log import native_log
    from edgesmith.runtime.evalset import eval_feeds, random_feeds
    from edgesmith.runtime.runners import open_runner
    from edgesmith.runtime.timing import timed_runs

    names = list(paths)
    runners: dict[str, Any] = {}
    times: dict[str, list[int]] = {name: [] for name in names}
    try:
        with native_log():
            for name in names:
                runner = open_runner(paths[name], backend=backend, threads=threads)
                runners[name] = runner
                feeds = (
                    eval_feeds(runner, [x]) if x is not None else random_feeds(runner.inputs, set())
                )
                runner.set_inputs(runner.check_feeds(feeds))
            calls = {name: runners[name].timed_call() for name in names}
            for name in names:  # warm-up: caches, XNNPACK's packed weights
                timed_runs(calls[name], 10)
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    times[name].extend(timed_runs(calls[name], 5, round_seconds))
            del calls  # the Interpreter takes no other call while its native run is held
    finally:
        for runner in runners.values():
            runner.close()
    return {name: float(np.median(t)) / 1e6 for name, t in times.items()}


def _build(
    cand: Candidate,
    model: Any,
    family: str,
    config: ConversionConfig,
    x_calibration: np.ndarray,
) -> None:
    """Convert ``cand``; a mode the model cannot take is recorded, not raised."""
    cfg = dataclasses.replace(config, quant=cand.quant)
    try:
        result = to_tflite(
            model,
            family,
            cfg,
            x_calibration=x_calibration,
            float_ops=cand.float_ops,
            float_nodes=[(node.position, node.op) for node in cand.float_nodes],
        )
    except EdgesmithError as exc:
        cand.error = str(exc)[:300]
        return
    cand.content, cand.strategy, cand.notes = result.content, result.strategy, result.notes


def write_candidate(folder: Path, cand: Candidate) -> Path:
    """``cand``'s file in ``folder`` (written once), named after it, with its format's suffix."""
    path = folder / f"{cand.name}{cand.suffix}"
    if not path.exists():
        path.write_bytes(cand.content)
    return path


def measure_accuracy(
    candidates: Sequence[Candidate],
    folder: Path,
    backend: str,
    x: np.ndarray,
    y: np.ndarray | None,
    logits: bool,
) -> None:
    """Accuracy (or agreement with float32) and drop in points of every unmeasured file."""
    from edgesmith.core.metrics import accuracy, predicted_classes
    from edgesmith.core.native_log import native_log
    from edgesmith.runtime.runners import open_runner

    reference = next(c for c in candidates if c.quant == "none" and c.bits is None)
    if not reference.content:
        raise EdgesmithError(
            f"--quant auto: the float32 reference did not convert ({reference.error})",
            expected="a model the TFLite converter takes in float32",
            fix="convert with --quant none to see the converter's error",
        )
    float_classes = None
    for cand in [reference, *(c for c in candidates if c is not reference)]:
        if not cand.content or cand.error or (cand.accuracy is not None and cand is not reference):
            continue
        try:
            with (
                native_log(),
                open_runner(write_candidate(folder, cand), backend=backend) as runner,
            ):
                out = np.asarray(runner.predict(x), dtype=np.float32)
        except EdgesmithError as exc:
            cand.error = f"does not run on {backend}: {exc}"[:300]
            continue
        if not np.all(np.isfinite(out)):
            cand.error = "non-finite outputs"
            continue
        classes = predicted_classes(out, logits=logits)
        if cand is reference:
            float_classes = classes
        if y is not None:
            cand.accuracy = accuracy(y, out, logits=logits)
        else:  # no labels: how often the file agrees with float32
            cand.accuracy = float(np.mean(classes == float_classes))
    base = reference.accuracy
    for cand in candidates:
        if cand.accuracy is not None and base is not None:
            cand.drop_pt = (base - cand.accuracy) * 100.0


def _result(
    chosen: Candidate,
    candidates: Sequence[Candidate],
    config: ConversionConfig,
    reason: str,
    profiles: dict[str, Any],
    labelled: bool,
    samples: int,
) -> TfliteResult:
    """The chosen file with a strategy that says what the search measured and chose."""
    reference = next(c for c in candidates if c.quant == "none" and c.bits is None)
    base_ms = reference.latency_ms
    rows = []
    for cand in candidates:
        row = cand.summary()
        if base_ms and cand.latency_ms:
            row["speedup_vs_float32"] = round(base_ms / cand.latency_ms, 3)
        if cand.content and reference.content:
            row["size_ratio_vs_float32"] = round(reference.size_bytes / cand.size_bytes, 3)
        rows.append(row)
    strategy = dict(chosen.strategy)
    strategy["precision"] = precision_by_dtype(chosen.content)
    strategy["auto"] = {
        "chosen": chosen.name,
        "quant": chosen.quant,
        "float_ops": list(chosen.float_ops),
        "float_nodes": [node.to_dict() for node in chosen.float_nodes],
        "reason": reason,
        "objective": config.objective,
        "budget_pt": config.budget,
        "backend": config.backend,
        "threads": THREADS,
        "accuracy_on": (
            f"{samples} labelled validation samples (top-1)"
            if labelled
            else f"{samples} samples: top-1 agreement with the float32 file (no labels)"
        ),
        "latency": f"p50 over {ROUNDS} alternating rounds of every candidate, same process",
        **profiles,  # int8_profile: the int8 file's ops; slow_nodes: int8 vs float32 per node
        "candidates": rows,
    }
    speed = ""
    if base_ms and chosen.latency_ms:
        speed = f", {base_ms / chosen.latency_ms:.2f}x the speed of float32"
    notes = [
        *chosen.notes,
        f"quant auto: chose {chosen.name} ({chosen.why}): p50 {chosen.latency_ms or 0:.4f} ms "
        f"on {config.backend} ({THREADS} thread){speed}, {chosen.drop_pt or 0:+.2f} pt "
        f"against float32, {chosen.size_bytes:,} bytes; {reason}",
    ]
    if base_ms and chosen.latency_ms and chosen.latency_ms > base_ms:
        notes.append(
            "quant auto: no file with 8-bit weights within the budget ran as fast as float32 "
            f"here (float32 p50 {base_ms:.4f} ms); strategy.auto.int8_profile shows where "
            "full int8 spends its time"
        )
    return TfliteResult(chosen.content, strategy, notes)


__all__ = [
    "add_distinct",
    "auto_inputs",
    "auto_tflite",
    "measure_accuracy",
    "measure_latencies",
    "select_candidate",
    "write_candidate",
]
