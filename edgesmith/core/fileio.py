"""Atomic file output: nothing edgesmith writes is ever left half-written.

Every file goes to a temporary name in the destination folder first and is renamed
into place once complete, so a crash or a kill leaves either the old file or the new
one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".edgesmith-tmp-"


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success.

    Works for files and for folders (for example a saved model directory).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("done")
        >>> out.read_text()
        'done'
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix or dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # the caller creates it, as a file or a folder
    try:
        yield tmp
        if dest.is_dir() and not dest.is_symlink():
            # A folder cannot be replaced by rename; move the old one aside first.
            old = dest.with_name(f"{TMP_PREFIX}old-{dest.name}-{os.getpid()}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``dest`` atomically and return the path."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def write_json(dest: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON to ``dest`` atomically and return the path."""
    return write_text(dest, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, raising a clear error naming the file when it is broken."""
    from edgesmith.core.errors import DataError

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", expected="a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: not valid JSON ({parse_error_text(exc)})", expected="a JSON file"
        ) from exc


def parse_error_text(exc: BaseException) -> str:
    """One line saying what a JSON or YAML parser found wrong, and where.

    Example:
        >>> try:
        ...     json.loads('{"a": 1,}')
        ... except json.JSONDecodeError as exc:
        ...     print(parse_error_text(exc))
        Expecting property name enclosed in double quotes at line 1, column 9
    """
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    mark = getattr(exc, "problem_mark", None)  # yaml's MarkedYAMLError
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _jsonable(value: Any) -> Any:
    # NumPy scalars and paths show up in records; JSON has no type for them.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
