"""Seeded mutations of a model file's bytes, and one run of a mutant through the CLI.

Each mutation takes the seed file's bytes and a ``random.Random`` and returns the mutant's
bytes and the extension it is saved under. The same (seed file, mutation, seed) gives the
same mutant on every machine, so a failing case is replayed by its test id alone.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

Mutation = Callable[[bytes, random.Random, str], tuple[bytes, str]]
# The longest one file may take, analyze and bench together (a hang fails the case).
CASE_LIMIT_S = 20.0
# What a run of the worker may take before bench gives up on it (below CASE_LIMIT_S).
BENCH_TIMEOUT_S = 12.0
BENCH_OPTIONS = ("--timeout", str(BENCH_TIMEOUT_S), "--json", "-")


def _span(size: int, rng: random.Random, most: int = 256) -> tuple[int, int]:
    """A random [start, end) of 1..most bytes inside a file of ``size`` bytes."""
    length = rng.randint(1, max(1, min(most, size)))
    start = rng.randrange(0, max(1, size - length + 1))
    return start, start + length


def truncate(data: bytes, rng: random.Random, ext: str) -> tuple[bytes, str]:
    return data[: rng.randrange(0, len(data))], ext


def bit_flips(data: bytes, rng: random.Random, ext: str) -> tuple[bytes, str]:
    out = bytearray(data)
    # Mostly in the first kilobytes, where the headers, tables and offsets are.
    head = min(len(out), 4096)
    for _ in range(rng.randint(1, 16)):
        where = rng.randrange(head) if rng.random() < 0.7 else rng.randrange(len(out))
        out[where] ^= 1 << rng.randrange(8)
    return bytes(out), ext


def random_chunk(data: bytes, rng: random.Random, ext: str) -> tuple[bytes, str]:
    out = bytearray(data)
    start, end = _span(len(out), rng)
    out[start:end] = rng.randbytes(end - start)
    return bytes(out), ext


def zero_chunk(data: bytes, rng: random.Random, ext: str) -> tuple[bytes, str]:
    out = bytearray(data)
    start, end = _span(len(out), rng, most=1024)
    out[start:end] = bytes(end - start)
    return bytes(out), ext


def duplicate_chunk(data: bytes, rng: random.Random, ext: str) -> tuple[bytes, str]:
    start, end = _span(len(data), rng, most=1024)
    at = rng.randrange(len(data) + 1)
    return data[:at] + data[start:end] + data[at:], ext


def random_bytes(data: bytes, rng: random.Random, ext: str) -> tuple[bytes, str]:
    size = rng.choice([0, 1, 4, 8, 16, 64, 1024, len(data)])
    head = b""
    if rng.random() < 0.5:  # keep what the format checks read first, random after it
        head = data[:8] if ext == ".tflite" else data[:2]
    return (head + rng.randbytes(size))[: max(size, len(head))], ext


def wrong_extension(data: bytes, rng: random.Random, ext: str) -> tuple[bytes, str]:
    other = ".onnx" if ext == ".tflite" else ".tflite"
    return data, rng.choice([other, other, other, ".bin", ".TFLITE", ""])


MUTATIONS: dict[str, Mutation] = {
    "truncate": truncate,
    "bit_flips": bit_flips,
    "random_chunk": random_chunk,
    "zero_chunk": zero_chunk,
    "duplicate_chunk": duplicate_chunk,
    "random_bytes": random_bytes,
    "wrong_extension": wrong_extension,
}


def mutant(seed_file: Path, mutation: str, seed: int, folder: Path) -> Path:
    """Write the mutant of ``seed_file`` under ``folder``; return its path."""
    rng = random.Random(f"{seed_file.name}:{mutation}:{seed}")
    data, ext = MUTATIONS[mutation](seed_file.read_bytes(), rng, seed_file.suffix)
    path = folder / f"{seed_file.stem}-{mutation}-{seed}{ext}"
    path.write_bytes(data)
    return path


@dataclass
class Outcome:
    """What one CLI command did with one mutant."""

    command: str
    code: int
    stderr: str
    seconds: float

    def problems(self, path: Path) -> list[str]:
        """Everything wrong with this outcome (empty when the CLI behaved)."""
        found = []
        if "Traceback" in self.stderr:
            found.append("a Python traceback on stderr")
        if self.code not in (0, 2):
            found.append(f"exit status {self.code}")
        if self.code == 2:
            errors = [line for line in self.stderr.splitlines() if line.startswith("error:")]
            if len(errors) != 1:
                found.append(f"{len(errors)} 'error:' lines, expected 1")
            elif path.name not in errors[0]:
                found.append("the error line does not name the file")
        if self.seconds > CASE_LIMIT_S:
            found.append(f"took {self.seconds:.1f} s (limit {CASE_LIMIT_S:g} s)")
        return [f"{self.command}: {p}" for p in found]

    @property
    def label(self) -> str:
        return {0: "ok", 2: "error"}.get(self.code, f"exit-{self.code}")


class CaseTimeout(Exception):
    """A case ran past :data:`CASE_LIMIT_S` (raised by the alarm in the main thread)."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def expire(*_: object) -> None:
        raise CaseTimeout(f"still running after {seconds:g} s")

    try:
        previous = signal.signal(signal.SIGALRM, expire)
    except ValueError:  # not the main thread: measured afterwards instead
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str]) -> Outcome:
    """``edgesmith.cli.main(argv)`` in this process, with its stdout and stderr captured."""
    from edgesmith.cli import main

    stderr, stdout = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
            with _alarm(CASE_LIMIT_S + 5):
                code = main(argv)
        except CaseTimeout as exc:
            code, stderr = -1, io.StringIO(f"hang: {exc}")
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
    return Outcome(argv[0], code, stderr.getvalue(), time.monotonic() - start)


def check_file(path: Path) -> list[Outcome]:
    """``edgesmith analyze`` and ``edgesmith bench`` of ``path``, as the CLI runs them."""
    env_debug = os.environ.pop("EDGESMITH_DEBUG", None)
    try:
        return [
            run_cli(["analyze", str(path), "--target", "edgetpu", "--json", "-"]),
            run_cli(["bench", str(path), "--runs", "2", "--warmup", "0", *BENCH_OPTIONS]),
        ]
    finally:
        if env_debug is not None:
            os.environ["EDGESMITH_DEBUG"] = env_debug
