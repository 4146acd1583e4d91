"""A real two-node Ray cluster on this machine: a plan and a few tune trials run on it.

The cluster is started with Ray's own CLI, each node a ``ray start --block`` in a session
of its own (unique ports, a temporary ``--temp-dir``), and stopped by signalling those two
processes and what is left of their sessions: never ``ray stop``, which would stop every
Ray of this user, other people's tests included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgesmith.executor import KILL_ONCE_ENV, make_executor
from edgesmith.plan import Plan
from edgesmith.plan_runner import records_from_jsonl, run_plan
from tests.edgesmith.test_executor import PLAN, _stable

pytestmark = pytest.mark.slow  # a cluster start and several runs: about a minute

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_options(temp_dir: str) -> list[str]:
    # Every port a node would otherwise take at its fixed default, chosen free, so that
    # clusters of concurrent test runs do not meet.
    return [
        "--block",
        "--num-cpus=1",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        "--include-log-monitor=false",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]


def _session_pids(sid: int) -> list[int]:
    """The processes still in session ``sid`` (one a node's ``ray start`` began)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after the command: state, ppid, pgrp, session
            pids.append(int(entry.name))
    return pids


def _stop(nodes: list[subprocess.Popen]) -> None:
    for node in reversed(nodes):  # the second node first, then the head
        node.send_signal(signal.SIGTERM)
    for node in reversed(nodes):
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
    for node in nodes:
        for pid in _session_pids(node.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _wait_for_nodes(address: str, count: int, timeout: float = 120) -> list[str]:
    """The ids of the cluster's nodes once ``count`` are alive."""
    import ray

    ray.init(address=address, log_to_driver=False)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            if len(alive) >= count:
                return alive
            time.sleep(0.5)
        raise AssertionError(f"{count} Ray nodes did not come up in {timeout} s")
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cluster():
    """``(address, node ids, kill file)``: a head and a second node, one CPU each.

    The nodes' workers see ``EDGESMITH_TEST_KILL_ONCE``: a test arms it by creating the
    kill file; until then it does nothing.
    """
    # Ray is in the dev extra `make test` installs: its absence is a broken install.
    assert RAY.exists(), f"no ray command beside {sys.executable}: pip install -e '.[dev]'"
    # A short folder: Ray's Unix sockets live under it and their paths have a length limit.
    temp_dir = tempfile.mkdtemp(prefix="es-ray-", dir="/tmp")
    kill_file = Path(temp_dir) / "kill-a-worker"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", KILL_ONCE_ENV: str(kill_file)}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[subprocess.Popen] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")  # the driver, as the nodes
        try:
            head = [str(RAY), "start", "--head", f"--port={port}", "--include-dashboard=false"]
            head += [f"--dashboard-port={_free_port()}", f"--ray-client-server-port={_free_port()}"]
            second = [str(RAY), "start", f"--address={address}"]
            for command, log in ((head, "head.log"), (second, "node.log")):
                with open(Path(temp_dir) / log, "w") as out:
                    nodes.append(
                        subprocess.Popen(
                            [*command, *_node_options(temp_dir)],
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            yield address, _wait_for_nodes(address, 2), kill_file
        finally:
            _stop(nodes)
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def serial_run(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    with make_executor("serial") as executor:
        return out, run_plan(Plan.from_dict(PLAN), out=out, store=tiny_store, executor=executor)


def test_a_plan_on_two_nodes_gives_the_serial_records(
    ray_cluster, serial_run, tiny_store, tmp_path
):
    from edgesmith.cli import main

    address, node_ids, _ = ray_cluster
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps(PLAN))  # JSON is YAML
    out = tmp_path / "run"
    args = ["run", "--plan", str(plan), "--out", str(out), "--store", str(tiny_store)]
    serial_out, serial = serial_run
    failed = any(r.error for r in serial.records)  # the plan's broken recipe: exit 1
    assert main([*args, "--executor", "ray", "--ray-address", address]) == int(failed)

    records = records_from_jsonl(out / "results.jsonl")
    assert _stable(records, out) == _stable(serial.records, serial_out)
    # Every conversion ran in a Ray task, and the tasks used both nodes.
    converted = [r for r in records if not r.error]
    placed = {r.environment.get("ray_node_id") for r in converted}
    assert converted and None not in placed
    assert placed == set(node_ids)
    assert all(r.environment.get("hostname") == socket.gethostname() for r in converted)
    # A serial run's records name no Ray node.
    assert not any("ray_node_id" in r.environment for r in serial.records)


def test_a_worker_killed_mid_task_is_retried(ray_cluster, serial_run, tiny_store, tmp_path):
    address, _, kill_file = ray_cluster
    kill_file.touch()  # armed: the first task to report progress ends its worker
    events = []
    with make_executor("ray", address=address) as executor:
        summary = run_plan(
            Plan.from_dict(PLAN),
            out=tmp_path,
            store=tiny_store,
            executor=executor,
            progress=events.append,
        )
    # The kill happened (one worker claimed the file) and the run still completed.
    assert not kill_file.exists() and Path(f"{kill_file}.claimed").exists()
    serial_out, serial = serial_run
    assert summary.computed == serial.computed
    assert _stable(summary.records, tmp_path) == _stable(serial.records, serial_out)
    # The retried fine-tuning's epochs came back from the worker to this callback.
    assert [e for e in events if e.message == "epoch" and "val_accuracy" in e.fields]


def test_tune_trials_run_on_the_cluster(ray_cluster, tiny_store, tmp_path):
    from edgesmith.tune import run_tune
    from tests.edgesmith.test_tune import SPACE, _config

    address, node_ids, _ = ray_cluster
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    events = []
    with make_executor("ray", address=address) as executor:
        result = run_tune(
            _config(tmp_path, space, trials=2, store=str(tiny_store)),
            executor=executor,
            progress=events.append,
        )
    assert sum(result["trials"].values()) == 2 and result["recommended"]
    written = json.loads((tmp_path / "tune.json").read_text())
    assert written["recommended"]["file"] and written["front"]
    # The trials' stages ran in Ray tasks: their records name a node of the cluster (but
    # a trial of the float model as the reference's target reuses what this process built).
    import optuna

    from edgesmith.tune import STUDY_NAME

    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{tmp_path / 'study.db'}")
    records = [t.user_attrs["record"] for t in study.trials if "record" in t.user_attrs]
    placed = {r["environment"].get("ray_node_id") for r in records if r["recipe"] != "baseline"}
    assert placed and placed <= set(node_ids)
    # The trials' stage messages came back from the workers.
    assert any(e.task == "edgesmith run" for e in events)
