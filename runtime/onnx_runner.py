"""ONNX Runtime: the onnxruntime backend, inputs and outputs bound once through IOBinding.

TF-free; onnxruntime is imported when a runner opens. CUDA and TensorRT execution
providers are used when this onnxruntime has them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import BackendUnavailableError
from edgesmith.runtime.modelfile import ModelInfo
from edgesmith.runtime.runner_base import (
    Runner,
    TensorSpec,
    import_runtime,
    library_version,
    load_error,
)

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(uint16)": "uint16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}  # fmt: skip
_ACCELERATED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRunner(Runner):
    """An ONNX Runtime session; inputs and outputs bound once through IOBinding."""

    def __init__(
        self,
        path: Path,
        info: ModelInfo,
        backend: str,
        threads: int,
        *,
        shapes: Mapping[str, tuple[int, ...]],
        providers: Sequence[str] | None = None,
    ) -> None:
        super().__init__(path, info, backend, threads)
        ort = import_runtime("onnxruntime", backend)
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in _ACCELERATED_PROVIDERS if p in available] + [
                "CPUExecutionProvider"
            ]
        else:
            absent = [p for p in providers if p not in available]
            if absent:
                raise BackendUnavailableError(
                    f"{backend}: execution provider(s) {', '.join(absent)} not available here",
                    expected="some of " + ", ".join(available),
                    fix="install onnxruntime-gpu for CUDA / TensorRT",
                )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
        start = time.perf_counter_ns()
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=list(providers)
            )
        except Exception as exc:  # InvalidProtobuf, InvalidGraph, NotImplemented, Fail
            raise load_error(path, backend, exc) from exc
        self.init_ms = (time.perf_counter_ns() - start) / 1e6
        used = self._session.get_providers()
        self.details = {
            "library": "onnxruntime",
            "version": library_version("onnxruntime"),
            "api": "InferenceSession (IOBinding)",
            "providers": used,
        }
        if any(p in used for p in _ACCELERATED_PROVIDERS):
            self.notes.append("ran with " + ", ".join(used))
        self._shapes = dict(shapes)
        self._refresh()

    def _refresh(self) -> None:
        by_name = {t.name: t for t in self.info.inputs}
        self.inputs = []
        for node in self._session.get_inputs():
            dtype = _ORT_TYPES.get(node.type, node.type)
            shape = self._shapes.get(node.name)
            if shape is None:
                known = by_name.get(node.name)
                shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in node.shape)
                if known is not None:
                    shape = tuple(d if d > 0 else 1 for d in known.shape_signature) or shape
            self.inputs.append(TensorSpec(node.name, tuple(shape), dtype, None, None))
        self._output_names = [node.name for node in self._session.get_outputs()]
        # Dynamic output dimensions are known only after a run; they stay -1 until then.
        self.outputs = [
            TensorSpec(
                node.name,
                tuple(d if isinstance(d, int) and d > 0 else -1 for d in node.shape),
                _ORT_TYPES.get(node.type, node.type),
                None,
                None,
            )
            for node in self._session.get_outputs()
        ]
        self._binding = self._session.io_binding()
        self._fed: list[np.ndarray] = [np.zeros(s.shape, s.dtype) for s in self.inputs]
        for spec, array in zip(self.inputs, self._fed, strict=True):
            self._binding.bind_cpu_input(spec.name, array)
        for name in self._output_names:
            self._binding.bind_output(name)

    def set_inputs(self, feeds: Sequence[np.ndarray]) -> None:
        for i, (spec, feed) in enumerate(zip(self.inputs, feeds, strict=True)):
            # IOBinding reads the bound array in place: keep it alive and rebind.
            self._fed[i] = np.ascontiguousarray(feed)
            self._binding.bind_cpu_input(spec.name, self._fed[i])

    def invoke(self) -> None:
        self._session.run_with_iobinding(self._binding)

    def timed_call(self) -> Any:
        # The Python wrapper checks WebGPU graph capture on every run; time the native call.
        native = getattr(self._session, "_sess", None)
        binding = getattr(self._binding, "_iobinding", None)
        if native is None or binding is None:  # another onnxruntime layout: the public call
            return self.invoke
        return functools.partial(native.run_with_iobinding, binding, None)

    def get_outputs(self) -> list[np.ndarray]:
        outs = self._binding.copy_outputs_to_cpu()
        if any(-1 in spec.shape for spec in self.outputs):
            self.outputs = [
                TensorSpec(spec.name, tuple(out.shape), spec.dtype, None, None)
                for spec, out in zip(self.outputs, outs, strict=True)
            ]
        return outs

    def resize(self, shapes: Mapping[str, Sequence[int]]) -> None:
        self._shapes.update({k: tuple(v) for k, v in shapes.items()})
        self._refresh()

    def close(self) -> None:
        self._binding = None
        self._session = None
