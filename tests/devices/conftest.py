"""A real board on loopback: a user-level ``sshd`` and a virtual environment without TensorFlow.

``sshd`` is Debian's openssh-server (``make test`` installs it) started on a free loopback
port with a host key and a client key generated for the session; the client side is an
OpenSSH config file naming that key and a known_hosts file holding that host key. The
"board" Python is a virtual environment with only the base install (numpy, rich,
ai-edge-litert, onnxruntime at this environment's versions, from PyPI) kept between runs
under the user's cache; this checkout's wheel goes into it through ``--install``'s own code
whenever the sources change.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from edgesmith.devices.device_spec import DeviceSpec
from tests.conftest import REPO
from tests.tiny_models import build_once

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
BOARD_PACKAGES = ("numpy", "rich", "ai-edge-litert", "onnxruntime")
SOURCES = ("pyproject.toml", "edgesmith", "runtime", "zoo", "convert", "compress")


def _sshd() -> str | None:
    found = shutil.which("sshd")
    return found or next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgesmith-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class Loopback:
    """The test sshd and how to reach it."""

    folder: Path
    port: int
    user: str
    host_key: Path
    client_key: Path
    process: subprocess.Popen

    def client_config(
        self, name: str = "client.conf", *, key: Path | None = None, known_hosts: str | None = None
    ) -> Path:
        """An OpenSSH client config for host ``board``: the test key and host key unless
        other ones are given."""
        if known_hosts is None:
            known_hosts = str(self.folder / "known_hosts")
        path = self.folder / name
        path.write_text(
            "Host board\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {self.user}\n"
            f"  IdentityFile {key or self.client_key}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n"
        )
        return path

    def children(self) -> list[int]:
        """The sshd processes serving connections now (children of the listening one)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after the ')'.
            if int(stat.rpartition(")")[2].split()[1]) == self.process.pid:
                pids.append(int(entry.name))
        return pids

    def kill_connections(self) -> int:
        killed = 0
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        return killed


def start_sshd(folder: Path) -> Loopback:
    """sshd -D on a free loopback port, with keys made here; skips when sshd is absent."""
    sshd = _sshd()
    if sshd is None:
        pytest.skip(
            "sshd is not installed: apt-get install openssh-server (make test installs it as root)"
        )
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("the OpenSSH client is not installed: apt-get install openssh-client")
    if os.geteuid() == 0:
        # sshd run by root wants its privilege-separation folder (the service creates it).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    host_key = _keygen(folder / "host_key")
    client_key = _keygen(folder / "client_key")
    port = _free_port()
    (folder / "board-cache").mkdir(exist_ok=True)
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {host_key}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {client_key}.pub\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        # The board's ~/.cache: keeps the work folder of these tests out of the real home.
        f"SetEnv XDG_CACHE_HOME={folder / 'board-cache'}\n"
        "LogLevel ERROR\n"
    )
    log = (folder / "sshd.log").open("wb")
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    host_public = (folder / "host_key.pub").read_text().split()[:2]
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_public)}\n")
    return Loopback(folder, port, getpass.getuser(), host_key, client_key, process)


def stop_sshd(loopback: Loopback) -> None:
    loopback.process.terminate()
    try:
        loopback.process.wait(10)
    except subprocess.TimeoutExpired:
        loopback.process.kill()


@pytest.fixture(scope="session")
def loopback(tmp_path_factory: pytest.TempPathFactory):
    """The session's sshd (one per xdist worker)."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    stop_sshd(server)


def _sources_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        root = REPO / name
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            digest.update(str(file.relative_to(REPO)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def board_venv() -> Path:
    """The board's virtual environment (the base install's dependencies, no edgesmith yet),
    built once per set of versions and kept under the user's cache."""
    from filelock import FileLock

    pins = [f"{p}=={metadata.version(p)}" for p in BOARD_PACKAGES]
    key = hashlib.sha256(
        "\n".join([*pins, (REPO / "pyproject.toml").read_text(), sys.version]).encode()
    ).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = cache / "edgesmith-tests" / f"board-venv-{key}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".complete").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            venv.EnvBuilder(with_pip=True, clear=True).create(folder)
            done = subprocess.run(
                [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", *pins],
                capture_output=True,
                text=True,
                timeout=900,
            )  # fmt: skip
            if done.returncode != 0:
                shutil.rmtree(folder, ignore_errors=True)
                pytest.fail(f"building the board venv failed: {done.stderr[-2000:]}")
            (folder / ".complete").write_text("")
    return folder


@pytest.fixture(scope="session")
def board_python(loopback: Loopback, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The board's Python with this checkout installed over SSH (``--install``'s code)."""
    from edgesmith.devices.remote_bench import RemoteDevice

    folder = board_venv()
    python = str(folder / "bin" / "python")

    def install(_: Path) -> None:
        marker = folder / ".edgesmith-sources"
        if marker.is_file() and marker.read_text() == _sources_hash():
            return
        config = loopback.client_config("install.conf")
        spec = DeviceSpec(name="board", ssh="board", python=python, ssh_config=str(config))
        RemoteDevice(spec).install()
        marker.write_text(_sources_hash())

    build_once(tmp_path_factory, "board-install", install)
    return python


@pytest.fixture
def board(loopback: Loopback, board_python: str, tmp_path: Path) -> DeviceSpec:
    """The loopback board as a device, with its own work folder."""
    return DeviceSpec(
        name="loop",
        ssh="board",
        python=board_python,
        ssh_config=str(loopback.client_config()),
        work_dir=str(tmp_path / "work"),
    )
