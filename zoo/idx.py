"""Reading and writing the IDX format that MNIST ships in.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of
dimensions), one big-endian uint32 per dimension, then the array data, big-endian,
row-major. Files may be gzipped. This module is numpy-only.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import zlib
from math import prod
from pathlib import Path

import numpy as np

from edgesmith.core.errors import DataError

__all__ = ["find_idx_pairs", "load_idx_pair", "read_idx", "write_idx"]

# IDX dtype code -> big-endian numpy dtype.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}
_SUPPORTED = "dtype codes 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64"
_GZIP_MAGIC = b"\x1f\x8b"
_IMAGES_MAGIC = 0x00000803  # 2051: uint8, 3 dims
_LABELS_MAGIC = 0x00000801  # 2049: uint8, 1 dim
_CHUNK = 1 << 20
_FIX_REFETCH = "download the file again, or point --data-dir at an intact copy"

_IMAGES_NAME = re.compile(r"^(?P<prefix>.*)images(?P<sep>[.-])idx3-ubyte(?P<gz>\.gz)?$")


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, decompressed when it is gzipped (never past what it declares)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read the file ({exc.strerror or exc})",
            expected="a readable IDX file",
            fix="check the path and its permissions",
        ) from exc
    # A raw IDX file starts with two zero bytes, so the gzip magic is unambiguous.
    if path.name.endswith(".gz") or data.startswith(_GZIP_MAGIC):
        try:
            data = _gunzip_idx(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path}: gzip data cannot be decompressed ({exc})",
                expected="a complete gzip file holding an IDX array",
                fix=_FIX_REFETCH,
            ) from exc
    return data


def _gunzip_idx(data: bytes) -> bytes:
    """Decompress an IDX file, reading at most one byte more than its header promises.

    A corrupt header cannot make this allocate more than the stream really holds: the
    payload is read in chunks, and the read stops one byte past the promised length (so a
    too-long payload is still reported by :func:`read_idx`).
    """
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        head = stream.read(4)
        if len(head) == 4 and head[:2] == b"\0\0" and head[3] > 0:
            head += stream.read(4 * head[3])
        limit = len(head) + 1
        if len(head) >= 4 and head[2] in _CODE_TO_DTYPE and len(head) == 4 + 4 * head[3] > 4:
            dims = struct.unpack(f">{head[3]}I", head[4:])
            limit += prod(dims) * _CODE_TO_DTYPE[head[2]].itemsize
        parts, total = [head], len(head)
        while total < limit:
            chunk = stream.read(min(limit - total, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    return b"".join(parts)


def read_idx(path: Path) -> np.ndarray:
    """Read a raw or gzipped IDX file into a native-endian numpy array.

    Raises DataError naming the file when the magic number, dimensions or payload
    length are wrong, or when the gzip stream is corrupt.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(
            f"{path}: file holds {len(data)} bytes, too short for an IDX header",
            expected="an IDX file (4-byte magic number, dimensions, data)",
            fix=_FIX_REFETCH,
        )
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()}",
            expected="two zero bytes, a dtype code and a dimension count (e.g. 0x00000803)",
            fix="check that this is an IDX file (MNIST format), not another format",
        )
    dtype = _CODE_TO_DTYPE.get(code)
    if dtype is None:
        raise DataError(
            f"{path}: unknown IDX dtype code 0x{code:02X} in magic number 0x{data[:4].hex()}",
            expected=_SUPPORTED,
            fix=_FIX_REFETCH,
        )
    if ndim == 0:
        raise DataError(
            f"{path}: IDX header declares 0 dimensions",
            expected="at least one dimension",
            fix=_FIX_REFETCH,
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: file holds {len(data)} bytes, but the IDX header for {ndim} dimensions "
            f"needs {header_len}",
            expected="a complete IDX header",
            fix=_FIX_REFETCH,
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    payload = len(data) - header_len
    promised = prod(dims) * dtype.itemsize
    if payload != promised:
        shape = "x".join(str(d) for d in dims)
        raise DataError(
            f"{path}: payload holds {payload} bytes, header promises {promised} "
            f"({shape} of {dtype.name})",
            expected="a payload exactly as long as the header's dimensions say",
            fix=_FIX_REFETCH if payload < promised else "remove the trailing bytes or re-download",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # Native byte order (and a writable copy) so callers never meet big-endian arrays.
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip it when the name ends in ``.gz``."""
    path = Path(path)
    array = np.asarray(array)
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DataError(
            f"{path}: cannot write a {array.dtype} array as IDX",
            expected=_SUPPORTED,
            fix="convert the array with .astype() first",
        )
    if not 1 <= array.ndim <= 255 or any(d > 0xFFFFFFFF for d in array.shape):
        raise DataError(
            f"{path}: cannot write an array of shape {array.shape} as IDX",
            expected="1 to 255 dimensions, each below 2**32",
        )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    data = header + payload
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime=0 keeps fixtures byte-identical
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot write the file ({exc.strerror or exc})",
            fix="check that the folder exists and is writable",
        ) from exc


def _labels_candidates(images: Path) -> list[Path]:
    """Labels file names that match ``images``, most likely first."""
    match = _IMAGES_NAME.match(images.name)
    assert match is not None
    prefix, sep, gz = match["prefix"], match["sep"], match["gz"] or ""
    names = [f"{prefix}labels{sep}idx1-ubyte{gz}"]
    for other_sep in (sep, "-" if sep == "." else "."):
        for other_gz in (gz, "" if gz else ".gz"):
            name = f"{prefix}labels{other_sep}idx1-ubyte{other_gz}"
            if name not in names:
                names.append(name)
    return [images.with_name(name) for name in names]


def find_idx_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """Find every ``PREFIX-images-idx3-ubyte[.gz]`` file in ``folder`` and its labels file.

    Also accepts the ``PREFIX-images.idx3-ubyte`` spelling. When a data set is present both
    raw and gzipped, the raw copy is used once rather than the set being returned twice.
    Returns (images, labels) pairs sorted by path.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: {'not a folder' if folder.exists() else 'folder does not exist'}",
            expected="a folder holding PREFIX-images-idx3-ubyte[.gz] and "
            "PREFIX-labels-idx1-ubyte[.gz] files",
            fix="pass --data-dir with the MNIST folder, or set EDGESMITH_DATA",
        )
    by_prefix: dict[str, Path] = {}
    for images in sorted(folder.iterdir()):
        match = _IMAGES_NAME.match(images.name)
        if match is None or not images.is_file():
            continue
        # Sorted order puts the raw name before its ".gz" twin, so the raw copy wins.
        by_prefix.setdefault(match["prefix"], images)

    pairs = []
    for images in sorted(by_prefix.values()):
        candidates = _labels_candidates(images)
        labels = next((c for c in candidates if c.is_file()), None)
        if labels is None:
            raise DataError(
                f"{images}: found images file but no labels file {candidates[0]}",
                expected=f"{candidates[0].name} beside it "
                f"(or {', '.join(c.name for c in candidates[1:])})",
                fix="copy the matching labels file into the folder, or remove the images file",
            )
        pairs.append((images, labels))
    return pairs


def load_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST-style images/labels pair.

    Returns ``(x, y)``: x is uint8 of shape (N, H, W), y is int64 of shape (N,) with
    values 0..9.
    """
    images, labels = Path(images), Path(labels)
    x = read_idx(images)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise DataError(
            f"{images}: holds a {x.ndim}-D {x.dtype} array of shape {x.shape}",
            expected=f"3-D uint8 images (IDX magic {_IMAGES_MAGIC})",
            fix="check that the images and labels files are not swapped",
        )
    y = read_idx(labels)
    if y.dtype != np.uint8 or y.ndim != 1:
        raise DataError(
            f"{labels}: holds a {y.ndim}-D {y.dtype} array of shape {y.shape}",
            expected=f"1-D uint8 labels (IDX magic {_LABELS_MAGIC})",
            fix="check that the images and labels files are not swapped",
        )
    if x.size == 0:
        raise DataError(
            f"{images}: holds no image data (shape {x.shape})",
            expected="at least one image of at least one pixel",
            fix=_FIX_REFETCH,
        )
    if len(x) != len(y):
        raise DataError(
            f"{images} holds {len(x)} images but {labels} holds {len(y)} labels",
            expected="one label per image",
            fix="use the labels file that belongs to these images",
        )
    bad = np.flatnonzero(y > 9)
    if bad.size:
        raise DataError(
            f"{labels}: label {int(y[bad[0]])} at index {int(bad[0])} is out of range "
            f"({bad.size} labels above 9)",
            expected="digit labels 0..9",
            fix=_FIX_REFETCH,
        )
    return x, y.astype(np.int64)
