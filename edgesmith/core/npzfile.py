"""Reading a user's .npz file without trusting it: every failure is a DataError naming the file.

``numpy.load`` alone would read a .npy or a pickle when the file is not a zip archive, return
raw bytes for a member that is not an array, and allocate whatever size a member's header
declares before finding out that the data is not there. :func:`read_npz` checks the zip
archive and each member's .npy header against the sizes the archive declares first, refuses
object arrays (user data is never unpickled) and only then reads the arrays.

Example:
    >>> read_npz("/no/such.npz", expected="an .npz with x", fix="write one")
    Traceback (most recent call last):
    ...
    edgesmith.core.errors.DataError: /no/such.npz: file not found: expected an .npz with x; write one
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from edgesmith.core.errors import DataError

__all__ = ["read_npz"]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_DEFLATE_MAX_RATIO = 1032  # deflate never expands a byte stream more than this


def read_npz(path: str | os.PathLike[str], *, expected: str, fix: str) -> dict[str, np.ndarray]:
    """All arrays of the .npz at ``path`` by name; DataError (``expected``/``fix``) if it is broken."""
    path = Path(path)

    def fail(problem: str) -> DataError:
        return DataError(f"{path}: {problem}", expected=expected, fix=fix)

    if not path.is_file():
        raise fail("not a file" if path.exists() else "file not found")
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise fail(f"cannot read the file ({exc.strerror or exc})") from exc
    if not head:
        raise fail("file is empty (0 bytes)")
    if head not in _ZIP_MAGICS:
        raise fail(f"not a readable .npz file (not a zip archive: starts with {head!r})")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            for member in members:
                _check_member(archive, member, fail)
            for member in members:
                with archive.open(member) as fp:
                    arrays[member.filename[: -len(".npy")]] = npy_format.read_array(
                        fp, allow_pickle=False
                    )
    except DataError:
        raise
    except Exception as exc:  # BadZipFile, CRC and zlib errors, EOFError, ValueError, ...
        raise fail(f"not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    return arrays


def _check_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, fail) -> None:
    """Refuse a member that is not a numeric .npy array the archive can really hold."""
    name = member.filename
    if not name.endswith(".npy"):
        raise fail(f"member {name!r} is not a .npy array")
    with archive.open(member) as fp:
        try:
            version = npy_format.read_magic(fp)
            if version == (1, 0):
                shape, _fortran, dtype = npy_format.read_array_header_1_0(fp)
            else:
                shape, _fortran, dtype = npy_format.read_array_header_2_0(fp)
        except (ValueError, EOFError) as exc:
            raise fail(f"member {name!r} has no valid .npy header ({exc})") from exc
        header_bytes = fp.tell()
    if dtype.hasobject:
        raise fail(
            f"array {name[:-4]!r} holds Python objects ({dtype}); edgesmith never unpickles data"
        )
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    room = member.file_size - header_bytes
    if member.compress_type == zipfile.ZIP_DEFLATED:
        room = min(room, member.compress_size * _DEFLATE_MAX_RATIO)
    elif member.compress_type == zipfile.ZIP_STORED:
        room = min(room, member.compress_size - header_bytes)
    if declared > room:
        raise fail(
            f"array {name[:-4]!r} declares shape {tuple(shape)} of {dtype} ({declared} bytes) "
            f"but its member holds at most {max(room, 0)} bytes (truncated or corrupt)"
        )
