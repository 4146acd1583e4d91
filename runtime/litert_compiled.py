"""LiteRT's ``CompiledModel`` with the GPU accelerator: the litert-gpu backend. TF-free.

The accelerator runs WebGPU over Vulkan (:mod:`edgesmith.runtime.vulkan` finds the device),
with the CPU taking what the GPU does not.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import BackendUnavailableError, ConfigError, ModelFileError
from edgesmith.runtime.modelfile import ModelInfo
from edgesmith.runtime.runner_base import (
    Runner,
    TensorSpec,
    import_runtime,
    library_version,
    load_error,
)

# The tensor types the LiteRT Python API can pass to a CompiledModel's buffers.
_BUFFER_DTYPES = ("float32", "float16", "int32", "int8", "uint8", "bool")


class CompiledModelRunner(Runner):
    """LiteRT's ``CompiledModel`` with the GPU accelerator (CPU fallback for what it leaves)."""

    def __init__(
        self,
        path: Path,
        info: ModelInfo,
        backend: str,
        threads: int,
        *,
        shapes: Mapping[str, tuple[int, ...]],
        swiftshader: bool = False,
        fp32: bool = False,
    ) -> None:
        super().__init__(path, info, backend, threads)
        from edgesmith.runtime import vulkan

        if info.variable_tensors:
            # LiteRT's CompiledModel refuses these at load time ("Variable tensors not yet
            # supported"); say why before the loader prints its own cryptic lines.
            ops = ", ".join(sorted(info.op_counts))
            raise BackendUnavailableError(
                f"{backend} cannot run {path.name}: it keeps state in {info.variable_tensors} "
                f"variable tensor(s) (ops: {ops}), which LiteRT's CompiledModel does not load",
                expected="a model without variable tensors (a fused LSTM has them)",
                fix="benchmark it with --backend litert, or convert the LSTM unrolled "
                "(LSTM(..., unroll=True)) for the GPU",
            )
        if swiftshader:
            vulkan.use_swiftshader()
        vulkan.load_loader()
        devices = vulkan.vulkan_devices()
        device = vulkan.preferred_device(devices)
        if device is None:
            raise BackendUnavailableError(
                f"{backend}: no Vulkan device found",
                expected="a GPU with a Vulkan driver",
                fix=vulkan.missing_gpu_reason()
                or "install your GPU's Vulkan driver (e.g. apt-get install mesa-vulkan-drivers "
                "libvulkan1); without a GPU, apt-get install chromium and add --swiftshader",
            )
        import_runtime("ai_edge_litert", backend)
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.environment import Environment
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, GpuOptions, Options

        self.details = {
            "library": "ai-edge-litert",
            "version": library_version("ai_edge_litert"),
            "api": "CompiledModel",
            "accelerators": "GPU|CPU",
            "device": device.label,
            "gpu_fp32": fp32,
        }
        if device.software:
            self.details["device_kind"] = "software"
            self.notes.append(
                f"ran on {device.name}, a software Vulkan device on the CPU: "
                "this latency is not GPU latency"
            )
        start = time.perf_counter_ns()
        try:
            self._env = Environment.create()
            options = Options(
                hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                cpu_options=CpuOptions(num_threads=threads),
                gpu_options=GpuOptions(enforce_f32=fp32),
            )
            self._model = CompiledModel.from_file(str(path), environment=self._env, options=options)
            self._signature = (
                next(iter(self._model.get_signature_list()), None) or "serving_default"
            )
            self._apply_shapes(shapes)
        except RuntimeError as exc:
            text = str(exc)
            if "adapter" in text.lower() or "webgpu" in text.lower():
                raise BackendUnavailableError(
                    f"{backend}: the GPU accelerator found no usable device ({text.strip()[:200]})",
                    fix="check the Vulkan driver (vulkaninfo), or add --swiftshader",
                ) from exc
            raise load_error(path, backend, exc) from exc
        self.init_ms = (time.perf_counter_ns() - start) / 1e6
        self.fully_accelerated = bool(self._model.is_fully_accelerated())
        if not self.fully_accelerated:
            self.notes.append("not fully accelerated: some ops fell back to the CPU")

    def _apply_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        details = self._model.get_input_tensor_details(self._signature)
        for position, detail in enumerate(details.values()):
            wanted = shapes.get(detail["name"])
            if wanted is not None and tuple(detail["shape"]) != tuple(wanted):
                self._model.resize_input_tensor(position, list(wanted), 0, strict=False)
        self._refresh()

    def _refresh(self) -> None:
        by_name = {t.name: t for t in (*self.info.inputs, *self.info.outputs)}
        in_details = list(self._model.get_input_tensor_details(self._signature).values())
        out_details = list(self._model.get_output_tensor_details(self._signature).values())
        # The file's subgraph order is the order every backend uses for run(); the signature
        # may list the same tensors in another order.
        order = {t.name: i for i, t in enumerate(self.info.inputs)}
        self._in_order = sorted(
            range(len(in_details)), key=lambda i: order.get(in_details[i]["name"], i)
        )
        for detail in (*in_details, *out_details):
            if detail["dtype"] not in _BUFFER_DTYPES:
                raise ModelFileError(
                    f"{self.path}: tensor {detail['name']!r} is {detail['dtype']}, which the "
                    "LiteRT Python API cannot pass to a CompiledModel",
                    expected="float32, float16, int32, int8, uint8 or bool tensors",
                    fix="benchmark it with --backend litert",
                )

        def spec(detail: dict[str, Any]) -> TensorSpec:
            known = by_name.get(detail["name"])
            return TensorSpec(
                detail["name"],
                tuple(int(d) for d in detail["shape"]),
                detail["dtype"],
                known.scale if known else None,
                known.zero_point if known else None,
            )

        self.inputs = [spec(in_details[i]) for i in self._in_order]
        self.outputs = [spec(d) for d in out_details]
        self._in_buffers = self._model.create_input_buffers(0)
        self._out_buffers = self._model.create_output_buffers(0)
        self._in_capsules = [b.capsule for b in self._in_buffers]
        self._out_capsules = [b.capsule for b in self._out_buffers]
        self._out_sizes = [int(np.prod(s.shape)) for s in self.outputs]

    def set_inputs(self, feeds: Sequence[np.ndarray]) -> None:
        for position, feed in zip(self._in_order, feeds, strict=True):
            self._in_buffers[position].write(feed)

    def invoke(self) -> None:
        # The wrapper's run_by_index rebuilds capsule lists on every call; the capsules are
        # fixed, so call the native method with them directly.
        self._model._model.RunByIndex(0, self._in_capsules, self._out_capsules)

    def get_outputs(self) -> list[np.ndarray]:
        return [
            buffer.read(size, spec.dtype).reshape(spec.shape)
            for buffer, size, spec in zip(
                self._out_buffers, self._out_sizes, self.outputs, strict=True
            )
        ]

    def resize(self, shapes: Mapping[str, Sequence[int]]) -> None:
        try:
            self._apply_shapes({k: tuple(v) for k, v in shapes.items()})
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot resize {self.path.name} to {dict(shapes)} ({exc})") from exc

    def close(self) -> None:
        self._in_buffers = self._out_buffers = []
        self._in_capsules = self._out_capsules = []
        self._model = None
