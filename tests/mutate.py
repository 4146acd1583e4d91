"""Seeded byte mutations of a valid file, for the data-file fuzz tests.

Each mutant is what a disk, a download or a careless edit can do to a file: cut it short,
flip bits, overwrite a run with random bytes or zeros, or repeat a chunk of it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

MUTATIONS = ("truncate", "bit_flips", "random_chunk", "zero_chunk", "duplicate_chunk")


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One mutant of ``data`` made by mutation ``kind``."""
    buf = bytearray(data)
    n = len(buf)
    if kind == "truncate":
        return bytes(buf[: int(rng.integers(0, n))])
    if kind == "bit_flips":
        for pos in rng.integers(0, n, size=int(rng.integers(1, 9))):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(buf)
    start = int(rng.integers(0, n))
    length = int(rng.integers(1, max(2, min(64, n - start + 1))))
    if kind == "random_chunk":
        buf[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    elif kind == "zero_chunk":
        buf[start : start + length] = bytes(length)
    elif kind == "duplicate_chunk":
        buf[start:start] = buf[start : start + length]
    else:
        raise ValueError(kind)
    return bytes(buf)


def mutants(data: bytes, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """``count`` mutants of ``data``, cycling through :data:`MUTATIONS`, reproducible by seed."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        kind = MUTATIONS[i % len(MUTATIONS)]
        yield kind, mutate(data, kind, rng)
