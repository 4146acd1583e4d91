"""A content-addressed stage cache: a stage's output folder is keyed by all of its inputs.

A key is the hash of the stage name, its config, the keys of the stages it reads from and
the edgesmith version, so changing one recipe changes the keys of exactly the stages
downstream of it, and an upgraded edgesmith (whose techniques may compute differently)
never reuses an older version's outputs.
An entry is built in a temporary folder and renamed into place when complete: a run
killed at any point leaves no partial entry, and the next run simply builds it again.
Workers of one run (processes, Ray tasks on this machine) may build entries at the same
time: each entry is built under its own file lock, so two workers needing the same entry
build it once and the second one reads what the first wrote.

Example:
    >>> import tempfile
    >>> cache = StageCache(tempfile.mkdtemp())
    >>> key = cache.key("convert", {"quant": "int8"}, upstream=["abc"])
    >>> folder = cache.build("convert", key, lambda tmp: (tmp / "model.tflite").write_bytes(b"x"))
    >>> cache.has("convert", key), (folder / "model.tflite").read_bytes()
    (True, b'x')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edgesmith.core.errors import EdgesmithError
from edgesmith.core.fileio import TMP_PREFIX, atomic_path

DONE_MARKER = ".done"
LOCK_FOLDER = ".locks"  # one lock file per entry, outside the stage folders


class StageCache:
    """Folders of finished stage outputs under ``root/<stage>/<key>/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @staticmethod
    def key(stage: str, config: Any, *, upstream: Sequence[str] = ()) -> str:
        """A short stable hash of ``stage``, its JSON-able ``config``, upstream keys, version."""
        from edgesmith import __version__

        blob = json.dumps(
            {
                "stage": stage,
                "config": config,
                "upstream": list(upstream),
                "edgesmith": __version__,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def has(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / DONE_MARKER).is_file()

    def build(self, stage: str, key: str, produce: Callable[[Path], Any]) -> Path:
        """Return the entry's folder, calling ``produce(tmp_folder)`` first if it is missing."""
        dest = self.path(stage, key)
        if self.has(stage, key):
            return dest
        with self.entry_lock(stage, key):
            # Another worker may have finished it while this one waited for the lock.
            if self.has(stage, key):
                return dest
            with atomic_path(dest, suffix=".dir") as tmp:
                tmp.mkdir(parents=True)
                produce(tmp)
                (tmp / DONE_MARKER).write_text("")
        return dest

    @contextlib.contextmanager
    def entry_lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold the lock of one entry (blocking): one builder per entry across processes.

        The lock files stay (removing one could let a third worker lock a new file while
        the second still holds the old one); they are empty and outside the entries.
        """
        import fcntl

        folder = self.root / LOCK_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{stage}-{key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the cache for one run; sweep what a killed run left half-built.

        Temporary folders can only be stale while the lock is held, because a run that
        could still be writing them would hold the lock itself.
        """
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EdgesmithError(
                    f"{self.root}: another edgesmith run is using this folder",
                    fix="wait for it to finish or choose another --out",
                ) from None
            self.sweep_stale()
            yield

    def sweep_stale(self) -> list[Path]:
        """Remove temporary files and folders left by an interrupted run."""
        stale = sorted(self.root.rglob(f"{TMP_PREFIX}*"))
        for path in stale:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return stale
