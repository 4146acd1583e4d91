"""Devices: benchmark on the user's own boards (a Raspberry Pi, a Coral board) over SSH.

A device is ``local`` (this machine) or an SSH destination with the Python that runs the
edgesmith base install there (no TensorFlow). The host checks the device
(:mod:`~edgesmith.devices.probe`), copies files into a content-addressed work folder on it
and runs ``edgesmith bench --json -`` there (:mod:`~edgesmith.devices.remote_bench`),
through the system OpenSSH client (:mod:`~edgesmith.devices.ssh`). Records come back with
``device`` set, and everything downstream treats them as local ones.

Example:
    >>> from edgesmith.devices import bench_on, parse_device
    >>> records = bench_on(parse_device("ssh://pi@raspberrypi.local"), "cnn.tflite",
    ...                    ["litert"], eval_set="test.npz")  # doctest: +SKIP
    >>> records[0].device["name"]  # doctest: +SKIP
    'raspberrypi.local'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from edgesmith.core.records import ResultRecord
from edgesmith.devices.device_spec import LOCAL, DeviceSpec, device_label, parse_device

__all__ = ["LOCAL", "DeviceSpec", "bench_on", "device_label", "local_description", "parse_device"]


def local_description() -> dict[str, Any]:
    """This machine as a record's ``device`` (``name`` is ``local``)."""
    from edgesmith.devices.probe import local_description as describe_here

    return describe_here()


def bench_on(
    spec: DeviceSpec,
    path: str | os.PathLike[str],
    backends: Sequence[str] = ("auto",),
    **kwargs: Any,
) -> list[ResultRecord]:
    """Benchmark ``path`` on ``spec`` (``bench_file``'s arguments); records carry ``device``."""
    if spec.is_local:
        from edgesmith.runtime.bench import bench_file

        kwargs.pop("install", None)
        device = local_description()
        return [r.updated(device=device) for r in bench_file(path, backends, **kwargs)]
    from edgesmith.devices.remote_bench import RemoteDevice

    return RemoteDevice(spec).bench(path, backends, **kwargs)
