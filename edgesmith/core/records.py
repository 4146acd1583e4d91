"""Records that travel between stages. TF-free.

A :class:`ModelCard` describes one trained model in the store: what it is, what data
made it, and how well it did on its own test split. A :class:`CompressionCard` is the
card of a ``compress`` output: the same fields plus what compression did and measured.
:func:`card_from_dict` reads either from a ``card.json``.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

_Card = TypeVar("_Card", bound="ModelCard")


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
    # A user's own model: the file it came from (path, sha256, format, Keras version),
    # its output kind and, for Keras 3, the rebuild check. Empty for a zoo model.
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def qat(self) -> bool:
        """Whether the model file holds a quantization-aware model: never for a trained one.

        :class:`CompressionCard` replaces this with the flag the recipe runner records; it
        is the one place anything decides that a model is quantization-aware.
        """
        return False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[_Card], data: dict[str, Any]) -> _Card:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class CompressionCard(ModelCard):
    """The card of a compressed model: the zoo card's fields plus what compression measured.

    ``qat`` says that ``model.keras`` holds the quantization-aware model (tfmot wrappers
    and learned ranges, written as HDF5: ``model_format``); ``steps`` holds one record
    per recipe step and ``parent`` the card of the model compression started from. When
    that model was a Keras 3 model, ``keras3_file`` names the Keras 3 copy of the result
    in the same folder, or ``keras3_note`` says why there is none.

    Example:
        >>> card = CompressionCard(name="cnn-digits-prune", family="cnn", task="t",
        ...                        dataset="digits", sparsity=0.8)
        >>> CompressionCard.from_dict(card.to_dict()) == card
        True
        >>> card_from_dict(card.to_dict()).qat, card_from_dict({**card.to_dict(), "qat": True}).qat
        (False, True)
    """

    recipe: str = ""
    qat: bool = False  # a recorded field here; ModelCard.qat is always False
    sparsity: float | None = None
    nonzero_params: int | None = None
    kernel_params: int | None = None
    unique_weights_max: int | None = None
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    model_format: str = "keras"
    steps: list[dict[str, Any]] = field(default_factory=list)
    parent: dict[str, Any] = field(default_factory=dict)
    # A compressed Keras 3 model: the Keras 3 twin of the result in the folder (file name),
    # or why there is none (a QAT result, a layer with no Keras 3 form). Both "" otherwise.
    keras3_file: str = ""
    keras3_note: str = ""


def card_from_dict(data: dict[str, Any]) -> ModelCard:
    """The card in a ``card.json``: a :class:`CompressionCard` when ``compress`` wrote it.

    A compression card always records its recipe; a zoo card never has that key.
    """
    return CompressionCard.from_dict(data) if "recipe" in data else ModelCard.from_dict(data)


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
    # The 95% Wilson score interval of ``accuracy`` over ``samples`` ([low, high]); kept in
    # step with them by the record itself (see __post_init__), None when either is missing.
    accuracy_ci: list[float] | None = None
    # What ``accuracy`` counts: "top-1 accuracy", or a binary threshold of one score.
    metric: str | None = None
    samples: int | None = None
    # Which eval samples ``accuracy`` got right, in eval-set order: one bit per sample
    # (:func:`pack_outcomes`). Paired tests between variants scored on the same samples
    # (McNemar, in the report) need it; None where no eval set was scored.
    correct: str | None = None
    parity: dict[str, Any] | None = None
    latency_ms: dict[str, float] | None = None
    throughput_per_s: float | None = None
    peak_rss_mb: float | None = None
    fully_accelerated: bool | None = None
    # How much of the file each accelerator runs, per target ("edgetpu", "gpu"): {full,
    # source ("measured": a bench on the accelerator; "offline": the analysis of the file),
    # mapped_ops, ops, macs_share, first_fallback {index, op, reason}}; a value the source
    # cannot tell is None. Empty: neither measured nor analysed (and records written before
    # the field existed). The report's Edge TPU / GPU columns render it.
    compatibility: dict[str, dict[str, Any]] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    # Where it was measured: {name, ssh, board, cpu, cores, memory_mb, os, python,
    # edgesmith}; name "local" for this machine, None for records no bench has touched.
    device: dict[str, Any] | None = None
    # bench --profile: per op in execution order {index, op, dtypes, delegate, ms, share,
    # measured_ms}, per op type {op, delegate, ms, share, count}, and how the profiler's
    # times were put on the unprofiled latency's scale; None: not profiled (notes say why).
    op_profile: list[dict[str, Any]] | None = None
    op_profile_by_type: list[dict[str, Any]] | None = None
    op_profile_calibration: dict[str, Any] | None = None
    # bench with a reference file (the float32 baseline) timed in alternating blocks in the
    # same process and window: {reference (file name), reference_latency_ms {p50, p10, p90},
    # speedup (reference p50 / this p50), runs, block_runs}. None: measured alone.
    paired: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def __post_init__(self) -> None:
        # The interval is a function of accuracy and samples: computed here, so a record
        # whose accuracy a later stage replaces (``updated``) never keeps a stale one.
        ci = None
        if self.accuracy is not None and self.samples and self.accuracy == self.accuracy:
            hits = round(self.accuracy * self.samples)
            ci = [round(x, 6) for x in wilson_interval(hits, self.samples)]
        object.__setattr__(self, "accuracy_ci", ci)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def updated(self, **changes: Any) -> ResultRecord:
        """A copy with ``changes`` applied (records are immutable)."""
        return dataclasses.replace(self, **changes)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: ``successes`` of ``trials``.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or 100%,
    which matters for the few hundred test samples of an edge model. Standard library only
    (the core and the runtime go on boards without SciPy).

    Example:
        >>> [round(x, 4) for x in wilson_interval(264, 270)]
        [0.9524, 0.9898]
    """
    from statistics import NormalDist

    if trials <= 0:
        raise ValueError(f"trials={trials}: expected 1 or more")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def pack_outcomes(hits: Any) -> str:
    """Per-sample right/wrong as compact text: bits packed 8 to a byte, then base64.

    Example:
        >>> pack_outcomes([True, False, True])
        'oA=='
        >>> unpack_outcomes("oA==", 3).tolist()
        [True, False, True]
    """
    import base64

    import numpy as np

    bits = np.packbits(np.asarray(hits, dtype=bool).reshape(-1))
    return base64.b64encode(bits.tobytes()).decode("ascii")


def unpack_outcomes(text: str, samples: int) -> Any:
    """The boolean array :func:`pack_outcomes` packed (``samples`` long)."""
    import base64

    import numpy as np

    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    if len(bits) < samples:
        raise ValueError(f"{len(bits)} packed outcomes for {samples} samples")
    return bits[:samples].astype(bool)
