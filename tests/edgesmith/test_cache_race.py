"""The stage cache under concurrency: one build per entry, never a partial entry."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from edgesmith.cache import DONE_MARKER, StageCache


def _build_slowly(root: str, log: str, start: float) -> str:
    """A worker: wait for the common start, then build entry ``race/k`` (slowly)."""
    time.sleep(max(0.0, start - time.time()))
    cache = StageCache(root)

    def produce(tmp: Path) -> None:
        with open(log, "a") as f:  # every build leaves one line
            f.write("built\n")
        (tmp / "part1").write_text("a")
        time.sleep(0.5)  # long enough for the other worker to arrive mid-build
        (tmp / "part2").write_text("b")

    folder = cache.build("race", "k", produce)
    # What a worker sees is always a finished entry.
    assert (folder / DONE_MARKER).is_file() and (folder / "part2").read_text() == "b"
    return str(folder)


def test_two_processes_racing_for_one_key_build_it_once(tmp_path):
    log = tmp_path / "builds.log"
    context = multiprocessing.get_context("spawn")
    start = time.time() + 1.5  # both workers started and waiting by then
    with context.Pool(2) as pool:
        folders = pool.starmap(_build_slowly, [(str(tmp_path / "cache"), str(log), start)] * 2)
    assert log.read_text().count("built") == 1
    assert folders[0] == folders[1]
    entry = Path(folders[0])
    assert sorted(p.name for p in entry.iterdir()) == [DONE_MARKER, "part1", "part2"]
    # No temporary folder of either worker is left beside the entry.
    assert [p.name for p in entry.parent.iterdir()] == ["k"]
