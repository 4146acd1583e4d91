"""Benchmark on a device over SSH: check it, copy the files once, run ``edgesmith bench`` there.

Files go to ``<work_dir>/files/<sha256>/<name>`` on the device (content-addressed, so a
model or eval set already there is reused), written under a temporary name, checked
against the hash and renamed; the bench runs with ``TMPDIR`` inside the work folder, so
edgesmith writes nothing anywhere else there. The records come back as JSON (``edgesmith
bench --json -``) and get the device's description.

Example:
    >>> from edgesmith.devices.device_spec import parse_device
    >>> device = RemoteDevice(parse_device({"name": "pi4", "ssh": "pi@raspberrypi.local"}))
    >>> records = device.bench("cnn-int8.tflite", ["litert"], eval_set="test.npz",
    ...                        runs=50)  # doctest: +SKIP
    >>> records[0].device["board"]  # doctest: +SKIP
    'Raspberry Pi 4 Model B Rev 1.4'
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgesmith.core.errors import ConfigError, DeviceError, EdgesmithError
from edgesmith.core.records import ResultRecord
from edgesmith.devices import probe as probing
from edgesmith.devices.device_spec import DeviceSpec
from edgesmith.devices.ssh import SSHClient, last_line

WORK_FOLDER = "edgesmith-device"  # under the device's ~/.cache (XDG_CACHE_HOME)
# Seconds for copying one file or a check; a file copy adds time per MiB below.
STEP_TIMEOUT_S = 120.0
COPY_S_PER_MIB = 2.0
INSTALL_TIMEOUT_S = 900.0

# Run by the device's Python: create the work folders, list which files are there already.
_PREPARE = (
    "import os,sys\n"
    "for d in sys.argv[1:3]: os.makedirs(d, exist_ok=True)\n"
    "print('\\n'.join(p for p in sys.argv[3:] if os.path.isfile(p)))\n"
)
# Run by the device's Python with a file on stdin: write it beside its place, check it
# against its hash, then rename it into place (a dropped copy leaves no file that counts).
_RECEIVE = (
    "import hashlib,os,sys\n"
    "dest, want = sys.argv[1], sys.argv[2]\n"
    "os.makedirs(os.path.dirname(dest), exist_ok=True)\n"
    "tmp = '%s.part-%d' % (dest, os.getpid())\n"
    "digest = hashlib.sha256()\n"
    "with open(tmp, 'wb') as out:\n"
    "    while True:\n"
    "        block = sys.stdin.buffer.read(1 << 20)\n"
    "        if not block: break\n"
    "        digest.update(block); out.write(block)\n"
    "if digest.hexdigest() != want:\n"
    "    os.unlink(tmp); sys.exit('copy of %s arrived incomplete' % dest)\n"
    "os.replace(tmp, dest)\n"
)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RemoteDevice:
    """One device reached over SSH, checked on first use and reused for every bench."""

    def __init__(self, spec: DeviceSpec, *, ssh: str = "ssh") -> None:
        if spec.is_local:
            raise ConfigError("RemoteDevice(local)", expected="a device with an ssh destination")
        self.spec = spec
        self.client = SSHClient(spec, ssh=ssh)
        self._info: dict[str, Any] | None = None
        self._present: set[str] = set()  # remote paths known to hold their content

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def python(self) -> str:
        return probing.python_of(self.spec)

    def info(self) -> dict[str, Any]:
        """The probe's answer (run once)."""
        if self._info is None:
            self._info = probing.probe(self.client)
        return self._info

    def check(self, *, install: bool = False) -> dict[str, Any]:
        """Probe the device and make sure it runs this edgesmith; with ``install``, push a
        wheel of this checkout when it does not. Returns the record's ``device``."""
        info = self.info()
        try:
            probing.check_runtime(self.spec, info)
        except DeviceError:
            if not install:
                raise
            self.install()
            self._info = None
            probing.check_runtime(self.spec, self.info())
        return self.description()

    def description(self) -> dict[str, Any]:
        return probing.describe(self.name, self.spec.ssh, self.info())

    # -- the work folder ---------------------------------------------------------------

    def work_dir(self) -> str:
        if self.spec.work_dir:
            folder = self.spec.work_dir
            if folder.startswith("~/"):
                folder = posixpath.join(self.info()["home"], folder[2:])
            if not posixpath.isabs(folder):
                raise ConfigError(
                    f"device {self.name}: work_dir {self.spec.work_dir!r}",
                    expected="an absolute path on the device (or ~/...)",
                )
            return folder
        return posixpath.join(self.info()["cache_home"], WORK_FOLDER)

    def remote_path(self, local: str | os.PathLike[str], sha: str) -> str:
        return posixpath.join(self.work_dir(), "files", sha, Path(local).name)

    def push(self, files: Sequence[str | os.PathLike[str]]) -> list[str]:
        """Copy ``files`` into the work folder unless they are there; their remote paths."""
        hashes = [file_sha256(f) for f in files]
        remote = [self.remote_path(f, sha) for f, sha in zip(files, hashes, strict=True)]
        unknown = [p for p in remote if p not in self._present]
        if unknown:
            work = self.work_dir()
            result = self.client.run(
                [self.python, "-c", _PREPARE, posixpath.join(work, "files"),
                 posixpath.join(work, "tmp"), *unknown],
                timeout=STEP_TIMEOUT_S,
                what="preparing the work folder",
            )  # fmt: skip
            if result.returncode != 0:
                raise DeviceError(
                    f"cannot write to {work} ({last_line(result.stderr)})",
                    device=self.name,
                    fix="give the device's user a writable work_dir",
                )
            self._present.update(result.stdout.decode("utf-8", "replace").splitlines())
        for file, sha, dest in zip(files, hashes, remote, strict=True):
            if dest in self._present:
                continue
            mib = Path(file).stat().st_size / 2**20
            with open(file, "rb") as handle:
                result = self.client.run(
                    [self.python, "-c", _RECEIVE, dest, sha],
                    stdin=handle,
                    timeout=STEP_TIMEOUT_S + COPY_S_PER_MIB * mib,
                    what=f"copying {Path(file).name}",
                )
            if result.returncode != 0:
                raise DeviceError(
                    f"copying {file} failed ({last_line(result.stderr)})",
                    device=self.name,
                    fix="check the free space of the device's work folder",
                )
            self._present.add(dest)
        return remote

    # -- bench -------------------------------------------------------------------------

    def bench(
        self,
        path: str | os.PathLike[str],
        backends: Sequence[str] = ("auto",),
        *,
        eval_set: str | os.PathLike[str] | None = None,
        install: bool = False,
        on_plan: Callable[[Any], None] | None = None,
        timeout: float | None = None,
        isolate: bool = True,
        **options: Any,
    ) -> list[ResultRecord]:
        """``bench_file``'s call, run on the device: one record per backend, with ``device``.

        ``timeout`` is each backend's limit there (as for ``bench_file``); the whole remote
        run is limited by the device's own ``timeout``.
        """
        description = self.check(install=install)
        options = dict(options)
        reference = options.pop("reference", None)
        extra = {"--eval": eval_set, "--reference": reference}
        extra = {flag: file for flag, file in extra.items() if file is not None}
        remote = self.push([path, *extra.values()])
        argv = [self.python, "-m", "edgesmith", "bench", remote[0], "--json", "-"]
        argv += bench_flags(backends, options, timeout=timeout, isolate=isolate)
        for flag, there in zip(extra, remote[1:], strict=True):
            argv += [flag, there]
        env = ["env", f"TMPDIR={posixpath.join(self.work_dir(), 'tmp')}"]
        result = self.client.run(env + argv, timeout=self.spec.timeout, what="edgesmith bench")
        records = parse_records(result.stdout)
        if records is None:
            said = last_line(result.stderr) or f"exit status {result.returncode}"
            if "No module named" in result.stderr:
                raise DeviceError(
                    f"edgesmith does not run there ({said})",
                    device=self.name,
                    fix=probing.install_fix(self.spec),
                )
            raise DeviceError(f"edgesmith bench failed there: {said}", device=self.name)
        return [r.updated(file=str(path), device=description) for r in records]

    def install(self) -> None:
        """Build a wheel of this checkout, copy it to the device and pip-install it there."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgesmith-wheel-") as folder:
            wheel = build_wheel(Path(folder))
            (remote,) = self.push([wheel])
            # Dependencies first (pip skips edgesmith itself when the version is the same),
            # then this checkout's code over whatever edgesmith was there.
            for extra in ([], ["--no-deps", "--force-reinstall"]):
                result = self.client.run(
                    [self.python, "-m", "pip", "install", "--disable-pip-version-check",
                     "--no-input", *extra, remote],
                    timeout=INSTALL_TIMEOUT_S,
                    what="installing edgesmith",
                )  # fmt: skip
                if result.returncode != 0:
                    raise DeviceError(
                        f"pip install of the wheel failed there ({last_line(result.stderr)})",
                        device=self.name,
                        fix=f"run {self.python} -m pip install {remote} on the device to see "
                        "why (a Python without pip: python3 -m venv ~/edgesmith-venv)",
                    )


def bench_flags(
    backends: Sequence[str],
    options: Mapping[str, Any],
    *,
    timeout: float | None = None,
    isolate: bool = True,
) -> list[str]:
    """``edgesmith bench`` flags for ``bench_file``'s keyword arguments.

    Example:
        >>> bench_flags(["litert"], {"threads": 2, "runs": 10, "xnnpack": False,
        ...                          "shapes": {"x": (1, 4)}})
        ['--backend', 'litert', '--threads', '2', '--runs', '10', '--no-xnnpack', '--shape', 'x=1,4']
    """
    flags: list[str] = []
    for backend in backends:
        flags += ["--backend", backend]
    plain = {"threads": "--threads", "runs": "--runs", "warmup": "--warmup",
             "min_time": "--min-time", "seed": "--seed"}  # fmt: skip
    switches = {"swiftshader": "--swiftshader", "gpu_fp32": "--gpu-fp32", "profile": "--profile"}
    for key, value in options.items():
        if value is None or (key in switches and not value):
            continue
        if key in plain:
            flags += [plain[key], str(value)]
        elif key in switches:
            flags.append(switches[key])
        elif key == "xnnpack":
            flags += [] if value else ["--no-xnnpack"]
        elif key == "shapes":
            for name, dims in dict(value).items():
                text = ",".join(str(int(d)) for d in dims)
                flags += ["--shape", f"{name}={text}" if name else text]
        elif key == "state":
            for name in value:
                flags += ["--state", str(name)]
        elif key == "delegate_options":
            for name, text in dict(value).items():
                flags += ["--delegate-option", f"{name}={text}"]
        elif key == "providers":
            flags += ["--providers", ",".join(value)] if value else []
        elif value:
            raise ConfigError(
                f"bench option {key}={value!r} on a device", expected="an option of local benches"
            )
    if timeout is not None:
        flags += ["--timeout", str(timeout)]
    if not isolate:
        flags.append("--in-process")
    return flags


def parse_records(stdout: bytes) -> list[ResultRecord] | None:
    """The records ``edgesmith bench --json -`` printed (one object or a list), else None."""
    try:
        data = json.loads(stdout.decode("utf-8", "replace"))
    except ValueError:
        return None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    return [ResultRecord.from_dict(item) for item in items]


def checkout_root() -> Path:
    """The source checkout this edgesmith runs from (``--install`` builds its wheel)."""
    import edgesmith

    root = Path(edgesmith.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise EdgesmithError(
            f"edgesmith runs from an installed package ({root}), not from a checkout",
            fix="--install pushes a wheel of a source checkout; install from PyPI on the "
            "device instead",
        )
    return root


def build_wheel(dest: Path) -> Path:
    """``pip wheel --no-deps`` of this checkout into ``dest``; the wheel file."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "--quiet", "-w", str(dest), str(checkout_root())],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    wheels = sorted(dest.glob("edgesmith-*.whl"))
    if done.returncode != 0 or not wheels:
        raise EdgesmithError(
            f"building a wheel of {checkout_root()} failed ({last_line(done.stderr)})",
            fix="pip builds it with setuptools from PyPI (or your index): check that this "
            "machine reaches it",
        )
    return wheels[0]
