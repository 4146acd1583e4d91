"""The report puts devices side by side: a row per variant and device, speedups per device."""

from __future__ import annotations

import pytest

from edgesmith.core.errors import ConfigError
from edgesmith.core.records import ResultRecord
from edgesmith.devices.device_spec import parse_device
from edgesmith.devices.remote_bench import bench_flags, parse_records
from edgesmith.report import group_variants, model_table, records_csv


def _record(quant: str, device: str, p50: float, size: int) -> ResultRecord:
    return ResultRecord(
        model="m", family="cnn", recipe="baseline", format="tflite", quant=quant,
        backend="litert", size_bytes=size, accuracy=0.9, latency_ms={"p50": p50},
        device={"name": device},
    )  # fmt: skip


def test_each_device_has_its_rows_and_its_own_speedups():
    records = [
        _record("none", "local", 1.0, 400),
        _record("int8", "local", 0.5, 100),
        _record("none", "pi4", 10.0, 400),
        _record("int8", "pi4", 4.0, 100),
    ]
    columns, rows = model_table(group_variants(records)["m"], ["litert"])
    assert columns[:2] == ["variant", "device"]
    speedup = {(row[0].split()[3], row[1]): row[columns.index("litert speedup")] for row in rows}
    assert speedup == {
        ("none", "local"): "1.00x",
        ("int8", "local"): "2.00x",
        ("none", "pi4"): "1.00x",
        ("int8", "pi4"): "2.50x",
    }
    assert "pi4" in records_csv(records).splitlines()[3]
    # One device only: the table has no device column.
    columns, _ = model_table(group_variants(records[:2])["m"], ["litert"])
    assert "device" not in columns


def test_destinations_and_bench_options():
    spec = parse_device("ssh://pi@[fe80::1]:2200")
    assert (spec.user, spec.host, spec.port, spec.destination) == (
        "pi",
        "fe80::1",
        2200,
        "pi@fe80::1",
    )
    for bad in ("pi@", "ssh://pi@host:0", "pi@host/x y", ""):
        with pytest.raises(ConfigError):
            parse_device(bad)
    flags = bench_flags(["litert"], {"state": ["h"], "delegate_options": {"device": "usb:0"}})
    assert flags == ["--backend", "litert", "--state", "h", "--delegate-option", "device=usb:0"]
    with pytest.raises(ConfigError):
        bench_flags(["litert"], {"something_new": True})
    assert parse_records(b"not json") is None and parse_records(b"[1]") is None
    assert parse_records(b'{"backend": "litert"}')[0].backend == "litert"
