"""A device as a plan or the command line names it: ``local``, or an SSH destination.

Example:
    >>> spec = parse_device({"name": "pi4", "ssh": "pi@raspberrypi.local",
    ...                      "python": "/home/pi/venv/bin/python"})
    >>> spec.name, spec.user, spec.host, spec.port, spec.is_local
    ('pi4', 'pi', 'raspberrypi.local', None, False)
    >>> parse_device("ssh://pi@10.0.0.7:2222").port
    2222
    >>> parse_device("local").is_local
    True
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError

LOCAL = "local"
# Seconds a whole remote step (one bench of every backend) may take before it is a hang.
DEFAULT_TIMEOUT = 1800.0
# [ssh://][user@]host[:port]; IPv6 literals in brackets.
_DESTINATION = re.compile(
    r"^(?:ssh://)?(?:(?P<user>[^@/\s:]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@/\s:\[\]]+)"
    r"(?::(?P<port>\d{1,5}))?/?$"
)
_EXPECTED_DESTINATION = "ssh://user@host[:port] or user@host (as you would type it for ssh)"
_KEYS = ("name", "ssh", "python", "ssh_config", "work_dir", "timeout")


@dataclass(frozen=True)
class DeviceSpec:
    """One device: where to reach it and which Python runs edgesmith there.

    ``ssh`` is None for this machine. ``python`` defaults to ``python3`` on the device's
    PATH; ``ssh_config`` is an OpenSSH config file used instead of ``~/.ssh/config``;
    ``work_dir`` (default ``~/.cache/edgesmith-device``) is the one folder edgesmith
    writes to there.
    """

    name: str = LOCAL
    ssh: str | None = None
    python: str | None = None
    ssh_config: str | None = None
    work_dir: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@:+-]*", self.name):
            raise ConfigError(
                f"device name {self.name!r}",
                expected="letters, digits and . _ - (it names the device in records and reports)",
            )
        if self.ssh is None:
            if self.name != LOCAL:
                raise ConfigError(
                    f"device {self.name!r} has no ssh destination",
                    expected=f"ssh: {_EXPECTED_DESTINATION}, or the name {LOCAL!r}",
                )
            if self.python or self.ssh_config or self.work_dir:
                raise ConfigError(
                    "device local with python, ssh_config or work_dir",
                    expected="these only for a device reached over SSH",
                )
        else:
            if self.name == LOCAL:
                raise ConfigError(
                    f"device named {LOCAL!r} with ssh {self.ssh}",
                    expected=f"another name: {LOCAL!r} is this machine",
                )
            self._destination()
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)):
            raise ConfigError(f"device {self.name}: timeout {self.timeout!r}", expected="seconds")
        if self.timeout <= 0:
            raise ConfigError(f"device {self.name}: timeout {self.timeout}", expected="> 0")

    @property
    def is_local(self) -> bool:
        return self.ssh is None

    def _destination(self) -> re.Match[str]:
        match = _DESTINATION.match(self.ssh or "")
        if match is None or (match["port"] and not 0 < int(match["port"]) < 65536):
            raise ConfigError(
                f"device {self.name}: ssh {self.ssh!r}", expected=_EXPECTED_DESTINATION
            )
        return match

    @property
    def user(self) -> str | None:
        return None if self.is_local else self._destination()["user"]

    @property
    def host(self) -> str | None:
        return None if self.is_local else self._destination()["host"].strip("[]")

    @property
    def port(self) -> int | None:
        port = None if self.is_local else self._destination()["port"]
        return int(port) if port else None

    @property
    def destination(self) -> str | None:
        """``user@host`` as ssh takes it (the port goes to ``-p``)."""
        if self.is_local:
            return None
        return f"{self.user}@{self.host}" if self.user else self.host

    def cache_identity(self) -> dict[str, Any]:
        """What a cached measurement on this device is keyed by (not the probe: a cached
        result must not need the board to be switched on)."""
        if self.is_local:
            return {"name": LOCAL}
        return {"name": self.name, "ssh": self.ssh, "python": self.python or "python3"}

    def resolved(self, folder: Path) -> DeviceSpec:
        """``ssh_config`` relative to ``folder`` (the plan file's)."""
        if self.ssh_config and not Path(self.ssh_config).expanduser().is_absolute():
            return dataclasses.replace(self, ssh_config=str(folder / self.ssh_config))
        return self

    def to_plan(self) -> str | dict[str, Any]:
        """The compact form a plan writes (``local``, or a mapping without defaults)."""
        if self.is_local:
            return LOCAL
        data = {k: getattr(self, k) for k in _KEYS}
        return {
            k: v for k, v in data.items() if (v is not None and v != DEFAULT_TIMEOUT) or k == "name"
        }


def parse_device(entry: Any, *, where: str = "devices") -> DeviceSpec:
    """A device from ``local``, an ``ssh://user@host[:port]`` text or a plan mapping."""
    if isinstance(entry, DeviceSpec):
        return entry
    if isinstance(entry, str):
        text = entry.strip()
        if text == LOCAL:
            return DeviceSpec()
        spec = DeviceSpec(name="device", ssh=text)  # validated here, named below
        return dataclasses.replace(spec, name=spec.host or "device")
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where}: {entry!r}"[:200],
            expected=f"{LOCAL!r}, ssh://user@host or a mapping with name, ssh, python",
        )
    unknown = set(entry) - set(_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown)}", expected=f"some of {list(_KEYS)}"
        )
    for key in ("name", "ssh", "python", "ssh_config", "work_dir"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: {value!r}"[:200], expected="a text")
    values = {k: v for k, v in entry.items() if v is not None}
    if "name" not in values:
        if values.get("ssh") is None:
            raise ConfigError(f"{where}: {entry!r}"[:200], expected="name: and ssh:")
        values["name"] = parse_device(values["ssh"], where=where).name
    return DeviceSpec(**values)


def device_label(device: dict[str, Any] | None) -> str:
    """The device name of a record (``local`` when the record names none)."""
    return str((device or {}).get("name") or LOCAL)
