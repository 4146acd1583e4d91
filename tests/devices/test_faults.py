"""Each way a device can fail gives one clear line naming the device, over real SSH."""

from __future__ import annotations

import dataclasses
import time
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgesmith import __version__
from edgesmith.core.errors import DeviceError
from edgesmith.devices.remote_bench import RemoteDevice
from tests.devices.conftest import _keygen, start_sshd, stop_sshd
from tests.devices.models import linear_classifier


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return linear_classifier(tmp_path_factory.mktemp("linear"))


def _fails(spec, *, install: bool = False) -> str:
    with pytest.raises(DeviceError) as caught:
        RemoteDevice(spec).check(install=install)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"device {spec.name}: ")
    return message


def test_a_key_the_board_does_not_know_is_refused(board, loopback, tmp_path):
    stranger = _keygen(tmp_path / "stranger")
    config = loopback.client_config("stranger.conf", key=stranger)
    message = _fails(dataclasses.replace(board, ssh_config=str(config)))
    assert "authentication refused" in message and "ssh-copy-id board" in message


def test_an_unknown_host_key_is_not_accepted(board, loopback, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = loopback.client_config("unknown.conf", known_hosts=str(empty))
    message = _fails(dataclasses.replace(board, ssh_config=str(config)))
    assert "unknown or changed host key" in message and "fingerprint" in message
    assert empty.read_text() == ""  # nothing was added behind the user's back


def test_a_stopped_sshd_is_unreachable(board, tmp_path):
    server = start_sshd(tmp_path / "other-sshd")
    config = server.client_config()
    spec = dataclasses.replace(board, ssh_config=str(config))
    assert RemoteDevice(spec).check()["name"] == "loop"  # it was reachable while running
    stop_sshd(server)
    message = _fails(spec)
    assert "unreachable" in message and "Connection refused" in message


def test_a_missing_python_says_which_path(board, tmp_path):
    message = _fails(dataclasses.replace(board, python=str(tmp_path / "no" / "python")))
    assert f"no Python at {tmp_path / 'no' / 'python'}" in message


def test_a_board_without_edgesmith_gets_the_install_command(board, tmp_path):
    bare = tmp_path / "bare-venv"
    venv.EnvBuilder(with_pip=False).create(bare)
    python = str(bare / "bin" / "python")
    message = _fails(dataclasses.replace(board, python=python))
    assert "edgesmith is not installed" in message
    assert f"{python} -m pip install edgesmith=={__version__}" in message
    assert "--install" in message


def test_a_killed_connection_is_a_dropped_connection(board, loopback, linear):
    model, evalset = linear
    device = RemoteDevice(board)
    device.check()
    device.push([model, evalset])
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(
            device.bench, model, ["onnxruntime"], eval_set=evalset, runs=1, min_time=8
        )
        deadline = time.monotonic() + 20
        while not loopback.children() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # the bench is running there now
        assert loopback.kill_connections() >= 1
        with pytest.raises(DeviceError) as caught:
            running.result(timeout=60)
    assert "connection dropped" in str(caught.value) and "\n" not in str(caught.value)


def test_a_hanging_device_times_out(board, linear):
    model, evalset = linear
    spec = dataclasses.replace(board, timeout=3)
    started = time.monotonic()
    with pytest.raises(DeviceError) as caught:
        RemoteDevice(spec).bench(model, ["onnxruntime"], eval_set=evalset, runs=1, min_time=6)
    assert time.monotonic() - started < 30
    assert "did not finish within 3 s" in str(caught.value)
