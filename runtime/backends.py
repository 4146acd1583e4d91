"""The backends ``edgesmith bench`` knows, and what each one needs to run here.

Checks here are cheap and import no runtime (they look for installed packages and shared
libraries), so listing or skipping a backend never loads a native library. The runner that
actually opens a model makes the final check and raises
:class:`~edgesmith.core.errors.BackendUnavailableError` with the same kind of message.

Example:
    >>> parse_backend("external:/opt/libdelegate.so")
    ('external', '/opt/libdelegate.so')
    >>> BACKENDS["litert"].format
    'tflite'
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import importlib.util
import os
import platform
from dataclasses import dataclass

from edgesmith.core.errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class Backend:
    """One ``--backend`` value: the file format it runs and what it is."""

    name: str
    format: str
    summary: str
    accelerator: bool = False  # reports fully_accelerated


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("litert", "tflite", "LiteRT Interpreter on the CPU, XNNPACK unless --no-xnnpack"),
        Backend(
            "litert-gpu",
            "tflite",
            "LiteRT CompiledModel, GPU accelerator (WebGPU over Vulkan) with CPU fallback",
            accelerator=True,
        ),
        Backend("tflite-runtime", "tflite", "tflite_runtime Interpreter on the CPU"),
        Backend("onnxruntime", "onnx", "ONNX Runtime: CPU, with CUDA / TensorRT when present"),
        Backend("edgetpu", "tflite", "Edge TPU delegate (libedgetpu.so.1)", accelerator=True),
        Backend(
            "external", "tflite", "a TFLite external delegate: external:PATH", accelerator=True
        ),
    )
}
AUTO_ORDER = ("litert", "litert-gpu", "tflite-runtime", "edgetpu", "onnxruntime")

EDGETPU_LIBRARY = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}
EDGETPU_HELP = (
    "install the Edge TPU runtime (libedgetpu1-std from Coral's Debian repository, "
    "https://coral.ai/software/#debian-packages) and plug in a Coral device"
)
INSTALL_HELP = {
    "ai_edge_litert": "pip install ai-edge-litert (it needs numpy 2; with numpy<2 use "
    "--backend tflite-runtime)",
    "tflite_runtime": "pip install tflite-runtime (Linux wheels up to Python 3.11; it needs numpy<2)",
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu for CUDA / TensorRT)",
}
PACKAGE_NAMES = {
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
    "onnxruntime": "onnxruntime",
}


def parse_backend(value: str) -> tuple[str, str | None]:
    """``(name, argument)`` of a ``--backend`` value; ``external:PATH`` carries its path."""
    name, _, argument = value.partition(":")
    name = name.strip().lower()
    if name == "external":
        if not argument:
            raise ConfigError(
                f"--backend {value}",
                expected="external:PATH naming a TFLite external delegate library",
                fix="for example --backend external:/usr/lib/libvx_delegate.so",
            )
        return name, argument
    if name == "auto" and not argument:
        return name, None
    if name not in BACKENDS or argument:
        known = [*BACKENDS, "auto"]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownNameError(
            f"unknown backend '{value}'",
            expected="one of "
            + ", ".join(b if b != "external" else "external:PATH" for b in known),
            fix=f"{hint}see edgesmith bench --help",
        )
    return name, None


def backend_label(name: str, argument: str | None = None) -> str:
    return f"{name}:{argument}" if argument else name


def has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def interpreter_module() -> str | None:
    """The TFLite interpreter package to use for delegates: ai_edge_litert, else tflite_runtime."""
    for module in ("ai_edge_litert", "tflite_runtime"):
        if has_module(module):
            return module
    return None


def edgetpu_library() -> str | None:
    """The Edge TPU runtime library's name when it can be loaded here, else None."""
    name = EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
    if ctypes.util.find_library("edgetpu"):
        return name
    try:
        ctypes.CDLL(name)  # also finds it through LD_LIBRARY_PATH, which find_library skips
    except OSError:
        return None
    return name


def missing(name: str, argument: str | None = None, *, swiftshader: bool = False) -> str | None:
    """Why backend ``name`` cannot run here (what is missing and how to get it), or None."""
    if name in ("litert", "litert-gpu") and not has_module("ai_edge_litert"):
        return f"ai-edge-litert is not installed: {INSTALL_HELP['ai_edge_litert']}"
    if name == "litert-gpu":
        from edgesmith.runtime.vulkan import icd_manifests, missing_gpu_reason, swiftshader_icd

        if swiftshader:
            if swiftshader_icd() is None:
                return (
                    "SwiftShader's Vulkan ICD is not installed "
                    "(/usr/lib/chromium/vk_swiftshader_icd.json): apt-get install chromium"
                )
            return None
        if not icd_manifests():
            return missing_gpu_reason()
        return None
    if name == "tflite-runtime" and not has_module("tflite_runtime"):
        return f"tflite-runtime is not installed: {INSTALL_HELP['tflite_runtime']}"
    if name == "onnxruntime" and not has_module("onnxruntime"):
        return f"onnxruntime is not installed: {INSTALL_HELP['onnxruntime']}"
    if name in ("edgetpu", "external"):
        if interpreter_module() is None:
            return (
                "no TFLite interpreter is installed to load the delegate: "
                + INSTALL_HELP["ai_edge_litert"]
            )
        if name == "edgetpu" and edgetpu_library() is None:
            library = EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
            return f"{library} (the Edge TPU runtime) was not found: {EDGETPU_HELP}"
        if name == "external" and argument and not os.path.isfile(argument):
            return (
                f"external delegate library {argument} not found: "
                "pass the path of the delegate's .so file"
            )
    return None


def available_backends(fmt: str, *, swiftshader: bool = False) -> list[str]:
    """Every backend that can run a ``fmt`` file here (what ``--backend auto`` means)."""
    return [
        name
        for name in AUTO_ORDER
        if BACKENDS[name].format == fmt and missing(name, swiftshader=swiftshader) is None
    ]
