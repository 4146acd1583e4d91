"""The whole path over real SSH: check the board, copy the files, bench there, records back."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgesmith.devices import bench_on
from edgesmith.devices.remote_bench import RemoteDevice, file_sha256
from edgesmith.runtime.device_info import DESCRIPTION_KEYS
from tests.devices.models import linear_classifier


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return linear_classifier(tmp_path_factory.mktemp("linear"))


def test_first_contact_describes_the_board(board):
    device = RemoteDevice(board)
    description = device.check()
    assert tuple(description) == DESCRIPTION_KEYS
    assert description["name"] == "loop" and description["ssh"] == "board"
    assert description["edgesmith"] == __import__("edgesmith").__version__
    assert description["cores"] >= 1 and description["memory_mb"] > 0
    assert description["python"] == ".".join(map(str, sys.version_info[:2])) + (
        "." + str(sys.version_info[2])
    )
    info = device.info()
    # The board has the base install only: both CPU runtimes, and no TensorFlow at all.
    assert {"litert", "onnxruntime"} <= set(info["backends"])
    assert info["python_path"].startswith(str(Path(board.python).parent.parent))
    no_tf = subprocess.run(
        [board.python, "-c", "import tensorflow"], capture_output=True, cwd=tempfile.gettempdir()
    )
    assert no_tf.returncode != 0


def test_bench_on_the_board_gives_the_local_accuracy(board, linear):
    model, evalset = linear
    local = bench_on(
        __import__("edgesmith.devices", fromlist=["DeviceSpec"]).DeviceSpec(),
        model,
        ["onnxruntime"],
        eval_set=evalset,
        runs=3,
        warmup=1,
    )
    device = RemoteDevice(board)
    remote = device.bench(model, ["onnxruntime"], eval_set=evalset, runs=3, warmup=1)
    assert len(local) == len(remote) == 1
    here, there = local[0], remote[0]
    assert here.error is None and there.error is None, (here.error, there.error)
    assert 0.3 < there.accuracy < 1.0  # the labels are noisy: a real measurement
    assert there.accuracy == here.accuracy and there.samples == here.samples == 120
    assert there.latency_ms["p50"] > 0 and there.backend == "onnxruntime"
    assert here.device["name"] == "local" and there.device["name"] == "loop"
    assert tuple(there.device) == DESCRIPTION_KEYS
    assert there.file == str(model)  # the host's path, not the board's
    # Content-addressed copies inside the work folder, and nothing else written there.
    work = Path(board.work_dir)
    for file in (model, evalset):
        copy = work / "files" / file_sha256(file) / file.name
        assert copy.read_bytes() == file.read_bytes()
    written = {p.relative_to(work).parts[0] for p in work.iterdir()}
    assert written <= {"files", "tmp"}
    # A second bench reuses the copies: same files, not rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in (work / "files").rglob("*") if p.is_file()}
    again = RemoteDevice(board).bench(model, ["onnxruntime"], eval_set=evalset, runs=2)
    assert again[0].accuracy == here.accuracy
    assert {p: p.stat().st_mtime_ns for p in (work / "files").rglob("*") if p.is_file()} == stamps


def test_bench_on_the_board_times_beside_its_reference(board, linear, tmp_path):
    """A reference goes to the board too, and the timing there interleaves the two files."""
    model, evalset = linear
    reference, _ = linear_classifier(tmp_path / "reference", seed=1)
    (record,) = RemoteDevice(board).bench(
        model, ["onnxruntime"], eval_set=evalset, runs=4, warmup=1, reference=reference
    )
    assert record.error is None, record.error
    paired = record.paired
    assert paired is not None and paired["reference"] == reference.name
    assert paired["speedup"] > 0 and paired["reference_latency_ms"]["p50"] > 0
    copy = Path(board.work_dir) / "files" / file_sha256(reference) / reference.name
    assert copy.read_bytes() == reference.read_bytes()


def test_cli_bench_on_a_device(loopback, board_python, linear):
    model, evalset = linear
    config = loopback.client_config("cli.conf")
    done = subprocess.run(
        [sys.executable, "-m", "edgesmith", "bench", str(model), "--backend", "onnxruntime",
         "--eval", str(evalset), "--runs", "3", "--device", "ssh://board",
         "--ssh-config", str(config), "--device-python", board_python, "--json", "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["device"]["name"] == "board" and record["device"]["ssh"] == "ssh://board"
    assert record["accuracy"] is not None and record["error"] is None
    assert "device board (ssh://board)" in done.stderr
    # The default work folder is the board's ~/.cache (XDG_CACHE_HOME set by the test sshd).
    copies = list((loopback.folder / "board-cache" / "edgesmith-device" / "files").rglob("*.onnx"))
    assert [p.read_bytes() for p in copies] == [model.read_bytes()]


def test_cli_local_bench_records_name_the_local_device(linear):
    model, _ = linear
    done = subprocess.run(
        [sys.executable, "-m", "edgesmith", "bench", str(model), "--backend", "onnxruntime",
         "--runs", "2", "--json", "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    device = json.loads(done.stdout)["device"]
    assert device["name"] == "local" and device["ssh"] is None and device["cores"] >= 1


def test_arguments_reach_the_board_unchanged(board):
    nasty = "a b; echo pwned $(id) 'q' \"d\" * ~ \\ \n end"
    result = RemoteDevice(board).client.run(
        [board.python, "-c", "import sys; sys.stdout.write(sys.argv[1])", nasty], timeout=60
    )
    assert result.returncode == 0 and result.stdout.decode() == nasty
