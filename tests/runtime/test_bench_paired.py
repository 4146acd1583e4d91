"""bench with a reference file: both timed in alternating blocks in one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesmith.core.errors import ConfigError, ModelFileError
from edgesmith.runtime.bench import PAIRED_BLOCK_RUNS, bench_file, benchmark


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two float .tflite files of one input shape: a small dense model and a wider one."""
    from edgesmith.zoo.tfkeras import keras, tf

    folder = tmp_path_factory.mktemp("pair")
    files = []
    for name, units in (("small", 4), ("wide", 256)):
        k = keras()
        model = k.Sequential([k.layers.Input((16,)), k.layers.Dense(units), k.layers.Dense(3)])
        blob = tf().lite.TFLiteConverter.from_keras_model(model).convert()
        files.append(folder / f"{name}.tflite")
        files[-1].write_bytes(blob)
    return files[0], files[1]


def test_paired_record_holds_the_reference_measured_in_the_same_window(tiny_pair):
    small, wide = tiny_pair
    record = benchmark(small, "litert", threads=1, runs=12, warmup=1, reference=wide)
    paired = record.paired
    assert paired is not None and paired["reference"] == "wide.tflite"
    # Both files get the same number of timed runs, in blocks.
    assert paired["runs"] == record.environment["bench"]["runs"] == 12
    assert paired["block_runs"] == PAIRED_BLOCK_RUNS
    ref = paired["reference_latency_ms"]
    assert 0 < ref["p10"] <= ref["p50"] <= ref["p90"]
    assert paired["speedup"] == pytest.approx(ref["p50"] / record.latency_ms["p50"], rel=1e-3)
    assert any("interleaved with wide.tflite" in note for note in record.notes)


def test_without_a_reference_nothing_is_paired(tiny_pair):
    record = benchmark(tiny_pair[0], "litert", threads=1, runs=3, warmup=0)
    assert record.paired is None


def test_paired_in_a_child_process_and_a_bad_reference_is_named(tiny_pair, tmp_path):
    small, wide = tiny_pair
    (record,) = bench_file(small, ["litert"], runs=6, warmup=0, threads=1, reference=wide)
    assert record.error is None and record.paired["reference"] == "wide.tflite"
    onnx = tmp_path / "other.onnx"
    onnx.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match=r"other\.onnx"):
        bench_file(small, ["litert"], runs=2, reference=onnx)


def test_a_reference_of_another_format_is_refused(tiny_pair):
    from types import SimpleNamespace

    from edgesmith.runtime.bench import _open_reference

    variant = SimpleNamespace(format="onnx", path=Path("variant.onnx"))
    with pytest.raises(ConfigError, match="same format"):
        _open_reference(tiny_pair[1], variant, None, None, None, (), 0, {})  # type: ignore[arg-type]
