"""Run one benchmark in a child process, so that a native crash cannot take the caller down.

The parent writes the request as JSON, starts ``python -m edgesmith.runtime.worker REQUEST
RESULT`` and reads the record (or the error) the child writes. A child killed by a signal
(a loader that segfaults on a malformed file) becomes a :class:`ModelFileError` naming the
file; the parent keeps running and reports it. Each child is a fresh process, so its peak
memory belongs to one backend alone.

Example:
    >>> record = benchmark_in_child("cnn.tflite", "litert", threads=1, runs=50)  # doctest: +SKIP
    >>> record.environment["bench"]["pid"] != os.getpid()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgesmith.core import errors
from edgesmith.core.errors import EdgesmithError, ModelFileError
from edgesmith.core.records import ResultRecord


def benchmark_in_child(
    path: str | os.PathLike[str],
    backend: str,
    *,
    timeout: float | None = None,
    **kwargs: Any,
) -> ResultRecord:
    """:func:`edgesmith.runtime.bench.benchmark` in a fresh Python process; same arguments."""
    path = Path(path)
    request = {"path": str(path.resolve()), "backend": backend, **_jsonable(kwargs)}
    if request.get("eval_set"):
        request["eval_set"] = str(Path(request["eval_set"]).resolve())
    with tempfile.TemporaryDirectory(prefix="edgesmith-bench-") as folder:
        request_file, result_file = Path(folder, "request.json"), Path(folder, "result.json")
        log_file = Path(folder, "native.log")  # the runtimes' own stderr, for a post-mortem
        request["log"] = str(log_file)
        request_file.write_text(json.dumps(request), encoding="utf-8")
        command = [sys.executable, "-c", _CHILD, str(request_file), str(result_file)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise EdgesmithError(
                f"{path}: the {backend} benchmark did not finish in {timeout:g} s",
                fix="use fewer --runs, or a larger timeout",
            ) from None
        if result_file.is_file():
            result = json.loads(result_file.read_text(encoding="utf-8"))
            if "record" in result:
                return ResultRecord.from_dict(result["record"])
            error = result["error"]
            cls = getattr(errors, error["type"], EdgesmithError)
            if not (isinstance(cls, type) and issubclass(cls, EdgesmithError)):
                cls = EdgesmithError
            raise cls(error["problem"], expected=error.get("expected"), fix=error.get("fix"))
        native = log_file.read_text(errors="replace") if log_file.is_file() else ""
    last = _last_line(native + done.stderr)
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        raise ModelFileError(
            f"{path}: the {backend} backend crashed with {name} while loading or running it "
            f"(its worker process died, edgesmith did not; last message: {last or 'none'})",
            fix="the file passed edgesmith's format checks: if another backend runs it, the "
            "fault is this backend's (or its delegate's); otherwise convert the model again",
        )
    raise EdgesmithError(
        f"{path}: the {backend} benchmark failed (worker exit status {done.returncode}: {last or 'no message'})",
        fix="run it in this process (--in-process) to see the traceback",
    )


# The child drops the current folder from sys.path (what -m and -c put first), so that it
# imports the installed edgesmith, as the console command does, even when started from a
# checkout whose edgesmith/ folder would otherwise shadow it.
_CHILD = (
    "import sys; sys.path[:1] = [] if sys.path[:1] == [''] else sys.path[:1]; "
    "from edgesmith.runtime.worker import main; sys.exit(main())"
)


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, (set, tuple)):
            value = list(value)
        elif isinstance(value, dict):
            value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        out[key] = value
    return out


def _last_line(text: str) -> str:
    # Runtimes log INFO chatter to stderr; the last line that is not INFO says what went wrong.
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("INFO:", "I0000", "WARNING: Logging"))]
    return (useful or lines or [""])[-1][:300]


def main(argv: list[str] | None = None) -> int:
    """The child: read the request, benchmark, write the record or the error."""
    request_file, result_file = (argv if argv is not None else sys.argv[1:])[:2]
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    from edgesmith.core.fileio import write_json
    from edgesmith.runtime.bench import benchmark

    try:
        record = benchmark(request.pop("path"), request.pop("backend"), **request)
    except EdgesmithError as exc:
        error = {
            "type": type(exc).__name__,
            "problem": exc.problem,
            "expected": exc.expected,
            "fix": exc.fix,
        }
        write_json(result_file, {"error": error})
        return 2
    write_json(result_file, {"record": record.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
