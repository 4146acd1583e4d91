"""What a benchmark ran on (machine, CPU, libraries) and how much memory the process holds. TF-free.

Memory comes from the kernel, not from a package: ``/proc/self/status`` (VmRSS, VmHWM) on
Linux and ``resource.getrusage`` (ru_maxrss) elsewhere. Values are in MiB (2**20 bytes).

Example:
    >>> rss_mb() > 0 and peak_rss_mb() >= rss_mb() - 1  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from functools import lru_cache
from typing import Any

from edgesmith.core.records import library_versions

RUNTIME_PACKAGES = ("edgesmith", "numpy", "ai-edge-litert", "tflite-runtime", "onnxruntime")


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Resident memory of this process now (None where the OS does not say)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else round(kb / 1024, 2)


def peak_rss_mb() -> float:
    """The most resident memory this process has held since it started (its own image).

    Linux's VmHWM is per process image. ``ru_maxrss`` is only the fallback: it survives
    ``exec``, so in a child started by a large parent it reports the parent's size.
    """
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return round(hwm / 1024, 2)
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    return round(maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024, 2)


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (or the board's, on a Raspberry Pi), as the OS reports it."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    for key in ("model name", "hardware", "model", "cpu model", "processor"):
        value = fields.get(key, "")
        if value and not value.isdigit():
            return value
    return platform.processor() or platform.machine()


# The instruction-set features that decide which int8 / float kernels XNNPACK, ruy and ONNX
# Runtime pick, in the order they are reported: /proc/cpuinfo's name -> the name recorded.
_X86_FEATURES = (
    ("sse4_2", "sse4_2"), ("avx", "avx"), ("avx2", "avx2"), ("fma", "fma"), ("f16c", "f16c"),
    ("avx512f", "avx512f"), ("avx512bw", "avx512bw"), ("avx512vl", "avx512vl"),
    ("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni"), ("avxvnni", "avx_vnni"),
    ("avx512_bf16", "avx512_bf16"), ("amx_tile", "amx_tile"), ("amx_int8", "amx_int8"),
    ("amx_bf16", "amx_bf16"),
)  # fmt: skip
_ARM_FEATURES = (
    ("neon", "neon"), ("asimd", "asimd"), ("asimddp", "asimddp"), ("i8mm", "i8mm"),
    ("sve", "sve"), ("sve2", "sve2"), ("fphp", "fphp"), ("asimdhp", "asimdhp"), ("bf16", "bf16"),
)  # fmt: skip


def cpu_features(cpuinfo: str | None = None) -> list[str]:
    """The CPU's instruction-set features that decide int8 and float kernels, in a fixed order.

    Read from the ``flags`` (x86) or ``Features`` (ARM) line of ``/proc/cpuinfo`` (or the
    text ``cpuinfo``); only the features present are listed, and an empty list where the
    file cannot be read. ``avxvnni`` is reported as ``avx_vnni``.

    Example:
        >>> cpu_features("flags : fpu sse4_2 avx avx2 fma avx512_vnni")
        ['sse4_2', 'avx', 'avx2', 'fma', 'avx512_vnni']
        >>> cpu_features("Features : fp asimd asimddp i8mm")
        ['asimd', 'asimddp', 'i8mm']
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
                cpuinfo = info.read()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
            break  # every core lists the same features; the first line says it
    out: list[str] = []
    for name, shown in (*_X86_FEATURES, *_ARM_FEATURES):
        if name in flags and shown not in out:
            out.append(shown)
    return out


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def ray_placement() -> dict[str, str]:
    """The Ray node (id and hostname) when this process is a Ray worker running a task; else {}.

    Ray is never imported here: a process that runs Ray tasks has imported it already, and
    one that has not is not a Ray worker.

    Example:
        >>> ray_placement()  # in a process that is not a Ray worker
        {}
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    try:
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:  # the driver, not a worker
            return {}
        return {"ray_node_id": context.get_node_id(), "hostname": socket.gethostname()}
    except Exception:  # a Ray without this API: where it ran is not worth a failed stage
        return {}


def environment(**extra: Any) -> dict[str, Any]:
    """The machine, CPU (model and instruction-set features), OS and library versions, plus
    ``extra`` (and the Ray node, in a Ray task)."""
    return {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(*RUNTIME_PACKAGES),
        **ray_placement(),
        **extra,
    }
