"""Fetching public data sets on machines that are online (stdlib urllib only)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from edgesmith.core.errors import DataError

__all__ = ["download"]

_FIX_OFFLINE = "pass --data-dir with a local copy, or set EDGESMITH_DATA"
_CHUNK = 1 << 20


def _reason(exc: BaseException) -> str:
    """A one-line reason for a failed fetch."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def download(url: str, dest: Path, *, sha256: str | None = None, timeout: float = 60) -> Path:
    """Fetch ``url`` to ``dest`` and return ``dest``; do nothing if ``dest`` already exists.

    The data goes to a temporary file in dest's folder that is renamed onto ``dest`` only
    once it is complete (and matches ``sha256`` when given), so an interrupted or failed
    fetch never leaves a partial ``dest`` behind. Raises DataError on any failure.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(
            f"{dest}: cannot create a file in {dest.parent} ({exc.strerror or exc})",
            expected="a writable data folder",
            fix=_FIX_OFFLINE,
        ) from exc

    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        try:
            with (
                os.fdopen(fd, "wb") as handle,
                urllib.request.urlopen(url, timeout=timeout) as response,
            ):
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
        # URLError, HTTPError and timeouts are OSErrors; a cut-off HTTP body is an
        # HTTPException; an unsupported URL scheme is a ValueError.
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DataError(
                f"{url}: could not be fetched to {dest} ({_reason(exc)})",
                expected="a reachable URL",
                fix=_FIX_OFFLINE,
            ) from exc

        if sha256 is not None and digest.hexdigest() != sha256.strip().lower():
            raise DataError(
                f"{url}: fetched data has sha256 {digest.hexdigest()}, not the expected "
                f"{sha256.strip().lower()}; {dest} was not written",
                expected="the published file, byte for byte",
                fix=f"the file was corrupted or changed upstream; {_FIX_OFFLINE}",
            )
        try:
            # mkstemp files are private (0600); a downloaded data set should be shared-readable.
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except OSError as exc:
            raise DataError(
                f"{dest}: cannot move the fetched file into place ({exc.strerror or exc})",
                expected="a writable data folder",
                fix=_FIX_OFFLINE,
            ) from exc
    finally:
        # After a successful rename tmp no longer exists; otherwise drop the partial file.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest
