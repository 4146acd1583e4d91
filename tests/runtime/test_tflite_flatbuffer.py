"""The pure-Python .tflite reader: what the schema bindings read, and nothing but
ModelFileError from a damaged file, wherever the damage is."""

from __future__ import annotations

import numpy as np
import pytest

from edgesmith.core.errors import ModelFileError
from edgesmith.runtime.modelfile import inspect_model
from edgesmith.runtime.tflite_flatbuffer import read_graph
from edgesmith.runtime.tflite_schema import BUILTIN_OPERATORS, BUILTIN_OPTIONS, TENSOR_TYPES


def _schema():
    return pytest.importorskip("ai_edge_litert.schema_py_generated")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def test_tables_are_the_schema_enums():
    schema = _schema()
    assert {getattr(schema.TensorType, n.upper()): n for n in TENSOR_TYPES.values()} == (
        TENSOR_TYPES
    )
    assert [getattr(schema.BuiltinOperator, n) for n in BUILTIN_OPERATORS] == list(
        range(len(BUILTIN_OPERATORS))
    )
    for code, (name, fields) in BUILTIN_OPTIONS.items():
        assert getattr(schema.BuiltinOptions, name) == code
        defaults = getattr(schema, name + "T")()
        for field_name, _, default in fields:
            assert getattr(defaults, _camel(field_name)) == default, (name, field_name)


@pytest.mark.parametrize("key", ["f32", "f16", "int8", "uint8", "int16", "multi", "dynamic"])
def test_reads_what_the_schema_bindings_read(digits_models, shape_models, key):
    schema = _schema()
    path = digits_models.get(key) or shape_models[key]
    graph = read_graph(path)
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    sub = model.subgraphs[0]
    assert len(graph.subgraphs) == len(model.subgraphs)
    assert graph.inputs == list(sub.inputs) and graph.outputs == list(sub.outputs)
    for tensor, expected in zip(graph.tensors, sub.tensors, strict=True):
        assert tensor.name == expected.name.decode()
        assert tensor.shape == list(expected.shape if expected.shape is not None else [])
        assert tensor.dtype == TENSOR_TYPES[expected.type]
        assert tensor.buffer == expected.buffer or not tensor.constant
        data = model.buffers[expected.buffer].data
        assert tensor.nbytes == (len(data) if data is not None else 0)
        q = expected.quantization
        assert tensor.quantized == bool(q is not None and q.scale is not None and len(q.scale))
    for op, expected in zip(graph.ops, sub.operators, strict=True):
        code = model.operatorCodes[expected.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        assert op.name == BUILTIN_OPERATORS[builtin]
        assert op.inputs == list(expected.inputs) and op.outputs == list(expected.outputs)
        for name, value in op.options.items():
            assert getattr(expected.builtinOptions, _camel(name)) == value, (op.name, name)
    assert any(op.options for op in graph.ops)
    assert graph.constant_bytes > 0


def test_options_and_constants_are_decoded(digits_models, shape_models):
    conv = next(op for op in read_graph(digits_models["int8"]).ops if op.name == "CONV_2D")
    assert conv.options["fused_activation_function"] == 1  # RELU, fused by the converter
    assert conv.options["dilation_h_factor"] == conv.options["dilation_w_factor"] == 1
    graph = read_graph(shape_models["dynamic"])
    assert graph.tensor(graph.inputs[0]).signature == [-1, -1, 10]
    assert graph.tensor(graph.inputs[0]).dynamic
    assert any(t.values is not None and t.dtype == "int32" for t in graph.tensors)


def test_a_file_that_is_not_tflite_is_named(tmp_path):
    for name, content in (("empty.tflite", b""), ("text.tflite", b"not a model at all")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelFileError, match="not a TFLite flatbuffer") as info:
            read_graph(path)
        assert str(path) in str(info.value)
    with pytest.raises(ModelFileError, match="cannot be read"):
        read_graph(tmp_path / "missing.tflite")


def _mutants(data: bytes, rng: np.random.Generator, count: int):
    """(what was done, bytes): truncations, flipped bytes, zeroed chunks, wild offsets."""
    size = len(data)
    tables = min(size, 4096)  # most offsets and table fields sit before the weights
    for trial in range(count):
        kind = trial % 4
        blob = bytearray(data)
        if kind == 0:
            cut = int(rng.integers(0, size))
            yield f"truncated to {cut}", bytes(blob[:cut])
            continue
        if kind == 1:
            for position in rng.integers(0, tables, size=int(rng.integers(1, 9))):
                blob[position] = int(rng.integers(0, 256))
            what = "flipped bytes"
        elif kind == 2:
            start = int(rng.integers(0, tables))
            length = int(rng.integers(1, 65))
            blob[start : start + length] = bytes(len(blob[start : start + length]))
            what = f"zeroed {length} bytes at {start}"
        else:
            position = int(rng.integers(0, max(tables - 4, 1)) // 4 * 4)
            value = int(rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, size, size - 4, 4]))
            blob[position : position + 4] = value.to_bytes(4, "little")
            what = f"{value:#x} written at {position}"
        yield what, bytes(blob)


@pytest.mark.parametrize("key", ["int8", "dynamic"])
def test_mutated_files_give_only_model_file_errors(
    digits_models, shape_models, tmp_path, monkeypatch, key
):
    """Seeded fuzzing: every damaged file is read or refused with ModelFileError, never a
    struct.error, IndexError, ValueError, TypeError or UnicodeDecodeError (nor a hang)."""
    from edgesmith.convert import analyze as analysis

    # What runs native code on the file (the compiler, LiteRT's analyzer) is not under test.
    monkeypatch.setattr(analysis, "run_edgetpu_compiler", lambda *_: {"available": False})
    monkeypatch.setattr(analysis, "_litert_gpu_warnings", lambda _path: ({}, None))
    source = digits_models.get(key) or shape_models[key]
    data = source.read_bytes()
    rng = np.random.default_rng(1032)
    path = tmp_path / "mutant.tflite"
    read = refused = 0
    for what, blob in _mutants(data, rng, 300):
        path.write_bytes(blob)
        for reader in (inspect_model, read_graph):
            try:
                reader(path)
            except ModelFileError as exc:
                assert str(path) in str(exc), (what, exc)
                refused += 1
            except Exception as exc:  # the finding this test pins down
                pytest.fail(f"{reader.__name__} on a file with {what}: {exc!r}")
            else:
                read += 1
        try:
            graph = read_graph(path)
        except ModelFileError:
            continue
        try:  # the analysis walks whatever a sound-looking file holds
            analysis.analyze_edgetpu(graph)
            analysis.analyze_gpu(graph)
        except Exception as exc:
            pytest.fail(f"analyze on a file with {what}: {exc!r}")
    assert refused > 100 and read > 20  # both outcomes were exercised
