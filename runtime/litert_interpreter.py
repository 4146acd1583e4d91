"""The TFLite ``Interpreter`` runners: litert, tflite-runtime, edgetpu and external:PATH.

One class, :class:`InterpreterRunner`, runs the Interpreter of ai_edge_litert or
tflite_runtime; the Edge TPU and external-delegate backends are the same runner with a
delegate loaded first. TF-free: the runtime is imported when a runner opens.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import BackendUnavailableError, ConfigError
from edgesmith.runtime.backends import (
    EDGETPU_HELP,
    PACKAGE_NAMES,
    edgetpu_library,
    interpreter_module,
)
from edgesmith.runtime.modelfile import ModelInfo
from edgesmith.runtime.runner_base import (
    Runner,
    TensorSpec,
    import_runtime,
    library_version,
    load_error,
)


class InterpreterRunner(Runner):
    """The TFLite ``Interpreter`` of ai_edge_litert or tflite_runtime, with optional delegates."""

    def __init__(
        self,
        path: Path,
        info: ModelInfo,
        backend: str,
        threads: int,
        *,
        module: str,
        shapes: Mapping[str, tuple[int, ...]],
        xnnpack: bool = True,
        delegates: Sequence[Any] = (),
    ) -> None:
        super().__init__(path, info, backend, threads)
        lib = import_runtime(module, backend)
        kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": threads}
        if delegates:
            kwargs["experimental_delegates"] = list(delegates)
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = (
                lib.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        self.details = {
            "library": PACKAGE_NAMES[module],
            "version": library_version(module),
            "api": "Interpreter",
            "xnnpack": bool(xnnpack),
        }
        start = time.perf_counter_ns()
        try:
            self._interpreter = lib.Interpreter(**kwargs)
            self._apply_shapes(shapes)
        except (ValueError, RuntimeError) as exc:
            raise load_error(path, backend, exc) from exc
        self.init_ms = (time.perf_counter_ns() - start) / 1e6
        self._refresh()

    def _apply_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        for detail in self._interpreter.get_input_details():
            wanted = shapes.get(detail["name"])
            if wanted is not None and tuple(detail["shape"]) != tuple(wanted):
                self._interpreter.resize_tensor_input(detail["index"], list(wanted), strict=False)
        self._interpreter.allocate_tensors()

    def _refresh(self) -> None:
        def spec(detail: dict[str, Any]) -> TensorSpec:
            scale, zero_point = detail.get("quantization", (0.0, 0))
            return TensorSpec(
                detail["name"],
                tuple(int(d) for d in detail["shape"]),
                np.dtype(detail["dtype"]).name,
                float(scale) if scale else None,
                int(zero_point) if scale else None,
            )

        in_details = self._interpreter.get_input_details()
        out_details = self._interpreter.get_output_details()
        self.inputs = [spec(d) for d in in_details]
        self.outputs = [spec(d) for d in out_details]
        self._in_index = [d["index"] for d in in_details]
        self._out_index = [d["index"] for d in out_details]

    def set_inputs(self, feeds: Sequence[np.ndarray]) -> None:
        for index, feed in zip(self._in_index, feeds, strict=True):
            self._interpreter.set_tensor(index, feed)

    def invoke(self) -> None:
        self._interpreter.invoke()

    def timed_call(self) -> Any:
        # The wrapper's invoke() first walks its tensors' reference counts to check that no
        # NumPy view is alive (none is: inputs and outputs are copied); time the C++ Invoke.
        native = getattr(self._interpreter, "_interpreter", None)
        return self.invoke if native is None else native.Invoke

    def get_outputs(self) -> list[np.ndarray]:
        return [self._interpreter.get_tensor(index) for index in self._out_index]

    def resize(self, shapes: Mapping[str, Sequence[int]]) -> None:
        try:
            self._apply_shapes({k: tuple(v) for k, v in shapes.items()})
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot resize {self.path.name} to {dict(shapes)} ({exc})") from exc
        self._refresh()

    def reset_state(self) -> None:
        if self.info.variable_tensors:
            self._interpreter.reset_all_variables()

    def close(self) -> None:
        self._interpreter = None

    def delegated_everything(self) -> bool | None:
        """True when one delegate node replaced the whole graph (nothing left for the CPU).

        A delegate node's inputs that some other node produces mean that node stayed on the
        CPU; graph outputs it does not produce mean CPU ops run after it.
        """
        try:
            # The wrapper's native object: never kept in an attribute, because the
            # interpreter refuses to run while anything else holds a reference to it.
            native = self._interpreter._interpreter
            nodes = [
                (native.NodeName(i), set(native.NodeInputs(i)), set(native.NodeOutputs(i)))
                for i in range(native.NumNodes())
            ]
            graph_in, graph_out = set(native.InputIndices()), set(native.OutputIndices())
            del native
        except Exception:  # private API of the interpreter wrapper; absent in some builds
            return None
        delegated = [n for n in nodes if n[0] == "DELEGATE"]
        if len(delegated) != 1:
            return False
        produced = set().union(*(outs for name, _, outs in nodes if name != "DELEGATE"))
        _, ins, outs = delegated[0]
        inputs_ok = all(t < 0 or t in graph_in or t not in produced for t in ins)
        return inputs_ok and graph_out <= outs


def _delegate(
    module: str, library: str, options: Mapping[str, Any], backend: str, help_text: str
) -> Any:
    """The delegate ``library`` loaded through ``module``'s ``load_delegate``."""
    lib = import_runtime(module, backend)
    try:
        return lib.load_delegate(library, {str(k): str(v) for k, v in options.items()})
    except (ValueError, OSError, RuntimeError) as exc:
        # load_delegate puts the delegate's own error report on the lines after the first.
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise BackendUnavailableError(
            f"{backend}: the delegate {library} did not load ({text or type(exc).__name__})",
            fix=help_text,
        ) from exc


def open_edgetpu(
    path: Path, info: ModelInfo, threads: int, shapes: Mapping[str, tuple[int, ...]], options: dict
) -> InterpreterRunner:
    """An Interpreter with the Edge TPU delegate (libedgetpu) for the edgetpu backend."""
    library = edgetpu_library()
    if library is None:  # checked by missing() too; kept for callers that skip it
        raise BackendUnavailableError(f"edgetpu: libedgetpu.so.1 was not found: {EDGETPU_HELP}")
    module = "tflite_runtime" if interpreter_module() == "tflite_runtime" else "ai_edge_litert"
    delegate = _delegate(
        module, library, options.get("delegate_options") or {}, "edgetpu",
        "plug in a Coral device (USB, PCIe or Dev Board) and check it shows in lsusb / lspci",
    )  # fmt: skip
    runner = InterpreterRunner(
        path, info, "edgetpu", threads, module=module, shapes=shapes,
        xnnpack=options.get("xnnpack", True), delegates=[delegate],
    )  # fmt: skip
    runner.details["delegate"] = library
    # Edge TPU models carry their accelerated part as edgetpu-custom-op; anything else runs
    # on the CPU, as edgetpu_compiler reports.
    runner.fully_accelerated = info.fully_edgetpu
    if not info.compiled_for_edgetpu:
        runner.notes.append(
            "the model has no edgetpu-custom-op, so everything ran on the CPU: compile it "
            "with edgetpu_compiler (it needs a full-integer int8 model)"
        )
    elif not info.fully_edgetpu:
        runner.notes.append(f"{info.ops - info.edgetpu_ops} of {info.ops} ops run on the CPU")
    return runner


def open_external(
    path: Path,
    info: ModelInfo,
    library: str,
    threads: int,
    shapes: Mapping[str, tuple[int, ...]],
    options: dict,
) -> InterpreterRunner:
    """An Interpreter with the TFLite external delegate at ``library`` (external:PATH)."""
    module = interpreter_module() or "ai_edge_litert"
    label = f"external:{library}"
    delegate = _delegate(
        module, library, options.get("delegate_options") or {}, label,
        "check that the library is a TFLite external delegate built for this interpreter",
    )  # fmt: skip
    # XNNPACK stays off so that every DELEGATE node is this delegate's: what it left behind
    # runs on the builtin CPU kernels, and fully_accelerated is exact.
    runner = InterpreterRunner(
        path, info, label, threads, module=module, shapes=shapes, xnnpack=False,
        delegates=[delegate],
    )  # fmt: skip
    runner.details["delegate"] = library
    runner.fully_accelerated = runner.delegated_everything()
    runner.notes.append(
        "ops the delegate does not take run on the builtin CPU kernels (no XNNPACK)"
    )
    return runner
