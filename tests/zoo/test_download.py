"""Tests for edgesmith.zoo.download, offline: file:// URLs and a refused local port."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgesmith.core.errors import DataError
from edgesmith.zoo.download import download

PAYLOAD = b"edgesmith test payload\n" * 1000


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "upstream" / "data-file.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_file_url(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "cache" / "sub" / "data-file.bin"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    assert download(source.as_uri(), dest, sha256=sha.upper()) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["data-file.bin"]  # no temp file left
    assert dest.stat().st_mode & 0o044 == 0o044  # readable by others, unlike a mkstemp file


def test_existing_dest_is_not_fetched(tmp_path: Path) -> None:
    dest = tmp_path / "data-file.bin"
    dest.write_bytes(b"cached")
    missing = (tmp_path / "nowhere" / "data-file.bin").as_uri()
    assert download(missing, dest) == dest
    assert dest.read_bytes() == b"cached"


def test_sha256_mismatch(tmp_path: Path, source: Path) -> None:
    cache = tmp_path / "cache"
    dest = cache / "data-file.bin"
    with pytest.raises(DataError, match="sha256") as err:
        download(source.as_uri(), dest, sha256="0" * 64)
    assert dest.name in str(err.value)
    assert hashlib.sha256(PAYLOAD).hexdigest() in str(err.value)
    assert not dest.exists()
    assert _leftovers(cache) == []


def test_missing_file_url(tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "data-file.bin"
    url = (tmp_path / "nowhere" / "data-file.bin").as_uri()
    with pytest.raises(DataError, match="could not be fetched") as err:
        download(url, dest)
    assert "data-file.bin" in str(err.value)
    assert "--data-dir" in str(err.value) and "EDGESMITH_DATA" in str(err.value)
    assert _leftovers(dest.parent) == []


def test_unreachable_url(tmp_path: Path) -> None:
    dest = tmp_path / "mnist-images.gz"
    url = "http://127.0.0.1:9/mnist-images.gz"
    with pytest.raises(DataError, match="could not be fetched") as err:
        download(url, dest, timeout=5)
    message = str(err.value)
    assert url in message
    assert "--data-dir" in message and "EDGESMITH_DATA" in message
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_bad_url_scheme(tmp_path: Path) -> None:
    dest = tmp_path / "x.bin"
    with pytest.raises(DataError, match="could not be fetched") as err:
        download("not-a-url/x.bin", dest)
    assert "x.bin" in str(err.value)
    assert _leftovers(tmp_path) == []
