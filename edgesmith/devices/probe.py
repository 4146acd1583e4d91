"""First contact with a device: what it is, and whether its edgesmith runtime can bench.

The probe is :mod:`edgesmith.runtime.device_info`, sent as the program on the device
Python's stdin (``python -``), so it answers even where edgesmith is not installed yet and
the host can say exactly what to install.

Example:
    >>> local_description()["name"]
    'local'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgesmith import __version__
from edgesmith.core.errors import DeviceError
from edgesmith.devices.device_spec import DeviceSpec
from edgesmith.devices.ssh import SSHClient, last_line
from edgesmith.runtime import device_info
from edgesmith.runtime.device_info import local_device

# A record's ``device`` (ResultRecord.device): these keys, made by describe(name, ssh, info).
DESCRIPTION_KEYS = device_info.DESCRIPTION_KEYS
describe = device_info.description

MIN_PYTHON = (3, 10)
PROBE_TIMEOUT_S = 60.0
# A shell's "command not found" / "cannot execute".
_NOT_FOUND = (126, 127)


def probe_source() -> bytes:
    """The probe program: the source of ``edgesmith.runtime.device_info``."""
    return Path(device_info.__file__).read_bytes()


def local_description() -> dict[str, Any]:
    """This machine as a record's ``device`` (``name`` is ``local``)."""
    return local_device()


def python_of(spec: DeviceSpec) -> str:
    return spec.python or "python3"


def install_command(spec: DeviceSpec) -> str:
    """What to run on the device to get the runtime this host speaks to."""
    return f"{python_of(spec)} -m pip install edgesmith=={__version__}"


def install_fix(spec: DeviceSpec) -> str:
    return (
        f"on {spec.name} run: {install_command(spec)} (the base install: no TensorFlow), "
        "or run this command again with --install to push a wheel of this checkout"
    )


def probe(client: SSHClient) -> dict[str, Any]:
    """Run the probe on the device and return its answer (the keys of ``INFO_KEYS``)."""
    spec = client.spec
    python = python_of(spec)
    result = client.run(
        [python, "-"], stdin=probe_source(), timeout=PROBE_TIMEOUT_S, what="the device check"
    )
    if result.returncode in _NOT_FOUND or (
        result.returncode != 0 and "No such file" in result.stderr
    ):
        raise DeviceError(
            f"no Python at {python} ({last_line(result.stderr) or 'not found'})",
            device=spec.name,
            expected="the path of a Python 3.10+ on the device (python: in the plan, "
            "--device-python on the command line)",
            fix="on the device: python3 -m venv ~/edgesmith-venv, then use "
            "~/edgesmith-venv/bin/python",
        )
    try:
        info = json.loads(result.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        assert isinstance(info, dict)
    except (ValueError, IndexError, AssertionError):
        said = last_line(result.stderr) or result.stdout[-200:].decode("utf-8", "replace")
        raise DeviceError(
            f"{python} did not answer the device check ({said or 'no output'})",
            device=spec.name,
            expected=f"Python {'.'.join(map(str, MIN_PYTHON))} or newer",
        ) from None
    return info


def check_runtime(spec: DeviceSpec, info: dict[str, Any]) -> None:
    """Raise :class:`DeviceError` unless the device runs this version of edgesmith."""
    version = tuple(int(p) for p in str(info.get("python", "0.0")).split(".")[:2] if p.isdigit())
    if version < MIN_PYTHON:
        raise DeviceError(
            f"Python {info.get('python')} at {python_of(spec)}",
            device=spec.name,
            expected=f"Python {'.'.join(map(str, MIN_PYTHON))} or newer",
            fix="install a newer Python there (or point python: at one)",
        )
    there = info.get("edgesmith")
    if there is None:
        raise DeviceError(
            f"edgesmith is not installed for {python_of(spec)}",
            device=spec.name,
            fix=install_fix(spec),
        )
    if there != __version__:
        raise DeviceError(
            f"edgesmith {there} is installed there, this host runs {__version__}",
            device=spec.name,
            expected="the same version on both sides (records and options must agree)",
            fix=install_fix(spec),
        )
