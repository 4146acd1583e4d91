"""How a stage task's progress events reach the caller while the task runs.

In the worker, :class:`TaskEvents` numbers each event of one attempt of a task and sends it
at once down the executor's line (:class:`EventLine`): a call in this process (serial), a
``multiprocessing`` manager queue (local pool) or a Ray queue actor (Ray, any node). It
also keeps every event, and they travel back with the task's result. In the process that
runs the graph, :class:`Dispatch` hands each event to the caller's callback once, in the
task's order, tagged with the task it came from (``ProgressEvent.source``): the live copy
when it comes in time, the result's copy for whatever the line lost or had not delivered
when the task ended. So a slow or broken line delays events but never loses one.

Threads: a listener thread per line (local, Ray) moves what arrives into an in-process
inbox; the callback itself is only ever called from the thread that called
:func:`~edgesmith.executor.run_graph`, which empties the inbox while it waits for tasks
(every :data:`POLL_S` seconds at most). The continuations (``Task.then``) run on that
thread too, so a callback never sees two calls at once.

A Ray task whose worker died is run again with a new attempt id: the caller gets a warning
that its progress starts over, then the new attempt's events; late events of the lost
attempt are dropped.

Example:
    >>> from edgesmith.core.progress import ProgressEvent
    >>> seen = []
    >>> dispatch = Dispatch(seen.append)
    >>> dispatch.expect(1, "cnn-digits prune50")
    >>> dispatch.live((1, "a", 0, ProgressEvent("fine-tune", "epoch", done=1, total=2)))
    >>> dispatch.finish(1, "a", [ProgressEvent("fine-tune", "epoch", done=d, total=2) for d in (1, 2)])
    >>> [(e.source, e.done) for e in seen]
    [('cnn-digits prune50', 1), ('cnn-digits prune50', 2)]
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from edgesmith.core.progress import Progress, ProgressEvent

# How long run_graph waits for a task before it delivers what came in meanwhile.
POLL_S = 0.1

# The ``task`` of the warning that a task's worker was lost and the task runs again.
EXECUTOR_TASK = "executor"

# Test-only: when set to a file's path, the first task event seen while that file exists
# claims it (renames it to PATH.claimed, which one process alone can do) and ends its
# worker process on the spot, so that tests can kill a worker mid-task. Unset: inert.
KILL_ONCE_ENV = "EDGESMITH_TEST_KILL_ONCE"

# What travels down a line: (task number, attempt id, index of the event in the attempt, event).
Item = tuple[int, str, int, ProgressEvent]


class TaskEvents:
    """In a worker: the progress callback of one attempt of task ``number``."""

    def __init__(self, sender: Any, number: int) -> None:
        self.sender = sender
        self.number = number
        self.attempt = uuid.uuid4().hex  # a retried Ray task gets a new one
        self.events: list[ProgressEvent] = []

    def __call__(self, event: ProgressEvent) -> None:
        index = len(self.events)
        self.events.append(event)
        if self.sender is not None:
            try:
                self.sender.put((self.number, self.attempt, index, event))
            except Exception:
                # The line is gone (the run is closing, a node lost): the result still
                # carries every event, so stop trying rather than fail the task.
                self.sender = None
        marker = os.environ.get(KILL_ONCE_ENV)
        if marker:
            try:
                os.rename(marker, marker + ".claimed")
            except OSError:
                return  # not armed, or another task claimed it
            os._exit(17)


@dataclass
class _Track:
    """What the caller has seen of one task: its attempts and how far each got."""

    source: str
    attempt: str | None = None
    tries: int = 0
    past: set[str] = field(default_factory=set)
    next: int = 0  # index of the next event of ``attempt`` to deliver
    held: dict[int, ProgressEvent] = field(default_factory=dict)  # arrived ahead of a gap


class Dispatch:
    """In the caller: each task's events to ``report`` once and in order, tagged with the
    task they came from. Call it from one thread (run_graph's)."""

    def __init__(self, report: Progress) -> None:
        self.report = report
        self.tasks: dict[int, _Track] = {}

    def expect(self, number: int, label: str) -> None:
        """Task ``number`` is about to be submitted; its events say ``label`` (or its number)."""
        self.tasks[number] = _Track(label or f"task {number}")

    def live(self, item: Item) -> None:
        """An event that came down the line, maybe late, twice or ahead of another."""
        number, attempt, index, event = item
        track = self.tasks.get(number)
        if track is None:
            return  # a task of an earlier graph, or one already finished
        if attempt != track.attempt:
            if attempt in track.past:
                return  # a lost attempt's event, overtaken by the new one
            self._new_attempt(track, attempt)
        if index < track.next:
            return
        track.held[index] = event
        while track.next in track.held:
            self._emit(track, track.held.pop(track.next))

    def finish(self, number: int, attempt: str | None, events: list[ProgressEvent]) -> None:
        """Task ``number`` ended: deliver what its line had not, then forget it.

        ``attempt`` and ``events`` are its result's (None and [] when its worker failed).
        """
        track = self.tasks.pop(number, None)
        if track is None or attempt is None:
            return
        if attempt != track.attempt:
            self._new_attempt(track, attempt)
        track.held.clear()
        while track.next < len(events):
            self._emit(track, events[track.next])

    def _new_attempt(self, track: _Track, attempt: str) -> None:
        if track.attempt is not None:
            track.past.add(track.attempt)
            self.report(
                ProgressEvent(
                    EXECUTOR_TASK,
                    f"its worker was lost; running it again (attempt {track.tries + 1}), "
                    "its progress starts over",
                    level="warning",
                    source=track.source,
                )
            )
        track.tries += 1
        track.attempt, track.next = attempt, 0
        track.held.clear()

    def _emit(self, track: _Track, event: ProgressEvent) -> None:
        track.next += 1  # counted first: a callback that raises does not get it twice
        self.report(replace(event, source=event.source or track.source))


class EventLine:
    """How an executor's tasks send events to the caller while they run.

    ``sender`` goes to each task (picklable where tasks run elsewhere) and has
    ``put(item)``; :meth:`take` returns what arrived since the last call.
    """

    sender: Any = None

    def bind(self, deliver: Callable[[Item], None]) -> None:
        """Where items go when the line delivers them itself (in-process lines only)."""

    def take(self) -> list[Item]:
        return []

    def close(self) -> None:
        """Stop listening."""


class DirectLine(EventLine):
    """Tasks run on the caller's thread: an event goes to the caller when it is reported."""

    def __init__(self) -> None:
        self.sender = self
        self.deliver: Callable[[Item], None] | None = None
        self.error: Exception | None = None

    def bind(self, deliver: Callable[[Item], None]) -> None:
        self.deliver = deliver

    def put(self, item: Item) -> None:
        if self.deliver is None:
            return
        try:
            self.deliver(item)
        except Exception as exc:
            # The caller's callback failed: raised by run_graph, not by the task (which
            # could take it for its own error).
            self.error = self.error or exc

    def take(self) -> list[Item]:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return []


class QueueLine(EventLine):
    """Tasks elsewhere put events on a shared queue; a listener thread moves them here.

    ``channel`` is that queue (it goes to the tasks); ``get`` blocks until an item comes
    (from this side's handle on it). ``None`` on the queue stops the listener.
    """

    def __init__(self, channel: Any, get: Callable[[], Any]) -> None:
        self.sender = channel
        self._get = get
        self._inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        # A daemon: a listener blocked on a vanished queue must not keep the process alive.
        self._thread = threading.Thread(target=self._listen, name="edgesmith-events", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while True:
            try:
                item = self._get()
            except Exception:
                return  # the queue is gone: the results still carry the events
            if item is None:
                return
            self._inbox.put(item)

    def take(self) -> list[Item]:
        items = []
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                return items

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self.sender.put(None)
            except Exception:
                return  # the queue is gone and the listener with it
            self._thread.join(timeout=10)


def manager_line(context: Any) -> tuple[EventLine, Any]:
    """A line for spawned worker processes, and the manager process that serves its queue.

    A manager queue rather than a plain ``multiprocessing.Queue``: each worker talks to it
    over its own connection, so a worker killed mid-send cannot leave a shared lock held.
    """
    manager = context.Manager()
    channel = manager.Queue()
    return QueueLine(channel, channel.get), manager


def ray_line() -> EventLine:
    """A line for Ray tasks on any node of the cluster: a queue actor that takes no CPU."""
    from ray.util.queue import Queue

    channel = Queue(actor_options={"num_cpus": 0})
    return QueueLine(channel, channel.get)
