"""Where stage tasks run: here one at a time, in worker processes, or on a Ray cluster.

A task is a module-level function and picklable arguments; what the runner does with its
result (the next tasks of the graph) happens here, in the process that owns the run. The
three executors share one interface, so ``edgesmith run`` and ``edgesmith tune`` build the
same task graph whatever runs it:

- ``serial``: in this process, in order (the reference the others must match);
- ``local`` (the default): a pool of worker processes, one per core. Workers are
  spawned, not forked: a forked copy of a process that has loaded TensorFlow deadlocks;
- ``ray``: Ray tasks, on a Ray started here (``address=None``) or on an existing cluster
  (``address="HOST:PORT"`` or ``"auto"``). Workers need this edgesmith installed and the
  run folder on a path they all see (one machine, or a shared file system).

Progress: a task reports its events through :func:`task_progress`. They reach the caller's
``progress`` callback while the task runs, each tagged with the task it came from
(``ProgressEvent.source``, the task's label), whole and in the task's order
(:mod:`edgesmith.executor_events`: a manager queue for the local pool, a Ray queue actor
for Ray; they also travel back with the result, which fills in whatever the line lost).
The callback is only called from the thread that called :func:`run_graph`, between its
waits for tasks. A task whose worker dies is run again from the start (Ray retries it; the
caller is warned, and the new attempt's events follow).

Example:
    >>> with make_executor("serial") as executor:
    ...     results = run_graph(executor, [Task(pow, (2, 10))])
    >>> results
    [1024]
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgesmith.core.errors import BackendUnavailableError, ConfigError
from edgesmith.core.progress import Progress, ProgressEvent, as_progress
from edgesmith.executor_events import KILL_ONCE_ENV as KILL_ONCE_ENV  # the test hook's name
from edgesmith.executor_events import (
    POLL_S,
    DirectLine,
    Dispatch,
    EventLine,
    TaskEvents,
    manager_line,
    ray_line,
)

EXECUTORS = ("local", "serial", "ray")

# Task numbers, unique in this process: an executor's line outlives one run_graph, and a
# late event of an earlier graph's task must not pass for one of the next graph's.
_numbers = itertools.count(1)


def default_workers() -> int:
    """The cores this process may use (its CPU affinity where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


_current: TaskEvents | None = None


def task_progress() -> Progress | None:
    """Inside a task that :func:`run_graph` runs: the callback whose events reach the
    caller's ``progress``. Outside one: None.

    Example:
        >>> def count(n):
        ...     report = task_progress()
        ...     for i in range(n):
        ...         report(ProgressEvent("count", "step", done=i + 1, total=n))
        ...     return n
        >>> seen = []
        >>> run_graph(SerialExecutor(), [Task(count, (2,))], progress=seen.append)
        [2]
        >>> [e.done for e in seen]
        [1, 2]
    """
    return _current


@dataclass
class _Outcome:
    """What a task returns through the executor: its value or error, and the events of
    the attempt that returned (the caller fills in those its line did not bring)."""

    value: Any = None
    error: BaseException | None = None
    events: list[ProgressEvent] = field(default_factory=list)
    attempt: str | None = None


def _in_worker(sender: Any, number: int, fn: Callable[..., Any], *args: Any) -> _Outcome:
    """Run ``fn(*args)`` as task ``number``, its :func:`task_progress` sending to ``sender``."""
    global _current
    outer, _current = _current, TaskEvents(sender, number)
    attempt = _current
    try:
        return _Outcome(fn(*args), events=attempt.events, attempt=attempt.attempt)
    except Exception as exc:
        return _Outcome(error=exc, events=attempt.events, attempt=attempt.attempt)
    finally:
        _current = outer


@dataclass
class Task:
    """``fn(*args)`` in a worker, then ``then(result, error)`` here (returns more tasks)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    then: Callable[[Any, BaseException | None], Sequence[Task] | None] | None = None
    label: str = ""
    # Ready tasks start highest first (ties in the order they came): long work first, so
    # that a long task does not start last and leave the other workers idle at the end.
    priority: float = 0.0


class Executor:
    """The interface: submit a task, wait for some to finish, read a finished one."""

    kind = "serial"
    workers = 1

    @property
    def parallel(self) -> bool:
        return self.workers > 1 or self.kind == "ray"

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        """Some of ``handles`` that are finished: at least one, or none once ``timeout``
        seconds have passed."""
        raise NotImplementedError

    def result(self, handle: Any) -> Any:
        """The task's return value; raises what the task raised."""
        raise NotImplementedError

    def live_events(self) -> EventLine | None:
        """The line the tasks' events reach the caller by while they run (opened on the
        first call, closed with the executor); None: they come with the results only."""
        return None

    def close(self) -> None:
        """Release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class _Done:
    value: Any = None
    error: BaseException | None = None


class SerialExecutor(Executor):
    """Runs each task when it is submitted, in this process."""

    _line: DirectLine | None = None

    def live_events(self) -> EventLine:
        if self._line is None:
            self._line = DirectLine()
        return self._line

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Done:
        try:
            return _Done(fn(*args))
        except Exception as exc:
            return _Done(error=exc)

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        return list(handles[:1])

    def result(self, handle: _Done) -> Any:
        if handle.error is not None:
            raise handle.error
        return handle.value


class LocalExecutor(Executor):
    """A pool of ``workers`` spawned processes on this machine."""

    kind = "local"

    def __init__(self, workers: int | None = None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers or default_workers()
        self.context = multiprocessing.get_context("spawn")
        # Workers keep TensorFlow's default thread pools, those of a serial run: fewer
        # threads would sum in another order and change the last bits of the weights.
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self.context)
        self._line: EventLine | None = None
        self._manager: Any = None

    def live_events(self) -> EventLine:
        if self._line is None:
            self._line, self._manager = manager_line(self.context)
        return self._line

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        # After the pool: a running task may still report while it is being waited for.
        if self._line is not None:
            self._line.close()
            self._manager.shutdown()
            self._line = self._manager = None


class RayExecutor(Executor):
    """Ray tasks: a Ray started here (``address=None``) or a running cluster's.

    A task whose worker dies is retried by Ray (``retries`` times); entries are built
    atomically under a per-entry lock, so a retry never sees half of a killed build.
    """

    kind = "ray"

    def __init__(
        self, address: str | None = None, workers: int | None = None, retries: int = 2
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise BackendUnavailableError(
                f"--executor ray: the ray package is not installed ({exc})",
                expected="ray in the Python that runs edgesmith",
                fix="pip install 'edgesmith[tune]' (or pip install ray), or use --executor local",
            ) from None
        self.ray = ray
        self.retries = retries
        self.started = not ray.is_initialized()
        if self.started:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                options["address"] = address
            else:
                options["num_cpus"] = workers or default_workers()
            try:
                ray.init(**options)
            except Exception as exc:  # no cluster at that address, a port in use, ...
                raise BackendUnavailableError(
                    f"--executor ray: Ray did not start ({type(exc).__name__}: {exc})",
                    expected="a reachable Ray cluster (--ray-address) or none for a local one",
                    fix="check `ray status` on the head node, or use --executor local",
                ) from exc
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote: dict[Callable[..., Any], Any] = {}
        self._line: EventLine | None = None

    def live_events(self) -> EventLine:
        if self._line is None:
            self._line = ray_line()
        return self._line

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        if fn not in self._remote:
            # SPREAD: stage tasks are long and CPU-bound, so they go to the idle nodes
            # rather than filling the driver's node first. ``max_retries`` covers a dead
            # worker or node (not an exception the task raises: that is its result).
            self._remote[fn] = self.ray.remote(fn).options(
                max_retries=self.retries, scheduling_strategy="SPREAD"
            )
        return self._remote[fn].remote(*args)

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        done, _ = self.ray.wait(list(handles), num_returns=1, timeout=timeout)
        return done

    def result(self, handle: Any) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return self.ray.get(handle)
        except RayTaskError as exc:
            # The task's own exception, as the other executors raise it.
            raise exc.as_instanceof_cause() from None

    def close(self) -> None:
        if self._line is not None:
            self._line.close()
            self._line.sender.shutdown(force=True)  # the queue actor
            self._line = None
        if self.started:
            self.ray.shutdown()


def make_executor(
    kind: str = "local", *, workers: int | None = None, address: str | None = None
) -> Executor:
    """The executor called ``kind`` (``local``, ``serial``, ``ray``).

    ``workers``: processes of the local pool (default: one per core; 1 is serial);
    ``address``: the Ray cluster to join (only with ``ray``).
    """
    if kind not in EXECUTORS:
        raise ConfigError(f"--executor {kind}", expected=f"one of {', '.join(EXECUTORS)}")
    if address and kind != "ray":
        raise ConfigError(
            f"--ray-address {address} with --executor {kind}", fix="add --executor ray"
        )
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}", expected="at least 1")
    if kind == "ray":
        return RayExecutor(address, workers)
    if kind == "serial" or workers == 1:
        return SerialExecutor()
    return LocalExecutor(workers)


def run_graph(
    executor: Executor, tasks: Iterable[Task], *, progress: Progress | None = None
) -> list[Any]:
    """Run ``tasks`` and every task their ``then`` adds; return the results of those without
    a ``then``, in the order they finished. A task's error goes to its ``then``; one
    without a ``then`` raises it (after the running tasks are done).

    The events a task reports through :func:`task_progress` go to ``progress`` while it
    runs, with ``source`` set to the task's label (``task N`` without one). ``progress``
    and the ``then`` continuations are called from this thread only, one at a time.
    """
    line = executor.live_events() if progress is not None else None
    dispatch = Dispatch(as_progress(progress))
    if line is not None:
        line.bind(dispatch.live)
    sender = line.sender if line is not None else None
    pending: dict[Any, tuple[Task, int]] = {}
    results: list[Any] = []
    queue = list(tasks)
    failure: BaseException | None = None
    # No more in flight than there are workers: the rest wait here, where their priority
    # still decides which starts next (a pool's own queue is first come, first served).
    capacity = max(1, executor.workers)
    while queue or pending:
        queue.sort(key=lambda t: -t.priority)  # stable: equal priorities keep their order
        while queue and len(pending) < capacity:
            task = queue.pop(0)
            number = next(_numbers)
            dispatch.expect(number, task.label)
            pending[executor.submit(_in_worker, sender, number, task.fn, *task.args)] = (
                task,
                number,
            )
        # With a live line, wake up now and then to hand on what arrived meanwhile.
        done = executor.wait(list(pending), timeout=None if line is None else POLL_S)
        for item in line.take() if line is not None else []:
            dispatch.live(item)
        for handle in done:
            task, number = pending.pop(handle)
            try:
                outcome = executor.result(handle)
            except Exception as exc:  # the worker, not the task, failed (it cannot return)
                outcome = _Outcome(error=exc)
            dispatch.finish(number, outcome.attempt, outcome.events)
            value, error = outcome.value, outcome.error
            if task.then is not None:
                queue.extend(task.then(value, error) or [])
            elif error is not None:
                failure = failure or error
            else:
                results.append(value)
    if failure is not None:
        raise failure
    return results
