"""What a device is: Python, edgesmith, backends, CPU, cores, memory, OS, board. TF-free.

This module needs only the standard library at import time, because the host sends its
source to a board as ``python -`` (the program on stdin) for the first contact, before it
knows whether edgesmith is installed there. Whatever edgesmith adds (its version, the
backends it can run) is looked up inside ``try`` blocks and left empty where it is missing.
Run as ``python -m edgesmith.runtime.device_info`` (or fed on stdin) it prints one JSON object.

Example:
    >>> info = describe()
    >>> {"backends", "board", "cores", "cpu"} <= set(info), info["cores"] >= 1
    (True, True)
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

# The first contact reads this object; its keys are what the host checks and records.
INFO_KEYS = (
    "python", "python_path", "edgesmith", "backends", "missing", "cpu", "cores",
    "memory_mb", "os", "board", "machine", "home", "cache_home",
)  # fmt: skip


# A benchmark record's ``device`` (ResultRecord.device): these keys, in this order.
DESCRIPTION_KEYS = (
    "name",
    "ssh",
    "board",
    "cpu",
    "cores",
    "memory_mb",
    "os",
    "python",
    "edgesmith",
)
LOCAL = "local"


def _board() -> str | None:
    """The board's name from the device tree (a Raspberry Pi, a Coral Dev Board), else None."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            with open(path, "rb") as handle:
                text = handle.read().replace(b"\x00", b"").decode("utf-8", "replace").strip()
        except OSError:
            continue
        if text:
            return text
    return None


def _memory_mb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return None


def _os_name() -> str:
    """The distribution's name where it says one (Raspberry Pi OS, Mendel), plus the kernel."""
    pretty = ""
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    kernel = f"{platform.system()} {platform.release()}".strip()
    return f"{pretty} ({kernel})" if pretty else platform.platform()


def _cpu() -> str:
    try:  # the runtime's own reader, when edgesmith is there
        from edgesmith.runtime.sysinfo import cpu_model

        return cpu_model()
    except Exception:
        return platform.processor() or platform.machine()


def _edgesmith() -> tuple[str | None, list[str], dict[str, str]]:
    """edgesmith's version here, the backends it can run, and why the others cannot."""
    try:
        import edgesmith
        from edgesmith.runtime.backends import AUTO_ORDER, missing
    except Exception:
        return None, [], {}
    available, absent = [], {}
    for name in AUTO_ORDER:
        try:
            reason = missing(name)
        except Exception as exc:  # a broken runtime says so instead of ending the probe
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            available.append(name)
        else:
            absent[name] = reason
    return getattr(edgesmith, "__version__", None), available, absent


def describe() -> dict[str, Any]:
    """This machine as a device: the keys of :data:`INFO_KEYS`."""
    version, backends, absent = _edgesmith()
    home = os.path.expanduser("~")
    return {
        "python": platform.python_version(),
        "python_path": sys.executable,
        "edgesmith": version,
        "backends": backends,
        "missing": absent,
        "cpu": _cpu(),
        "cores": os.cpu_count() or 1,
        "memory_mb": _memory_mb(),
        "os": _os_name(),
        "board": _board(),
        "machine": platform.machine(),
        "home": home,
        "cache_home": os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"),
    }


def description(name: str, ssh: str | None, info: dict[str, Any]) -> dict[str, Any]:
    """A record's ``device`` from :func:`describe`'s answer (here or on a board)."""
    values = {"name": name, "ssh": ssh, **{k: info.get(k) for k in DESCRIPTION_KEYS[2:]}}
    return {key: values[key] for key in DESCRIPTION_KEYS}


_LOCAL: dict[str, Any] = {}


def local_device() -> dict[str, Any]:
    """This machine as a record's ``device`` (``name`` is ``local``), looked up once.

    Example:
        >>> local_device()["name"], local_device()["ssh"]
        ('local', None)
    """
    if not _LOCAL:
        _LOCAL.update(description(LOCAL, None, describe()))
    return dict(_LOCAL)


if __name__ == "__main__":
    sys.stdout.write(json.dumps(describe()) + "\n")
