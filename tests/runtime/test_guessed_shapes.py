"""A model with dynamic dimensions that fails at the guessed size 1: the error says which
dimensions were guessed and gives the ``--shape`` to use instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesmith.cli import main
from edgesmith.core.errors import ModelFileError
from edgesmith.runtime.bench import bench_file, benchmark


@pytest.fixture
def reflect_pad(tmp_path: Path) -> Path:
    """x (batch, length) -> reflect-pad length by 2 on each side: needs length >= 3."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    pads = helper.make_tensor("pads", TensorProto.INT64, [4], [0, 2, 0, 2])
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")],
        "reflect_pad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None])],
        initializer=[pads],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "reflect.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_the_error_names_the_guessed_dimensions(reflect_pad):
    with pytest.raises(ModelFileError) as caught:
        benchmark(reflect_pad, "onnxruntime", runs=1, warmup=0)
    text = str(caught.value)
    assert "input 'x' (?, ?) ran as (1, 1)" in text
    assert "--shape x=1,16" in text and "--in-process" not in text
    [record] = bench_file(reflect_pad, ["onnxruntime"], runs=1, warmup=0)
    assert "--shape x=1,16" in record.error and "--in-process" not in record.error


def test_the_cli_prints_one_line_with_the_shape_to_give(reflect_pad, capsys):
    assert main(["bench", str(reflect_pad), "--runs", "1", "--warmup", "0"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--shape x=1,16" in errors[0] and reflect_pad.name in errors[0]
    assert (
        main(["bench", str(reflect_pad), "--runs", "1", "--warmup", "0", "--shape", "x=1,8"]) == 0
    )
