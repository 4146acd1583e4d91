"""Capture what native code writes to stderr (file descriptor 2) while a block runs.

Runtimes and converters log from C++ straight to fd 2, past ``sys.stderr``: INFO chatter,
call-site dumps, and errors that no Python exception carries. :func:`native_log` sends fd 2
to a file meanwhile, so the user sees one clear line and the caller can still read what was
said (a converter's failure, a GPU program the accelerator rejected). TF-free.

Example:
    >>> import os
    >>> with native_log() as log:
    ...     _ = os.write(2, b"E0 native.cc:1] Validation error: nope\\n")
    ...     said = log.read()
    >>> "nope" in said
    True
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


class NativeLog:
    """The file that fd 2 goes to; :meth:`read` gives what was written so far."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> str:
        """The text written so far ('' when the file is gone or unreadable)."""
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        return f"NativeLog({str(self.path)!r})"


@contextlib.contextmanager
def native_log(path: str | os.PathLike[str] | None = None) -> Iterator[NativeLog]:
    """Send file descriptor 2 to a file while the block runs; yield a :class:`NativeLog`.

    ``path`` keeps the file, appended to (a worker's log that its parent reads if the worker
    dies); without it a temporary file is used and removed afterwards, so read it inside the
    block. Where the process has no fd 2 (a daemon) nothing is redirected.
    """
    with contextlib.ExitStack() as stack:
        if path is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="edgesmith-log-"))
            path = Path(folder, "native.log")
        log = NativeLog(Path(path))
        log.path.touch()
        sys.stderr.flush()  # what Python buffered belongs before the redirection
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to take
            yield log
            return
        try:
            with open(log.path, "ab") as target:
                os.dup2(target.fileno(), 2)
                try:
                    yield log
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, 2)
        finally:
            os.close(saved)
