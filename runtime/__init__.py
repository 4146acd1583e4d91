"""The TF-free runtime: benchmarks .tflite and .onnx files on the device that runs them.

Imports only NumPy, the runtimes (ai-edge-litert, tflite-runtime, onnxruntime) and the
TF-free core of ``edgesmith`` (records, errors, fileio, metrics); each runtime is imported
inside the function that needs it, so a board needs only the one it uses.

* :mod:`~edgesmith.runtime.runners`: ``open_runner(path, backend=...)``, the front door to
  the runners; :mod:`~edgesmith.runtime.runner_base` holds ``Runner`` (``run`` raw
  tensors, ``predict`` float samples) and ``TensorSpec``; one module per backend:
  :mod:`~edgesmith.runtime.litert_interpreter` (litert, tflite-runtime, edgetpu,
  external:PATH), :mod:`~edgesmith.runtime.litert_compiled` (litert-gpu),
  :mod:`~edgesmith.runtime.onnx_runner` (onnxruntime);
* :mod:`~edgesmith.runtime.bench`: ``benchmark`` (one backend, this process) and
  ``bench_file`` (several backends, one worker process each): latency, memory, accuracy;
  with :mod:`~edgesmith.runtime.evalset` (eval sets, input feeds),
  :mod:`~edgesmith.runtime.timing` (timed runs, statistics) and
  :mod:`~edgesmith.runtime.backend_plan` (which backends run);
* :mod:`~edgesmith.runtime.modelfile`: pure-Python checks of a model file before any
  native loader sees it; :mod:`~edgesmith.runtime.tflite_flatbuffer` reads a .tflite file
  (tensors, ops, buffers) with every offset checked;
* :mod:`~edgesmith.runtime.backends`, :mod:`~edgesmith.runtime.vulkan`: what each backend
  needs and whether this machine has it.

Example:
    >>> from edgesmith.runtime import open_runner
    >>> with open_runner("cnn-digits-int8.tflite") as runner:  # doctest: +SKIP
    ...     probs = runner.predict(x_test)
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "open_runner": "runners",
    "Runner": "runner_base",
    "TensorSpec": "runner_base",
    "benchmark": "bench",
    "bench_file": "bench",
    "load_eval_set": "evalset",
    "inspect_model": "modelfile",
    "read_graph": "tflite_flatbuffer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy, so that `import edgesmith.runtime` stays cheap (the CLI builds its parser on it).
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f"edgesmith.runtime.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'edgesmith.runtime' has no attribute {name!r}")
