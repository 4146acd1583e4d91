"""``open_runner``: open a .tflite or .onnx file on a backend and get a ready runner. TF-free.

The front door of the runners: it checks the file (:mod:`edgesmith.runtime.modelfile`) and
the options, picks the backend (``auto``: litert, else tflite-runtime, for .tflite;
onnxruntime for .onnx), checks that it can run here, and only then imports the one backend
module it needs:

* :mod:`~edgesmith.runtime.litert_interpreter`: litert, tflite-runtime, edgetpu, external:PATH;
* :mod:`~edgesmith.runtime.litert_compiled`: litert-gpu;
* :mod:`~edgesmith.runtime.onnx_runner`: onnxruntime.

What a runner offers is in :mod:`~edgesmith.runtime.runner_base`.

Example:
    >>> runner = open_runner("model.tflite", backend="litert", threads=1)  # doctest: +SKIP
    >>> runner.inputs[0].shape, runner.inputs[0].dtype  # doctest: +SKIP
    ((1, 8, 8, 1), 'int8')
    >>> runner.predict(x_test).argmax(axis=1)  # doctest: +SKIP
    array([0, 4, 1, ...])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgesmith.core.errors import BackendUnavailableError, ConfigError
from edgesmith.runtime.backends import (
    BACKENDS,
    INSTALL_HELP,
    PACKAGE_NAMES,
    backend_label,
    missing,
    parse_backend,
)
from edgesmith.runtime.modelfile import ModelInfo, inspect_model
from edgesmith.runtime.runner_base import Runner, resolve_shapes

OPTIONS = (
    "xnnpack", "shapes", "delegate_options", "providers", "swiftshader", "gpu_fp32", "keep_state",
    "info",
)  # fmt: skip


def open_runner(
    path: str | os.PathLike[str],
    *,
    backend: str = "auto",
    threads: int | None = None,
    **options: Any,
) -> Runner:
    """Open ``path`` (.tflite or .onnx) on ``backend`` and return a ready :class:`Runner`.

    ``auto`` picks ``litert`` (else ``tflite-runtime``) for .tflite and ``onnxruntime`` for
    .onnx. ``threads`` defaults to 1 (as LiteRT's own benchmark tool). Options:
    ``xnnpack=False`` (litert, tflite-runtime), ``shapes={"name": (1, 49, 10)}`` for dynamic
    dimensions (others run at 1), ``delegate_options={...}`` (edgetpu, external:PATH),
    ``providers=[...]`` (onnxruntime), ``swiftshader=True`` and ``gpu_fp32=True`` (litert-gpu),
    ``keep_state=True`` to carry a model's variable-tensor state (a fused LSTM's) from one
    ``run()`` to the next instead of resetting it.

    Raises :class:`ModelFileError` for a bad file, :class:`BackendUnavailableError` when the
    backend's library or device is missing here, :class:`ConfigError` for bad options.

    Example:
        >>> with open_runner("cnn.tflite", backend="litert", threads=1) as runner:  # doctest: +SKIP
        ...     probs = runner.predict(x)
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"open_runner option(s) {', '.join(unknown)}", expected="some of " + ", ".join(OPTIONS)
        )
    path = Path(path)
    info: ModelInfo = options.pop("info", None) or inspect_model(path)
    name, argument = parse_backend(backend)
    if name == "auto":
        name = _auto_backend(info)
    label = backend_label(name, argument)
    if BACKENDS[name].format != info.format:
        raise ConfigError(
            f"--backend {label} for {path.name}",
            expected=f"a backend that runs {info.format} files: "
            + ", ".join(b.name for b in BACKENDS.values() if b.format == info.format),
        )
    threads = 1 if threads is None else int(threads)
    if threads < 1:
        raise ConfigError(f"--threads {threads}", expected="1 or more")
    reason = missing(name, argument, swiftshader=bool(options.get("swiftshader")))
    if reason:
        raise BackendUnavailableError(f"{label}: {reason}")
    shapes = resolve_shapes(info.inputs, options.get("shapes"))
    runner = _open(path, info, name, argument, label, threads, shapes, options)
    runner.keep_state = bool(options.get("keep_state", False))
    if info.variable_tensors:
        runner.notes.append(
            f"the model keeps state in {info.variable_tensors} variable tensor(s); "
            + (
                "it carries over between calls (keep_state)"
                if runner.keep_state
                else "run() and predict() reset it before every batch, the timed runs do not"
            )
        )
    return runner


def _open(
    path: Path,
    info: ModelInfo,
    name: str,
    argument: str | None,
    label: str,
    threads: int,
    shapes: dict[str, tuple[int, ...]],
    options: dict[str, Any],
) -> Runner:
    # Each backend module is imported here, when asked for: a board has one runtime.
    if name in ("litert", "tflite-runtime", "edgetpu", "external"):
        from edgesmith.runtime import litert_interpreter as interpreter

        if name == "edgetpu":
            return interpreter.open_edgetpu(path, info, threads, shapes, options)
        if name == "external":
            return interpreter.open_external(path, info, argument or "", threads, shapes, options)
        return interpreter.InterpreterRunner(
            path, info, label, threads, shapes=shapes, xnnpack=options.get("xnnpack", True),
            module="ai_edge_litert" if name == "litert" else "tflite_runtime",
        )  # fmt: skip
    if name == "litert-gpu":
        from edgesmith.runtime.litert_compiled import CompiledModelRunner

        return CompiledModelRunner(
            path, info, label, threads, shapes=shapes,
            swiftshader=bool(options.get("swiftshader")), fp32=bool(options.get("gpu_fp32")),
        )  # fmt: skip
    from edgesmith.runtime.onnx_runner import OnnxRunner

    return OnnxRunner(path, info, label, threads, shapes=shapes, providers=options.get("providers"))


def _auto_backend(info: ModelInfo) -> str:
    order = ("litert", "tflite-runtime") if info.format == "tflite" else ("onnxruntime",)
    for name in order:
        if missing(name) is None:
            return name
    raise BackendUnavailableError(
        f"{info.path}: no runtime for {info.format} files is installed",
        expected=" or ".join(PACKAGE_NAMES[m] for m in _modules_for(info.format)),
        fix="; ".join(INSTALL_HELP[m] for m in _modules_for(info.format)),
    )


def _modules_for(fmt: str) -> tuple[str, ...]:
    return ("ai_edge_litert", "tflite_runtime") if fmt == "tflite" else ("onnxruntime",)
