"""The executors: a plan run in worker processes (and on Ray) gives the serial run's records."""

from __future__ import annotations

import pytest

from edgesmith.core.errors import ConfigError
from edgesmith.core.progress import ProgressEvent
from edgesmith.executor import SerialExecutor, Task, make_executor, run_graph, task_progress
from edgesmith.plan import Plan
from edgesmith.plan_runner import run_plan
from tests.edgesmith import test_plan_runner

# Derived from the latencies (which is fastest), so as volatile as they are.
VOLATILE = {*test_plan_runner.VOLATILE, "recommended_for"}


def _stable(records, out):
    rows = test_plan_runner._stable(records, out)
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


PLAN = {
    "models": ["cnn-digits"],
    "recipes": {"prune50": "prune:sparsity=0.5,epochs=1", "broken": "prune:sparsity=0.5,exclude=("},
    "targets": ["tflite:none", "tflite:int8"],
    "backends": ["litert"],
    "bench": {"runs": 3, "warmup": 1},
    "parity_samples": 30,
    "calibration_samples": 30,
}


def _add(a: int, b: int) -> int:
    return a + b


def test_run_graph_follows_the_continuations_and_reports_errors():
    seen = []

    def then(value, error):
        seen.append((value, type(error).__name__ if error else None))
        return [Task(_add, (value, 1))] if value is not None else []

    with SerialExecutor() as executor:
        results = run_graph(executor, [Task(_add, (1, 2), then), Task(_add, (1, None), then)])
    assert results == [4]
    assert seen == [(3, None), (None, "TypeError")]


def _count(n: int) -> int:
    import os

    report = task_progress()
    for i in range(n):
        report(ProgressEvent("count", "step", done=i + 1, total=n, fields={"pid": os.getpid()}))
    if n == 0:
        raise ValueError("nothing to count")
    return n


def test_events_of_tasks_in_workers_reach_the_caller():
    import os

    events, seen = [], []

    def then(value, error):
        seen.append((value, type(error).__name__ if error else None))
        return []

    with make_executor("local", workers=2) as executor:
        tasks = [Task(_count, (2,)), Task(_count, (3,)), Task(_count, (0,), then)]
        results = run_graph(executor, tasks, progress=events.append)
    assert sorted(results) == [2, 3] and seen == [(None, "ValueError")]
    # Each task's events arrive whole and in its order, from the worker that ran it.
    by_total = {}
    for event in events:
        by_total.setdefault(event.total, []).append(event)
    assert sorted(by_total) == [2, 3]
    for total, mine in by_total.items():
        assert [e.done for e in mine] == list(range(1, total + 1))
        assert {e.fields["pid"] for e in mine} != {os.getpid()}
    assert task_progress() is None  # outside a task there is nothing to report to


def _report_then_wait(marker: str, name: str) -> bool:
    """Says it is waiting, then waits (20 s at most) for the caller to create ``marker``."""
    import time
    from pathlib import Path

    report = task_progress()
    report(ProgressEvent(name, "waiting", fields={"marker": marker}))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if Path(marker).exists():
            report(ProgressEvent(name, "released"))
            return True
        time.sleep(0.02)
    return False  # the event did not reach the caller while this task ran


def _live_delivery(executor, tmp_path):
    """Two tasks at once, each released only by the caller's reaction to its first event."""
    from pathlib import Path

    events = []

    def progress(event):
        events.append(event)
        if event.message == "waiting":
            Path(event.fields["marker"]).touch()

    tasks = [
        Task(_report_then_wait, (str(tmp_path / name), name), label=f"job {name}")
        for name in ("a", "b")
    ]
    assert run_graph(executor, tasks, progress=progress) == [True, True]
    by_source = {}
    for event in events:
        by_source.setdefault(event.source, []).append(event.message)
    # Each event names the task it came from; none is lost or repeated.
    assert by_source == {"job a": ["waiting", "released"], "job b": ["waiting", "released"]}


def test_worker_events_reach_the_caller_while_the_task_runs(tmp_path):
    with make_executor("local", workers=2) as executor:
        _live_delivery(executor, tmp_path)
        # The line stays open for the next graph on the same executor (tune runs several).
        again = tmp_path / "again"
        again.mkdir()
        _live_delivery(executor, again)


def _count_slowly(n: int) -> int:
    import time

    report = task_progress()
    for i in range(n):
        report(ProgressEvent("count", "step", done=i + 1, total=n, fields={"i": i}))
        time.sleep(0.01)
    return n


def _events_by_task(kind, **options):
    events = []
    tasks = [Task(_count_slowly, (n,), label=f"count {n}") for n in (3, 6, 4)]
    with make_executor(kind, **options) as executor:
        results = run_graph(executor, tasks, progress=events.append)
    assert sorted(results) == [3, 4, 6]
    by_task = {}
    for event in events:
        by_task.setdefault(event.source, []).append(event)
    return by_task


def test_serial_and_local_deliver_the_same_events_per_task():
    serial = _events_by_task("serial")
    assert {source: [e.done for e in mine] for source, mine in serial.items()} == {
        f"count {n}": list(range(1, n + 1)) for n in (3, 6, 4)
    }
    assert _events_by_task("local", workers=2) == serial


def test_a_callback_error_is_raised_by_run_graph_not_taken_for_the_task():
    def progress(event):
        raise RuntimeError("callback broke")

    seen = []
    task = Task(_count_slowly, (2,), then=lambda value, error: seen.append(error) or [])
    with pytest.raises(RuntimeError, match="callback broke"):
        run_graph(SerialExecutor(), [task], progress=progress)
    assert all(error is None for error in seen)  # the task did not get the callback's error


def test_dispatch_orders_deduplicates_and_marks_a_retried_attempt():
    from edgesmith.executor_events import EXECUTOR_TASK, Dispatch

    def step(done):
        return ProgressEvent("fine-tune", "epoch", done=done, total=3)

    seen = []
    dispatch = Dispatch(seen.append)
    dispatch.expect(7, "")
    dispatch.live((7, "first", 1, step(2)))  # ahead of a gap: held
    assert seen == []
    dispatch.live((7, "first", 0, step(1)))
    dispatch.live((7, "first", 1, step(2)))  # twice: dropped
    dispatch.live((7, "second", 0, step(1)))  # the worker died: a new attempt
    dispatch.live((7, "first", 2, step(3)))  # the lost attempt, late: dropped
    dispatch.finish(7, "second", [step(1), step(2), step(3)])  # the rest from the result
    dispatch.live((7, "second", 2, step(3)))  # after the end: dropped
    assert [(e.task, e.done, e.level) for e in seen] == [
        ("fine-tune", 1, "info"),
        ("fine-tune", 2, "info"),
        (EXECUTOR_TASK, None, "warning"),
        ("fine-tune", 1, "info"),
        ("fine-tune", 2, "info"),
        ("fine-tune", 3, "info"),
    ]
    assert {e.source for e in seen} == {"task 7"}
    assert "again" in seen[2].message


@pytest.mark.slow
def test_ray_events_reach_the_caller_while_the_task_runs(tmp_path):
    pytest.importorskip("ray")
    with make_executor("ray", workers=2) as executor:
        _live_delivery(executor, tmp_path)


def _pid_and_time(name: str) -> tuple[str, int, float]:
    """The task's name, process and start time (the system-wide monotonic clock)."""
    import os
    import time

    started = time.monotonic()
    time.sleep(0.2)
    return name, os.getpid(), started


@pytest.mark.parametrize("kind", ["serial", "local"])
def test_ready_tasks_start_by_priority_then_in_order(kind):
    names = ["short-a", "long", "short-b", "middle"]
    priority = {"long": 3.0, "middle": 2.0}
    tasks = [Task(_pid_and_time, (n,), priority=priority.get(n, 0.0)) for n in names]
    with make_executor(kind, workers=2) as executor:
        # Warm both workers first: a worker's first task waits for its imports, and the
        # other worker may run a later task meanwhile.
        pids: set[int] = set()
        for _ in range(20):  # until both have run a task
            pids |= {pid for _n, pid, _t in run_graph(executor, [Task(_pid_and_time, ("w",))] * 2)}
            if len(pids) == executor.workers:
                break
        finished = run_graph(executor, tasks)
    started = [name for name, _pid, _t in sorted(finished, key=lambda r: r[2])]
    if kind == "serial":
        assert started == ["long", "middle", "short-a", "short-b"]
    else:  # two at a time: the two highest first, then the rest
        assert set(started[:2]) == {"long", "middle"}
        assert set(started[2:]) == {"short-a", "short-b"}


def test_local_pool_runs_tasks_in_other_processes():
    import os

    with make_executor("local", workers=2) as executor:
        assert executor.parallel and executor.workers == 2
        pids = run_graph(executor, [Task(os.getpid) for _ in range(4)])
    assert len(pids) == 4 and os.getpid() not in pids


def test_bad_executor_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="--executor nope"):
        make_executor("nope")
    with pytest.raises(ConfigError, match="--executor ray"):
        make_executor("local", address="10.0.0.1:6379")
    assert not make_executor("local", workers=1).parallel  # one worker is the serial path


def _run(kind, tiny_store, out, progress=None, **options):
    with make_executor(kind, **options) as executor:
        return run_plan(
            Plan.from_dict(PLAN), out=out, store=tiny_store, executor=executor, progress=progress
        )


@pytest.fixture(scope="module")
def serial_run(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return out, _run("serial", tiny_store, out)


def test_parallel_run_gives_the_serial_records(serial_run, tiny_store, tmp_path):
    out, serial = serial_run
    events = []
    parallel = _run("local", tiny_store, tmp_path, progress=events.append, workers=2)
    assert parallel.computed == serial.computed
    assert _stable(parallel.records, tmp_path) == _stable(serial.records, out)
    # The broken recipe failed in a worker and is recorded with the same error.
    broken = [r for r in parallel.records if r.recipe == "broken"]
    assert broken and all(r.error for r in broken)
    # The fine-tuning ran in a worker; its epochs still reached this callback, and each
    # stage was announced once (by this process, not again by the worker).
    assert [e for e in events if e.message == "epoch" and "val_accuracy" in e.fields]
    stages = [e.message for e in events if e.task == "edgesmith run"]
    assert stages.count("compress: cnn-digits prune50") == 1


@pytest.mark.slow
def test_ray_run_gives_the_serial_records(serial_run, tiny_store, tmp_path):
    pytest.importorskip("ray")
    out, serial = serial_run
    ray_run = _run("ray", tiny_store, tmp_path, workers=2)
    assert _stable(ray_run.records, tmp_path) == _stable(serial.records, out)
