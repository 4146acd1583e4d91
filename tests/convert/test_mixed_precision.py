"""``--quant auto``: candidates, the selection rule, selective int8, the record's strategy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesmith.convert.config import ConversionConfig
from edgesmith.convert.quant_auto import select_candidate
from edgesmith.convert.quant_candidates import (
    Candidate,
    precision_summary,
    reference_ops_from_profile,
    selective_candidates,
    slow_node_candidates,
    widened_float_ops,
)
from edgesmith.convert.quant_nodes import (
    AlignedNode,
    AlignmentError,
    align_nodes,
    kernel_kind,
    slow_nodes,
)
from edgesmith.core.errors import ConfigError, EdgesmithError, ModelFileError
from edgesmith.plan import Target

FAST = {"calibration_samples": 64, "eval_samples": 96}
LAYER_NORM_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SUB")


def _cand(name, quant, size, drop, ms, error=None):
    return Candidate(name, quant, "", content=b"x" * size, drop_pt=drop, latency_ms=ms, error=error)


def test_selection_takes_the_fastest_8bit_file_within_the_budget():
    cands = [
        _cand("float32", "none", 400, 0.0, 1.0),  # fastest, but 32-bit weights
        _cand("int8", "int8", 100, 0.1, 2.0),
        _cand("dynamic", "dynamic", 104, 0.4, 1.2),
        _cand("sel", "int8", 102, 0.9, 1.1),  # over the budget
        _cand("broken", "int8", 90, None, None, error="did not convert"),
    ]
    chosen, reason = select_candidate(cands, 0.5, "latency")
    assert chosen.name == "dynamic"
    assert "dynamic" in reason and "sel" not in reason.split("(")[-1]
    assert select_candidate(cands, 0.5, "size")[0].name == "int8"
    # A larger budget admits the selective file, which is then the fastest 8-bit one.
    assert select_candidate(cands, 1.0, "latency")[0].name == "sel"


def test_selection_falls_back_to_float_then_to_the_most_accurate():
    cands = [
        _cand("float32", "none", 400, 0.0, 1.0),
        _cand("fp16", "fp16", 200, 0.0, 0.9),
        _cand("int8", "int8", 100, 3.0, 2.0),
    ]
    chosen, reason = select_candidate(cands, 0.5, "latency")
    assert chosen.name == "fp16" and "no 8-bit file" in reason
    cands = [_cand("float32", "none", 400, 1.0, 1.0), _cand("int8", "int8", 100, 3.0, 0.5)]
    assert select_candidate(cands, 0.5, "latency")[0].name == "float32"
    with pytest.raises(EdgesmithError, match="no candidate"):
        select_candidate([_cand("int8", "int8", 100, None, None, error="x")], 0.5, "latency")


def test_profile_proposes_the_ops_that_ran_outside_the_kernel_library():
    profile = [
        {"op": "Fully Connected (NC, QS8, QC8W) GEMM", "delegate": "XNNPACK", "ms": 0.01},
        {"op": "SQUARED_DIFFERENCE", "delegate": None, "ms": 0.005},
        {"op": "SOFTMAX", "delegate": None, "ms": 0.001},
        {"op": "SQUARED_DIFFERENCE", "delegate": None, "ms": 0.004},
        {"op": "DEQUANTIZE", "delegate": None, "ms": 0.002},
    ]
    found = reference_ops_from_profile(profile)
    assert list(found) == ["SQUARED_DIFFERENCE", "SOFTMAX"]
    assert found["SQUARED_DIFFERENCE"] == pytest.approx(0.009)
    graph = ["FULLY_CONNECTED", "MEAN", "SQUARED_DIFFERENCE", "RESHAPE", "SOFTMAX", "ADD"]
    wide = widened_float_ops(graph, list(found))
    assert set(wide) == {"SQUARED_DIFFERENCE", "SOFTMAX", "MEAN", "ADD"}
    cands = selective_candidates(list(found), graph)
    assert [c.float_ops for c in cands] == [tuple(found), wide]
    assert all(c.quant == "int8" and c.weight_bits == 8 for c in cands)
    assert selective_candidates([], graph) == []


def test_auto_config_is_validated_and_leaves_other_records_unchanged():
    auto = ConversionConfig(quant="auto", budget=1.0, objective="size")
    assert ConversionConfig.from_dict(json.loads(json.dumps(auto.to_dict()))) == auto
    assert auto.needs_calibration and auto.tolerance.max_abs_diff is None
    plain = ConversionConfig(quant="int8").to_dict()
    assert not {"budget", "objective", "backend"} & set(plain)
    for bad, message in [
        ({"budget": -1.0}, "--budget"),
        ({"objective": "energy"}, "--objective"),
        ({"backend": "onnxruntime"}, "runs .tflite"),
        ({"sparse": True}, "--sparse"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ConversionConfig(quant="auto", **bad)
    assert str(Target.parse("tflite:auto")) == "tflite:auto"
    assert str(Target.parse("onnx:auto")) == "onnx:auto"


@pytest.fixture(scope="module")
def auto_result(tiny_models, tmp_path_factory):
    from edgesmith.convert.converter import convert_model

    out = tmp_path_factory.mktemp("auto") / "transformer-auto.tflite"
    config = ConversionConfig(quant="auto", **FAST)
    return out, convert_model(tiny_models["transformer"], out=out, config=config)


def test_auto_writes_the_fastest_measured_file_within_the_budget(auto_result):
    from edgesmith.convert.tflite import int8_report

    out, result = auto_result
    record, strategy = result.record, result.extra["strategy"]
    auto = strategy["auto"]
    assert record.quant == "auto" and record.parity["ok"]
    report = int8_report(out.read_bytes())  # a valid flatbuffer the reader accepts
    assert "FULLY_CONNECTED" in report["ops"]
    rows = {row["name"]: row for row in auto["candidates"]}
    assert {"float32", "int8", "dynamic", "fp16", "int8-weights"} <= set(rows)
    assert rows["int8-weights"]["weight_bits"] == 8 and rows["int8-weights"]["quant"] == "none"
    measured = [r for r in rows.values() if "error" not in r]
    for row in measured:
        assert row["latency_ms"] > 0 and 0 <= row["accuracy"] <= 1 and row["size_bytes"] > 0
    chosen = rows[auto["chosen"]]
    assert chosen["size_bytes"] == out.stat().st_size
    assert chosen["drop_pt"] <= auto["budget_pt"]
    # The selection by the record's own numbers: the fastest 8-bit file within the budget.
    pool = [r for r in measured if r["weight_bits"] == 8 and r["drop_pt"] <= auto["budget_pt"]]
    assert pool and chosen["weight_bits"] == 8
    assert chosen["latency_ms"] == min(r["latency_ms"] for r in pool)
    assert chosen["size_bytes"] < rows["float32"]["size_bytes"]
    assert any(note.startswith("quant auto: chose") for note in record.notes)
    assert strategy["precision"]  # what computes in which precision in the chosen file
    assert auto["int8_profile"]["source"]
    # The node-by-node comparison is in the record: its numbers, or why there are none.
    slow = auto["slow_nodes"]
    assert "rule" in slow and ("nodes" in slow or slow["skipped"])
    for node in slow.get("nodes", []):
        assert node["float"] == (node["position"] in slow["float_nodes"])
    if "int8-float-slow-nodes" in rows:
        kept = rows["int8-float-slow-nodes"]["float_nodes"]
        assert [n["position"] for n in kept] == slow["float_nodes"]


def test_selective_int8_keeps_layer_norm_float_and_weights_int8(tiny):
    from edgesmith.convert.tflite import to_tflite

    t = tiny["transformer"]
    float_ops = (*LAYER_NORM_OPS, "SOFTMAX", "BATCH_MATMUL")
    config = ConversionConfig(quant="int8", calibration_samples=32)
    result = to_tflite(
        t.model, "transformer", config, x_calibration=t.data.x_train, float_ops=float_ops
    )
    summary = precision_summary(result.content)
    assert "int8" in summary["weights"]["FULLY_CONNECTED"]
    assert "float32" not in summary["weights"]["FULLY_CONNECTED"]
    assert "int8" in summary["compute"]["FULLY_CONNECTED"]
    for op in LAYER_NORM_OPS:
        assert summary["compute"][op] == ["float32"], op
    assert result.strategy["float_ops"] == list(float_ops)
    full = precision_summary(
        to_tflite(t.model, "transformer", config, x_calibration=t.data.x_train).content
    )
    assert full["compute"]["MEAN"] == ["int8"]  # what the selective file changed
    with pytest.raises(ConfigError, match="float_ops"):
        to_tflite(t.model, "transformer", ConversionConfig(quant="dynamic"), float_ops=("MEAN",))


# --- single nodes in float32: two profiles aligned node by node ---------------------------


def _node(position, int8_ms, float_ms, op="CONV_2D"):
    return AlignedNode(position, op, position, "int8 kernel", "f32 kernel", int8_ms, float_ms)


def test_slow_nodes_need_a_clear_ratio_and_a_visible_share_of_the_latency():
    nodes = [
        _node(0, 0.096, 0.014),  # the 1-channel first conv: 7x slower, most of the time
        _node(1, 0.0055, 0.0040),  # 1.4x but 0.0015 ms of 0.17: the timers' noise
        _node(2, 0.030, 0.025),  # 1.2x: not clearly slower
        _node(3, 0.020, 0.0),  # float32's timer read zero: infinitely slower, and visible
    ]
    assert [n.position for n in slow_nodes(nodes, 0.17)] == [0, 3]
    assert [n.position for n in slow_nodes(nodes, 0.17, share=0.005)] == [0, 1, 3]
    assert [n.position for n in slow_nodes(nodes, 0.17, ratio=1.1, share=0.0)] == [0, 1, 2, 3]
    assert slow_nodes(nodes, 10.0) == []  # no node is 5% of a 10 ms model
    assert nodes[0].to_dict()["int8_over_float"] == pytest.approx(6.857, abs=1e-3)
    assert nodes[3].ratio is None


def test_slow_node_candidates_keep_the_nodes_and_say_why():
    nodes = [_node(0, 0.096, 0.014)]
    assert slow_node_candidates([], ["SOFTMAX"]) == []
    only, combined = slow_node_candidates(nodes, ["SOFTMAX", "SOFTMAX"])
    assert only.name == "int8-float-slow-nodes" and only.float_ops == ()
    assert combined.float_ops == ("SOFTMAX",) and combined.float_nodes == only.float_nodes
    assert only.quant == "int8" and only.weight_bits == 8
    assert "0.0960 ms int8 vs 0.0140 ms float32" in only.why
    row = only.summary()
    assert row["float_nodes"][0]["int8_ms"] == 0.096 and row["float_nodes"][0]["position"] == 0
    assert "float_nodes" not in Candidate("int8", "int8", "").summary()
    assert [c.name for c in slow_node_candidates(nodes)] == ["int8-float-slow-nodes"]


def test_kernel_kinds_of_xnnpack_operators():
    assert kernel_kind("Convolution (NHWC, QC8) IGEMM") == "convolution"
    assert kernel_kind("Convolution (NHWC, QC8) DWConv") == "depthwise"
    assert kernel_kind("Fully Connected (NC, QS8, QC8W) GEMM") == "fully-connected"
    assert kernel_kind("Deconvolution (NHWC, F32)") == "deconvolution"
    assert kernel_kind("Mean (ND) Reduce") is None and kernel_kind("SOFTMAX") is None


@pytest.fixture(scope="module")
def ds_files(tmp_path_factory):
    """A small untrained DS-CNN (1-channel conv, depthwise, 1x1 conv, dense) in float32 and
    int8, each with its per-op profile on litert: what the alignment reads."""
    import numpy as np

    from edgesmith.convert.tflite import to_tflite
    from edgesmith.runtime.profile_ops import profile_file
    from edgesmith.runtime.tflite_flatbuffer import parse_flatbuffer
    from edgesmith.zoo.tfkeras import keras, set_seed

    k = keras()
    set_seed(0)
    inputs = k.Input((20, 8, 1))
    x = k.layers.Conv2D(8, (4, 3), strides=2, padding="same", activation="relu")(inputs)
    x = k.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = k.layers.Conv2D(8, 1, activation="relu")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(4, activation="softmax")(x), name="tiny_ds")
    x_cal = np.random.default_rng(0).normal(size=(32, 20, 8, 1)).astype(np.float32)
    folder = tmp_path_factory.mktemp("nodes")
    files = {"model": model, "x": x_cal}
    for quant in ("none", "int8"):
        config = ConversionConfig(quant=quant, calibration_samples=32)
        content = to_tflite(model, "cnn", config, x_calibration=x_cal).content
        path = folder / f"{quant}.tflite"
        path.write_bytes(content)
        # The pinned LiteRT wheel has the profiler: its absence is a failure, not a skip.
        profile = profile_file(path, "litert", threads=1, runs=20, warmup=2)
        files[quant] = (parse_flatbuffer(content, path).main.ops, profile.ops)
    return files


def test_alignment_pairs_the_weight_ops_of_real_profiles(ds_files):
    f_ops, f_prof = ds_files["none"]
    q_ops, q_prof = ds_files["int8"]
    nodes = align_nodes(f_prof, q_prof, f_ops, q_ops)
    assert [n.op for n in nodes] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    assert [n.position for n in nodes] == [0, 1, 2, 3]
    for node in nodes:  # each points at its own op of the int8 file, kinds agreeing
        assert q_ops[node.op_index].name == node.op
        assert kernel_kind(node.int8_kernel) == kernel_kind(node.float_kernel)
        assert "F32" in node.float_kernel and "F32" not in node.int8_kernel
        assert node.int8_ms >= 0 and node.float_ms >= 0
    assert kernel_kind(nodes[1].int8_kernel) == "depthwise"
    assert kernel_kind(nodes[2].int8_kernel) == "fully-connected"  # the 1x1 conv's GEMM


def test_alignment_refuses_to_guess(ds_files):
    f_ops, f_prof = ds_files["none"]
    q_ops, q_prof = ds_files["int8"]
    weight = [i for i, e in enumerate(q_prof) if kernel_kind(str(e["op"]))]
    missing = [e for i, e in enumerate(q_prof) if i != weight[0]]
    with pytest.raises(AlignmentError, match="int8 profile has 3 weight-op entries for 4"):
        align_nodes(f_prof, missing, f_ops, q_ops)
    swapped = list(q_prof)  # the depthwise entry where the first conv's should be
    swapped[weight[0]], swapped[weight[1]] = swapped[weight[1]], swapped[weight[0]]
    with pytest.raises(AlignmentError, match="weight op 0 is CONV_2D"):
        align_nodes(f_prof, swapped, f_ops, q_ops)
    with pytest.raises(AlignmentError, match="weight ops differ"):
        align_nodes(f_prof, q_prof, f_ops, q_ops[:-2])
    whole = [{"op": "TfLiteXNNPackDelegate", "delegate": "TfLiteXNNPackDelegate", "ms": 0.1}]
    with pytest.raises(AlignmentError, match="as a whole"):
        align_nodes(f_prof, whole, f_ops, q_ops)


def test_float_nodes_keep_exactly_those_ops_float(ds_files, tmp_path):
    import numpy as np

    from edgesmith.convert.tflite import to_tflite
    from edgesmith.runtime.tflite_flatbuffer import parse_flatbuffer

    model, x = ds_files["model"], ds_files["x"]
    config = ConversionConfig(quant="int8", calibration_samples=32)
    result = to_tflite(model, "cnn", config, x_calibration=x, float_nodes=[(0, "CONV_2D")])
    main = parse_flatbuffer(result.content, Path("m.tflite")).main
    computes = {
        op.index: main.tensors[op.outputs[0]].dtype
        for op in main.ops
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    }
    assert list(computes.values()) == ["float32", "int8", "int8", "int8"]
    assert main.tensors[main.inputs[0]].dtype == "int8"  # full int8 at the boundaries
    (kept,) = result.strategy["float_nodes"]
    assert kept["position"] == 0 and kept["op"] == "CONV_2D" and kept["tensor"]
    # Its weights are stored in float16 and unpacked by a DEQUANTIZE into the float32 filter.
    assert kept["weights"] == "float16"
    conv = next(op for op in main.ops if op.name == "CONV_2D")
    (unpack,) = [op for op in main.ops if op.outputs == [conv.inputs[1]]]
    assert unpack.name == "DEQUANTIZE" and main.tensors[unpack.inputs[0]].dtype == "float16"
    assert main.tensors[unpack.inputs[0]].constant and not main.tensors[conv.inputs[1]].constant
    # The file runs and computes what the Keras model does, to 8-bit rounding.
    from edgesmith.convert.parity import predict_file

    path = tmp_path / "slow-nodes.tflite"
    path.write_bytes(result.content)
    reference = model.predict(x[:8], verbose=0)
    assert np.max(np.abs(predict_file(path, x[:8]) - reference)) < 0.1
    with pytest.raises(ModelFileError, match="float node 1 should be a CONV_2D"):
        to_tflite(model, "cnn", config, x_calibration=x, float_nodes=[(1, "CONV_2D")])
    with pytest.raises(ConfigError, match="float_nodes"):
        to_tflite(model, "cnn", ConversionConfig(quant="fp16"), float_nodes=[(0, "CONV_2D")])


def test_files_as_fast_as_timing_can_tell_are_split_by_size():
    def cand(name, size, ms):
        return Candidate(name, "int8", "", content=b"x" * size, drop_pt=0.0, latency_ms=ms)

    fast_big, fast_small = cand("int8", 300, 1.000), cand("dynamic", 200, 1.02)
    chosen, why = select_candidate([fast_big, fast_small, cand("x", 100, 2.0)], 0.5, "latency")
    assert chosen is fast_small and "smallest of the fastest" in why
    clearly_faster = cand("int8", 300, 0.9)
    assert select_candidate([clearly_faster, fast_small], 0.5, "latency")[0] is clearly_faster


def _unpacks(content):
    """{filter tensor: (stored dtype, scales)} of the DEQUANTIZE ops that unpack constants."""
    from ai_edge_litert import schema_py_generated as schema

    from edgesmith.convert.quant_nodes import _builtin_name

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    sub = model.subgraphs[0]
    out = {}
    for op in sub.operators:
        if _builtin_name(schema, model.operatorCodes[op.opcodeIndex]) != "DEQUANTIZE":
            continue
        source = sub.tensors[op.inputs[0]]
        scales = None if source.quantization is None else source.quantization.scale
        dims = None if source.quantization is None else source.quantization.quantizedDimension
        out[int(op.outputs[0])] = (int(source.type), scales, dims, list(source.shape))
    return out


def test_int8_weights_unpack_per_channel_and_compute_as_float32(ds_files, tmp_path):
    import numpy as np

    from edgesmith.convert.parity import predict_file
    from edgesmith.convert.quant_nodes import pack_node_weights
    from edgesmith.convert.tflite import to_tflite

    model, x = ds_files["model"], ds_files["x"]
    content = to_tflite(model, "cnn", ConversionConfig(quant="none")).content
    packed, kept = pack_node_weights(content, bits=8)
    assert kept == []
    unpacks = _unpacks(packed)
    assert len(unpacks) == 4  # conv, depthwise, 1x1 conv, dense: every filter
    for dtype, scales, axis, shape in unpacks.values():
        assert dtype == 9  # int8
        # One scale per output channel: the last axis of the depthwise filter, else the first.
        assert len(scales) == shape[axis] and (axis == 0 or axis == len(shape) - 1)
    path = tmp_path / "w8.tflite"
    path.write_bytes(packed)
    float_path = tmp_path / "f32.tflite"
    float_path.write_bytes(content)
    got, want = predict_file(path, x[:16]), predict_file(float_path, x[:16])
    assert np.max(np.abs(got - want)) < 0.02  # 8-bit weights, float32 arithmetic
    assert np.array_equal(got.argmax(1), want.argmax(1))
    half, _ = pack_node_weights(content, [1], bits=16)  # one node, float16: as before
    assert [d for d, *_ in _unpacks(half).values()] == [1]  # float16
    with pytest.raises(ValueError, match="bits=4"):
        pack_node_weights(content, bits=4)


def test_int8_weights_pack_an_embedding_table_by_row(tmp_path):
    import numpy as np

    from edgesmith.convert.parity import predict_file
    from edgesmith.convert.quant_candidates import weight_only_candidate
    from edgesmith.convert.tflite import to_tflite
    from edgesmith.zoo.tfkeras import keras, set_seed

    k = keras()
    set_seed(0)
    inputs = k.Input((12,), dtype="int32")
    x = k.layers.Embedding(500, 16)(inputs)
    x = k.layers.GlobalAveragePooling1D()(x)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax")(x))
    content = to_tflite(model, "transformer", ConversionConfig(quant="none")).content
    cand = weight_only_candidate(content)
    assert cand.error is None and cand.weight_bits == 8 and cand.quant == "none"
    tables = [u for u in _unpacks(cand.content).values() if u[3] == [500, 16]]
    assert len(tables) == 1 and tables[0][0] == 9 and len(tables[0][1]) == 500
    assert len(cand.content) < 0.5 * len(content)  # a scale and a zero point per row too
    tokens = np.random.default_rng(0).integers(0, 500, size=(8, 12)).astype(np.int32)
    path, float_path = tmp_path / "w8.tflite", tmp_path / "f32.tflite"
    path.write_bytes(cand.content)
    float_path.write_bytes(content)
    assert np.max(np.abs(predict_file(path, tokens) - predict_file(float_path, tokens))) < 0.02
