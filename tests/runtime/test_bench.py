"""edgesmith bench: the JSON contract, what is measured, accuracy, backends and their failures."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from edgesmith.cli import main
from edgesmith.core.errors import ConfigError, DataError, ModelFileError
from edgesmith.runtime.bench import benchmark
from edgesmith.runtime.evalset import load_eval_set
from edgesmith.runtime.timing import latency_stats, timed_runs
from tests.runtime.conftest import edgesmith

CONTRACT = {
    "file", "format", "backend", "threads", "size_bytes", "latency_ms", "throughput_per_s",
    "peak_rss_mb", "accuracy", "samples", "fully_accelerated", "environment",
}  # fmt: skip
LATENCY = {"init", "first", "mean", "std", "min", "max", "p10", "p50", "p90", "p99"}


def _bench(*args: str, capsys) -> tuple[int, str, str]:
    code = main(["bench", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_record_contract(digits_models, tmp_path, capsys):
    out = tmp_path / "r.json"
    code, stdout, _ = _bench(
        str(digits_models["f32"]), "-b", "litert", "--runs", "30", "--json", str(out), capsys=capsys
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert isinstance(record, dict) and set(record) >= CONTRACT
    assert set(record["latency_ms"]) == LATENCY
    assert record["file"] == str(digits_models["f32"]) and record["format"] == "tflite"
    assert record["backend"] == "litert" and record["threads"] == 1
    assert record["size_bytes"] == os.path.getsize(digits_models["f32"])
    assert record["accuracy"] is None and record["samples"] is None
    assert record["fully_accelerated"] is None and record["error"] is None
    env = record["environment"]
    assert {"machine", "cpu", "libraries", "python", "os"} <= set(env)
    assert env["libraries"]["ai-edge-litert"] and env["libraries"]["numpy"] == np.__version__
    assert env["bench"]["runs"] == 30 and env["bench"]["inputs"].startswith("random")
    lat = record["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
    assert lat["init"] > 0 and lat["first"] > 0
    assert record["throughput_per_s"] == pytest.approx(1000 / lat["mean"], rel=1e-3)
    memory = env["memory_mb"]
    assert 0 < memory["before_load"] <= memory["after_load"] <= record["peak_rss_mb"]
    assert "litert" in stdout and "p50 ms" in stdout  # the table


def test_each_backend_runs_in_its_own_process(digits_models):
    record = benchmark(digits_models["f32"], "litert", runs=5, warmup=1)
    assert record.environment["bench"]["pid"] == os.getpid()
    from edgesmith.runtime.bench import bench_file

    (child,) = bench_file(digits_models["f32"], ["litert"], runs=5, warmup=1)
    assert child.environment["bench"]["pid"] != os.getpid()
    # A fresh process holds only what one backend needs.
    assert child.peak_rss_mb < 400


def test_timing_measures_the_call_and_nothing_else():
    calls = []
    times = timed_runs(lambda: (calls.append(1), time.sleep(0.002)), runs=20)
    assert len(times) == len(calls) == 20
    stats = latency_stats(times)
    assert stats["min"] >= 2.0 and stats["p50"] < 10.0
    assert latency_stats([1_000_000, 2_000_000, 3_000_000]) == {
        "mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "p50": 2.0, "p90": 2.8, "p99": 2.98,
    }  # fmt: skip
    start = time.perf_counter()
    assert len(timed_runs(lambda: None, runs=1, min_time=0.2)) > 1000
    assert time.perf_counter() - start >= 0.2


@pytest.mark.parametrize(
    "key", ["f32", "f16", "int8", "uint8", "int16", "f16in", "onnx", "f16in_onnx"]
)
def test_accuracy_with_an_eval_set_matches_keras(digits_models, key):
    """Accuracy at batch 1 through quantized / float16 inputs equals what Keras scores."""
    y, probs = digits_models["y"], digits_models["keras_probs"]
    keras_accuracy = float(np.mean(probs.argmax(1) == y))
    record = benchmark(digits_models[key], runs=3, warmup=0, eval_set=digits_models["npz"])
    assert record.samples == len(y) == 1797
    assert record.environment["bench"]["batch"] == 1
    assert abs(record.accuracy - keras_accuracy) <= (0.005 if key in ("f32", "onnx") else 0.03)
    assert record.model == "digits-cnn" and record.split == "all"
    assert record.quant == {
        "int8": "int8",
        "uint8": "uint8",
        "int16": "int16",
        "f16": "float16",
    }.get(key)


def test_eval_set_that_does_not_fit_the_model_names_both_files(digits_models, tmp_path, capsys):
    wrong = tmp_path / "kws.npz"
    np.savez(wrong, x=np.zeros((4, 49, 10), np.float32), y=np.zeros(4, np.int64))
    code, _, err = _bench(str(digits_models["int8"]), "--eval", str(wrong), capsys=capsys)
    assert code == 2
    assert str(digits_models["int8"]) in err and "kws.npz" in err
    assert "(8, 8, 1)" in err and "(49, 10)" in err and "export-eval" in err
    # Fractional samples for an integer (token id) input are a wrong eval set too.
    import dataclasses

    from edgesmith.runtime.evalset import match_eval_set
    from edgesmith.runtime.modelfile import TensorInfo, inspect_model

    tokens = tmp_path / "tokens.npz"
    np.savez(tokens, x=np.random.default_rng(0).random((3, 8, 8, 1)), y=np.zeros(3, np.int64))
    info = inspect_model(digits_models["f32"])
    ids = dataclasses.replace(info, inputs=[TensorInfo("ids", (-1, 8, 8, 1), "int32")])
    with pytest.raises(ModelFileError, match="token ids"):
        match_eval_set(ids, load_eval_set(tokens), set())


def test_broken_eval_sets_are_data_errors(tmp_path):
    (tmp_path / "notzip.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 2)))
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 2)), y=np.zeros(2, np.int64))
    for name, message in [
        ("missing.npz", "file not found"),
        ("notzip.npz", "not a readable .npz"),
        ("nolabels.npz", "arrays x and y"),
        ("short.npz", "one label per sample"),
    ]:
        with pytest.raises(DataError, match=message):
            load_eval_set(tmp_path / name)


def test_zoo_export_eval_feeds_bench(zoo_tflite, tmp_path, capsys):
    """The .npz that `zoo export-eval` writes is the eval set bench reads (transformer here)."""
    model = zoo_tflite["transformer"]
    out = tmp_path / "t.json"
    code, stdout, _ = _bench(
        str(model["tflite"]),
        "--eval",
        str(model["npz"]),
        "--runs",
        "10",
        "--json",
        str(out),
        capsys=capsys,
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record["model"] == "transformer-digits" and record["samples"] == 270
    assert abs(record["accuracy"] - model["keras_accuracy"]) <= 0.01
    assert f"{100 * record['accuracy']:.2f}%" in stdout


def test_models_with_state_dynamic_and_several_inputs_all_run(shape_models, tmp_path, capsys):
    out = tmp_path / "s.json"
    for key in ("multi", "dynamic", "state"):
        assert (
            _bench(
                str(shape_models[key]),
                "-b",
                "litert",
                "--runs",
                "5",
                "--json",
                str(out),
                capsys=capsys,
            )[0]
            == 0
        )
    shapes = json.loads(out.read_text())["environment"]["bench"]["input_shapes"]
    assert shapes == {"serving_default_state:0": [1, 16], "serving_default_x:0": [1, 10]}
    code, _, _ = _bench(
        str(shape_models["dynamic"]),
        "--shape",
        "1,49,10",
        "--runs",
        "5",
        "--json",
        str(out),
        capsys=capsys,
    )
    assert code == 0
    assert json.loads(out.read_text())["environment"]["bench"]["input_shapes"] == {
        "serving_default_frames:0": [1, 49, 10]
    }
    code, _, err = _bench(str(shape_models["state"]), "--state", "nope", capsys=capsys)
    assert code == 2 and "--state nope" in err and "serving_default_state:0" in err


def test_dynamic_model_takes_the_eval_sample_shape(shape_models, tmp_path):
    npz = tmp_path / "frames.npz"
    np.savez(
        npz,
        x=np.random.default_rng(0).normal(size=(6, 49, 10)).astype(np.float32),
        y=np.zeros(6, np.int64),
    )
    record = benchmark(shape_models["dynamic"], runs=2, warmup=0, eval_set=npz)
    assert record.environment["bench"]["input_shapes"] == {"serving_default_frames:0": [1, 49, 10]}
    assert record.samples == 6 and 0.0 <= record.accuracy <= 1.0


def test_several_backends_give_a_list_and_an_absent_one_a_clear_line(
    digits_models, tmp_path, capsys
):
    out = tmp_path / "all.json"
    args = [
        str(digits_models["f32"]),
        "-b",
        "litert",
        "-b",
        "edgetpu",
        "--runs",
        "5",
        "--json",
        str(out),
    ]
    code, stdout, err = _bench(*args, capsys=capsys)
    assert code == 2  # edgetpu was asked for by name and cannot run here
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "libedgetpu.so.1" in errors[0] and "coral.ai" in errors[0]
    records = json.loads(out.read_text())
    assert [r["backend"] for r in records] == ["litert", "edgetpu"]
    assert records[0]["error"] is None and records[0]["latency_ms"]["p50"] > 0
    assert records[1]["latency_ms"] is None and "libedgetpu" in records[1]["error"]
    assert "litert" in stdout


def test_auto_runs_what_is_here_and_skips_the_rest_quietly(digits_models, capsys):
    code, stdout, err = _bench(
        str(digits_models["onnx"]), "--runs", "5", "--json", "-", capsys=capsys
    )
    assert code == 0
    record = json.loads(stdout)  # one backend ran: one record, not a list
    assert record["backend"] == "onnxruntime" and record["format"] == "onnx"
    assert record["environment"]["runtime"]["providers"][-1] == "CPUExecutionProvider"
    code, _, err = _bench(str(digits_models["f32"]), "--runs", "5", capsys=capsys)
    assert code == 0 and "skipped edgetpu" in err and "error" not in err


def test_bad_options_are_config_errors(digits_models, capsys):
    for args, message in [
        (["--runs", "0"], "--runs 0"),
        (["--threads", "0"], "--threads 0"),
        (["-b", "tpu"], "unknown backend 'tpu'"),
        (["-b", "onnxruntime"], "runs onnx files"),
        (["--shape", "image=1,8,8"], "--shape"),
        (["--delegate-option", "novalue"], "KEY=VALUE"),
    ]:
        code, _, err = _bench(str(digits_models["f32"]), *args, "--warmup", "0", capsys=capsys)
        assert code == 2, args
        assert message in err and "Traceback" not in err
    with pytest.raises(ConfigError):
        benchmark(digits_models["f32"], "litert", runs=-1)


def test_external_delegate_runs_and_gets_its_options(
    test_delegate, digits_models, tmp_path, capsys
):
    log = tmp_path / "delegate.log"
    out = tmp_path / "ext.json"
    backend = f"external:{test_delegate}"
    args = [str(digits_models["int8"]), "-b", backend, "--delegate-option", f"log={log}"]
    code, _, err = _bench(*args, "--delegate-option", "speed=fast", "--eval", str(digits_models["npz"]),
                          "--runs", "5", "--json", str(out), capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert sorted(log.read_text().split()) == [f"log={log}", "speed=fast"]
    record = json.loads(out.read_text())
    assert record["backend"] == backend and record["fully_accelerated"] is False  # it takes no op
    assert record["accuracy"] > 0.8
    code, _, err = _bench(
        str(digits_models["int8"]), "-b", backend, "--delegate-option", "fail=1", capsys=capsys
    )
    assert code == 2 and "did not load" in err and "refused because fail=1" in err


def test_a_native_crash_in_a_backend_leaves_edgesmith_standing(
    test_delegate, digits_models, tmp_path
):
    out = tmp_path / "crash.json"
    backend = f"external:{test_delegate}"
    result = edgesmith(
        "bench", str(digits_models["f32"]), "-b", backend, "-b", "litert",
        "--delegate-option", "crash=1", "--runs", "5", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # not -11: the parent survived the SIGSEGV
    assert "crashed with SIGSEGV" in result.stderr and "Traceback" not in result.stderr
    crashed, cpu = json.loads(out.read_text())
    assert "SIGSEGV" in crashed["error"] and cpu["error"] is None


def test_native_errors_that_python_never_sees_are_caught(test_delegate, digits_models, tmp_path):
    """WebGPU logs a shader it cannot compile to stderr and runs on: the record says so."""
    said = "E0000 environment.cc:105] Validation error: Error while parsing WGSL: :41:22 bad"
    out = tmp_path / "said.json"
    backend = f"external:{test_delegate}"
    result = edgesmith(
        "bench", str(digits_models["f32"]), "-b", backend, "--delegate-option", f"say={said}",
        "--runs", "3", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 2
    record = json.loads(out.read_text())
    assert "WebGPU validation error: Error while parsing WGSL: :41:22 bad" in record["error"]
    assert "not valid" in record["error"] and record["latency_ms"]["p50"] > 0
    quiet = benchmark(
        digits_models["f32"], backend, runs=3, delegate_options={"say": "all is well"}
    )
    assert quiet.error is None


def test_native_log_takes_what_native_code_writes_to_stderr(tmp_path):
    from edgesmith.core.native_log import native_log
    from edgesmith.runtime.bench import accelerator_failure

    with native_log(tmp_path / "n.log") as log:
        os.write(2, b"Validation error: Error while parsing WGSL: :1:2 error: nope\n  a = b;\n")
    text = log.read()
    assert log.path == tmp_path / "n.log" and text == log.path.read_text()
    assert "nope" in text
    assert accelerator_failure(text) == (
        "WebGPU validation error: Error while parsing WGSL: :1:2 error: nope a = b;"
    )
    assert accelerator_failure("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") is None
