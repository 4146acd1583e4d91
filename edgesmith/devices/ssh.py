"""Commands and files over the system's OpenSSH client, with each failure named in one line.

The user's own ``ssh`` does the connecting, so ``~/.ssh/config``, keys, the agent and
``known_hosts`` work as they do in a terminal; a device may name its own config file
instead (``ssh -F FILE``). Every call runs ``ssh`` from an argument list; the remote
command, which OpenSSH hands to the remote shell as one string, is built with
:func:`shlex.join`, so no argument is ever read by a shell unquoted.

Host keys are verified: ``BatchMode=yes`` makes OpenSSH refuse an unknown host instead of
asking (the user's config may still say ``StrictHostKeyChecking accept-new``) and never
prompts for a password, so nothing can hang on a question nobody sees.

Example:
    >>> from edgesmith.devices.device_spec import parse_device
    >>> client = SSHClient(parse_device("ssh://pi@raspberrypi.local:2222"))
    >>> client.ssh_argv(["python3", "-V"])[-2:]
    ['pi@raspberrypi.local', 'python3 -V']
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edgesmith.core.errors import DeviceError
from edgesmith.devices.device_spec import DeviceSpec

SSH = "ssh"
CONNECT_TIMEOUT_S = 15
# A connection that answers no keep-alive for this long is dropped (and said so).
ALIVE_INTERVAL_S = 5
ALIVE_COUNT = 3
# OpenSSH exits 255 for its own errors; anything else is the remote command's status.
SSH_FAILED = 255

# What OpenSSH says -> (what happened, how to fix it). First match wins.
_FAULTS: tuple[tuple[str, str, str], ...] = (
    (
        r"Host key verification failed|host key .*(is not known|has changed)|"
        r"REMOTE HOST IDENTIFICATION HAS CHANGED|No \S+ host key is known",
        "unknown or changed host key",
        "connect once by hand (ssh {dest}) and check the fingerprint it shows, or add the "
        "host's key to the known_hosts file your ssh config names",
    ),
    (
        r"Permission denied|Too many authentication failures|no mutual signature",
        "authentication refused",
        "install your public key there (ssh-copy-id {dest}) or name the key with IdentityFile "
        "in the ssh config; edgesmith never asks for a password",
    ),
    (
        r"Could not resolve hostname|Name or service not known|Temporary failure in name",
        "unreachable (the host name does not resolve)",
        "check the name, or use the board's IP address",
    ),
    (
        r"Connection refused|No route to host|Network is unreachable|"
        r"Connection timed out|Operation timed out|connect to host",
        "unreachable",
        "check that the board is on, on the network, and runs an SSH server "
        "(sudo systemctl enable --now ssh on Raspberry Pi OS)",
    ),
    (
        r"Connection closed|Connection reset|Broken pipe|closed by remote host|"
        r"Timeout, server .* not responding|client_loop: send disconnect|"
        r"lost connection|kex_exchange_identification",
        "connection dropped",
        "check the board's power and network, then run again (finished results are kept)",
    ),
)


@dataclass(frozen=True)
class RemoteResult:
    """What a remote command returned."""

    returncode: int
    stdout: bytes
    stderr: str


class SSHClient:
    """Runs commands on one device through ``ssh``; raises :class:`DeviceError` on faults."""

    def __init__(self, spec: DeviceSpec, *, ssh: str = SSH) -> None:
        self.spec = spec
        self.ssh = ssh

    @property
    def name(self) -> str:
        return self.spec.name

    def options(self) -> list[str]:
        """The ``ssh`` options every call uses (before the destination)."""
        argv = []
        if self.spec.ssh_config:
            config = Path(self.spec.ssh_config).expanduser()
            if not config.is_file():
                raise DeviceError(
                    f"ssh_config {config} does not exist",
                    device=self.name,
                    expected="an OpenSSH client config file",
                )
            argv += ["-F", str(config)]
        if self.spec.port:
            argv += ["-p", str(self.spec.port)]
        argv += [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}",
            "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
            "-T",
        ]  # fmt: skip
        return argv

    def ssh_argv(self, command: Sequence[str]) -> list[str]:
        """The full ``ssh`` argument list running ``command`` (quoted for the remote shell)."""
        return [self.ssh, *self.options(), "--", str(self.spec.destination), shlex.join(command)]

    def run(
        self,
        command: Sequence[str],
        *,
        stdin: bytes | IO[bytes] | None = None,
        timeout: float | None = None,
        what: str = "the command",
    ) -> RemoteResult:
        """Run ``command`` there; connection faults and hangs raise :class:`DeviceError`.

        A non-zero status of the command itself is returned, not raised: the caller knows
        what it means (edgesmith bench exits 2 when one backend failed).
        """
        argv = self.ssh_argv(command)
        feed = stdin if isinstance(stdin, bytes) else None
        try:
            done = subprocess.run(
                argv,
                input=feed,
                stdin=None if feed is not None else (stdin or subprocess.DEVNULL),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DeviceError(
                f"{what} did not finish within {timeout:g} s (the device hangs or is too slow)",
                device=self.name,
                fix="check the board (top, dmesg); give the device a longer timeout: in the "
                "plan, or with --timeout",
            ) from None
        except FileNotFoundError:
            raise DeviceError(
                f"the OpenSSH client ({self.ssh}) is not installed here",
                device=self.name,
                fix="apt-get install openssh-client (or your system's OpenSSH package)",
            ) from None
        stderr = done.stderr.decode("utf-8", "replace")
        if done.returncode == SSH_FAILED:
            raise self.fault(stderr)
        return RemoteResult(done.returncode, done.stdout, stderr)

    def fault(self, stderr: str) -> DeviceError:
        """The :class:`DeviceError` for what ``ssh`` wrote when it failed."""
        dest = self.spec.ssh or ""
        said = last_line(stderr) or "ssh failed with no message"
        for pattern, problem, fix in _FAULTS:
            if re.search(pattern, stderr, re.IGNORECASE):
                return DeviceError(
                    f"{problem} ({dest}: {said})", device=self.name, fix=fix.format(dest=dest)
                )
        return DeviceError(f"ssh {dest} failed: {said}", device=self.name)


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (where tools put the reason), shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # OpenSSH's warnings ("Warning: Permanently added ...") are not the reason.
    reasons = [line for line in lines if not line.startswith("Warning:")] or lines
    return reasons[-1][:300] if reasons else ""
