"""Records that travel between stages. TF-free.

A :class:`ModelCard` describes one trained model in the store: what it is, what data
made it, and how well it did on its own test split.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any


@dataclass(frozen=True)
class ModelCard:
    """What the store knows about one trained model (written as ``card.json``).

    Example:
        >>> card = ModelCard(name="cnn-digits", family="cnn", task="image-classification",
        ...                  dataset="digits", accuracy=0.98)
        >>> ModelCard.from_dict(card.to_dict()) == card
        True
    """

    name: str
    family: str
    task: str
    dataset: str
    accuracy: float | None = None
    metric: dict[str, float] = field(default_factory=dict)
    split: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    epochs: int = 0
    params: int = 0
    input_shape: list[int] = field(default_factory=list)
    layout: str = ""  # image | sequence | tokens: how data samples are shaped for the model
    classes: list[str] = field(default_factory=list)
    train_seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    command: str = ""
    builder: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def library_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (missing ones are left out), plus Python's."""
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def command_line() -> str:
    """The command that is running, as a user would type it again."""
    import shlex

    argv = list(sys.argv)
    if argv and argv[0].endswith(("edgesmith", "__main__.py")):
        argv[0] = "edgesmith"
    return shlex.join(argv)


@dataclass(frozen=True)
class ResultRecord:
    """One variant (model x recipe x format x quant x backend) and what was measured on it.

    Every stage fills its own fields and passes the record on: ``convert`` fills the file,
    sizes and parity; ``bench`` fills backend, latency and memory; reports only render
    lists of these. A field a stage did not measure stays ``None``.

    Example:
        >>> rec = ResultRecord(model="cnn-digits", family="cnn", format="tflite", quant="int8")
        >>> rec.updated(backend="litert", accuracy=0.97).backend
        'litert'
        >>> ResultRecord.from_dict(rec.to_dict()) == rec
        True
    """

    model: str | None = None
    family: str | None = None
    task: str | None = None
    dataset: str | None = None
    split: str | None = None
    recipe: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    format: str | None = None
    quant: str | None = None
    backend: str | None = None
    threads: int | None = None
    file: str | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    params: int | None = None
    nonzero_params: int | None = None
    sparsity: float | None = None
    accuracy: float | None = None
    samples: int | None = None
    parity: dict[str, Any] | None = None
    latency_ms: dict[str, float] | None = None
    throughput_per_s: float | None = None
    peak_rss_mb: float | None = None
    fully_accelerated: bool | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def updated(self, **changes: Any) -> ResultRecord:
        """A copy with ``changes`` applied (records are immutable)."""
        return dataclasses.replace(self, **changes)
