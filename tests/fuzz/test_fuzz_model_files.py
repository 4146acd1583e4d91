"""Damaged model files through the CLI: one clear error line, never a crash or a hang.

Seed files: the tiny CNN, LSTM and Transformer (tests/tiny_models.py) converted to .tflite
and .onnx (tests/fuzz/conftest.py). Each case mutates one seed file with one seeded
mutation (tests/fuzz/mutations.py: truncation, bit flips, a chunk overwritten with random
bytes or zeros, a duplicated chunk, random bytes, a wrong extension) and runs it through
``edgesmith analyze FILE --target edgetpu --json -`` and ``edgesmith bench FILE --runs 2
--warmup 0`` in this process, as the console command runs them (bench's backends run in a
worker process, so a native crash there is a reported error, not a dead test). Each command
must exit 0, or 2 with exactly one ``error:`` line that names the file; never 1 (an
internal error), never a traceback, never more than 20 s.

Two runs:

* ``test_mutant`` (part of ``make test``): a fixed, seeded list of cases, each its own test
  id (``cnn-none.tflite-bit_flips-3``), so a failure names the case to replay.
* ``test_fuzz_long`` (marker ``fuzz``, skipped unless asked for):
  ``EDGESMITH_FUZZ_CASES=10000 .venv/bin/pytest -m fuzz tests/fuzz -n 2 -s`` runs N random
  cases (default 10,000; about 0.2 s each), split into ``$EDGESMITH_FUZZ_SHARDS`` tests
  (default 2, one per xdist worker), and writes the counts by outcome ("analyze/bench":
  ok or error) and by mutation as JSON to ``$EDGESMITH_FUZZ_REPORT`` (default:
  ``fuzz-report.json`` in the run's temporary folder; the path is printed), then
  fails if any case misbehaved. ``EDGESMITH_FUZZ_SEEDS=DIR`` adds every .tflite and .onnx
  in DIR to the seed files.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.fuzz.conftest import SEEDS, extra_seeds, seed_name
from tests.fuzz.mutations import MUTATIONS, check_file, mutant

SEED_NAMES = [seed_name(*seed) for seed in SEEDS]
# Cases per (seed file, mutation) in make test: 13 seed files x 7 mutations x 2 (182 cases,
# about half a minute); the long run behind `-m fuzz` takes thousands.
CASES_PER_PAIR = 2
CASES = [
    (name, mutation, seed)
    for name in SEED_NAMES
    for mutation in MUTATIONS
    for seed in range(CASES_PER_PAIR)
]


def _problems(path: Path) -> tuple[list[str], list[str]]:
    outcomes = check_file(path)
    problems = [p for outcome in outcomes for p in outcome.problems(path)]
    return problems, [o.label for o in outcomes]


def test_seed_files_run(fuzz_seeds, tmp_path, monkeypatch):
    """The unmutated seed files bench cleanly (so mutants start from good files); analyze
    reads .tflite files and refuses an .onnx one with its one error line."""
    monkeypatch.chdir(tmp_path)
    for name in SEED_NAMES:
        path = fuzz_seeds[name]
        outcomes = check_file(path)
        expected = [0 if path.suffix == ".tflite" else 2, 0]
        assert [o.code for o in outcomes] == expected, (name, [o.stderr for o in outcomes])
        assert not [p for o in outcomes for p in o.problems(path)]
    assert not (tmp_path / "-").exists()  # --json - is stdout, not a file named '-'


@pytest.mark.parametrize(("seed_file", "mutation", "seed"), CASES, ids=lambda v: str(v))
def test_mutant(fuzz_seeds, tmp_path, monkeypatch, seed_file, mutation, seed):
    monkeypatch.chdir(tmp_path)
    path = mutant(fuzz_seeds[seed_file], mutation, seed, tmp_path)
    problems, _ = _problems(path)
    assert not problems, f"{path.name}: " + "; ".join(problems)


SHARDS = int(os.environ.get("EDGESMITH_FUZZ_SHARDS") or 2)


@pytest.mark.fuzz
@pytest.mark.parametrize("shard", range(SHARDS))
def test_fuzz_long(fuzz_seeds, tmp_path, tmp_path_factory, monkeypatch, shard):
    monkeypatch.chdir(tmp_path)
    total = int(os.environ.get("EDGESMITH_FUZZ_CASES") or 10_000)
    rng = random.Random(f"fuzz-long:{shard}")
    seeds = {**fuzz_seeds, **extra_seeds()}
    names = sorted(seeds)
    by_outcome: Counter[str] = Counter()
    by_mutation: dict[str, Counter[str]] = defaultdict(Counter)
    failures = []
    for index in range(shard, total, SHARDS):
        name = rng.choice(names)
        mutation = rng.choice(list(MUTATIONS))
        seed = 1000 + index
        path = mutant(seeds[name], mutation, seed, tmp_path)
        problems, labels = _problems(path)
        outcome = "bad" if problems else "/".join(labels)  # analyze/bench: ok or error
        by_outcome[outcome] += 1
        by_mutation[mutation][outcome] += 1
        if problems:
            failures.append({"case": [name, mutation, seed], "problems": problems})
        path.unlink()
    run_folder = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_folder = run_folder.parent  # the run's folder, shared by the workers
    target = Path(os.environ.get("EDGESMITH_FUZZ_REPORT") or run_folder / "fuzz-report.json")
    part = {
        "cases": sum(by_outcome.values()),
        "seed_files": names,
        "by_outcome": dict(by_outcome),
        "by_mutation": {k: dict(v) for k, v in by_mutation.items()},
        "failures": failures,
    }
    _merge_report(target, shard, part)
    print(f"fuzz report: {target}")
    assert not failures, json.dumps(failures[:5], indent=2)


def _merge_report(target: Path, shard: int, part: dict) -> None:
    """Write this shard's counts beside ``target``; the shard that finds every part written
    sums them into ``target`` (outcomes are "analyze/bench": ok or error, or "bad")."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    parts = [target.with_name(f"{target.stem}.shard{k}.json") for k in range(SHARDS)]
    parts[shard].write_text(json.dumps(part), encoding="utf-8")
    with FileLock(str(target) + ".lock"):
        if not all(p.exists() for p in parts):
            return
        loaded = [json.loads(p.read_text(encoding="utf-8")) for p in parts]
        by_outcome: Counter[str] = Counter()
        by_mutation: dict[str, Counter[str]] = defaultdict(Counter)
        for item in loaded:
            by_outcome.update(item["by_outcome"])
            for mutation, counts in item["by_mutation"].items():
                by_mutation[mutation].update(counts)
        report = {
            "cases": sum(item["cases"] for item in loaded),
            "seed_files": loaded[0]["seed_files"],
            "shards": SHARDS,
            "by_outcome": dict(by_outcome),
            "by_mutation": {k: dict(v) for k, v in sorted(by_mutation.items())},
            "failures": [f for item in loaded for f in item["failures"]][:100],
        }
        target.write_text(json.dumps(report, indent=2), encoding="utf-8")
        for p in parts:
            p.unlink()
