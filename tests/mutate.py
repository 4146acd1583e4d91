"""Seeded byte mutations of a valid data file, for the data-file fuzz tests.

The mutations are the model-file fuzz suite's own (tests/fuzz/mutations.py), those that
apply to any file: cut it short, flip bits, overwrite a run with random bytes or zeros,
or repeat a chunk of it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tests.fuzz.mutations import MUTATIONS as ALL_MUTATIONS

MUTATIONS = ("truncate", "bit_flips", "random_chunk", "zero_chunk", "duplicate_chunk")


def mutants(data: bytes, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """``count`` mutants of ``data``, cycling through :data:`MUTATIONS`, reproducible by seed."""
    rng = random.Random(seed)
    for i in range(count):
        kind = MUTATIONS[i % len(MUTATIONS)]
        yield kind, ALL_MUTATIONS[kind](data, rng, "")[0]
