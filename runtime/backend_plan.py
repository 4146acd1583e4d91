"""Which backends a benchmark runs: ``auto`` expanded, each checked against file and machine.

Only cheap checks (:mod:`edgesmith.runtime.backends`): planning never loads a runtime.
TF-free.

Example:
    >>> from pathlib import Path
    >>> from edgesmith.runtime.modelfile import ModelInfo
    >>> info = ModelInfo(Path("m.onnx"), "onnx", 1, [], [])
    >>> plan_backends(["litert"], info)[0].skip
    'runs tflite files and m.onnx is onnx: use onnxruntime'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgesmith.runtime.backends import (
    BACKENDS,
    available_backends,
    backend_label,
    missing,
    parse_backend,
)
from edgesmith.runtime.modelfile import ModelInfo


@dataclass(frozen=True)
class BackendPlan:
    """What :func:`~edgesmith.runtime.bench.bench_file` does with one requested backend."""

    backend: str  # with its argument: external:PATH
    skip: str | None  # why it cannot run here (None: it runs)
    explicit: bool  # asked for by name rather than through auto


def plan_backends(
    requested: Sequence[str], info: ModelInfo, *, swiftshader: bool = False
) -> list[BackendPlan]:
    """Expand ``auto`` and check each backend against the file's format and this machine."""
    plans: dict[str, BackendPlan] = {}
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
                plans[label] = BackendPlan(label, reason, explicit)
    return list(plans.values())
