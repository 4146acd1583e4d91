"""What every runner shares: :class:`TensorSpec`, the :class:`Runner` base, (de)quantization.

A runner hides each library's API behind the same small surface:

* ``inputs`` / ``outputs``: :class:`TensorSpec` (name, shape it runs at, dtype, quantization);
* ``run(feeds)``: raw tensors in the model's own dtypes in, raw tensors out;
* ``predict(x)``: float samples in (batch axis first), the first output as float32 out, with
  inputs quantized (int8, uint8, int16 via scale and zero point; float16 by a cast) and the
  output dequantized, at the model's batch size (1 for fixed-batch-1 or dynamic models);
* ``set_inputs`` / ``invoke`` / ``get_outputs``: the pieces a benchmark times separately.

Each backend module (:mod:`~edgesmith.runtime.litert_interpreter`,
:mod:`~edgesmith.runtime.litert_compiled`, :mod:`~edgesmith.runtime.onnx_runner`) subclasses
:class:`Runner`; :func:`edgesmith.runtime.runners.open_runner` picks one. TF-free.

Example:
    >>> spec = TensorSpec("x", (1, 3), "int8", 0.5, -1)
    >>> dequantize(quantize(np.array([[0.0, 1.0, 9.0]]), spec), spec).tolist()
    [[0.0, 1.0, 9.0]]
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import BackendUnavailableError, ConfigError, ModelFileError
from edgesmith.core.formatting import format_shape
from edgesmith.runtime.backends import INSTALL_HELP, PACKAGE_NAMES
from edgesmith.runtime.modelfile import ModelInfo, TensorInfo

QUANTIZED_DTYPES = ("int8", "uint8", "int16")
# Inputs that carry recurrent state between calls: fed zeros, never data or random values.
STATE_NAME = re.compile(
    r"(?:^|[_\W])(states?|hidden|cell|h0|c0|past|cache|memory)(?:$|[_\W\d])", re.I
)


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the runner runs it (``shape`` has no dynamic dimension).

    Example:
        >>> spec = TensorSpec("x", (1, 4), "int8", 0.5, -1)
        >>> spec.quantized
        True
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype in QUANTIZED_DTYPES


def is_state_input(name: str) -> bool:
    """True for an input that, by its name, holds recurrent state (fed zeros)."""
    return bool(STATE_NAME.search(name))


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float samples in the dtype ``spec`` takes: q = round(x / scale) + zero_point, clipped.

    Example:
        >>> quantize(np.array([0.0, 1.0, 9.0]), TensorSpec("x", (3,), "int8", 0.5, -1)).tolist()
        [-1, 1, 17]
    """
    dtype = np.dtype(spec.dtype)
    if spec.quantized:
        info = np.iinfo(dtype)
        q = np.round(np.asarray(x, np.float64) / spec.scale) + spec.zero_point
        return np.clip(q, info.min, info.max).astype(dtype)
    return np.asarray(x).astype(dtype, copy=False)


def dequantize(y: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A raw output as float32: (q - zero_point) * scale for quantized outputs, else a cast."""
    if spec.quantized:
        return (
            (y.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)
        ).astype(np.float32)
    return y.astype(np.float32)


class Runner(abc.ABC):
    """A model opened on one backend. Use :func:`open_runner` to get one.

    ``init_ms`` is the time the backend took to load and prepare the model (interpreter or
    session creation, delegate application, tensor allocation), not counting the import of
    the library. ``details`` says what ran it (library, version, delegate, providers, device)
    and ``notes`` anything a reader of the numbers should know.
    """

    backend: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    fully_accelerated: bool | None

    def __init__(self, path: Path, info: ModelInfo, backend: str, threads: int) -> None:
        self.path = path
        self.info = info
        self.backend = backend
        self.threads = threads
        self.inputs = []
        self.outputs = []
        self.fully_accelerated = None
        self.init_ms = 0.0
        self.details: dict[str, Any] = {}
        self.notes: list[str] = []
        # A model converted from a stateless Keras model still keeps its fused LSTM state in
        # variable tensors, carried from one call into the next; run() and predict() reset it
        # so that every call sees fresh samples, unless the caller streams (keep_state=True).
        self.keep_state = False

    # -- what each backend implements -----------------------------------------------------
    @abc.abstractmethod
    def set_inputs(self, feeds: Sequence[np.ndarray]) -> None:
        """Copy ``feeds`` (already in the model's shapes and dtypes) into the input tensors."""

    @abc.abstractmethod
    def invoke(self) -> None:
        """Run the model once on the inputs already set."""

    def timed_call(self) -> Any:
        """The callable a benchmark times: the library's native run, nothing of edgesmith.

        Use it only for the timed loop and drop it afterwards (the Interpreter refuses other
        calls while it is held).
        """
        return self.invoke

    @abc.abstractmethod
    def get_outputs(self) -> list[np.ndarray]:
        """Copies of every output tensor of the last run."""

    @abc.abstractmethod
    def resize(self, shapes: Mapping[str, Sequence[int]]) -> None:
        """Run dynamic inputs at new shapes (by input name); updates ``inputs`` and ``outputs``."""

    def close(self) -> None:  # noqa: B027  (an optional hook: nothing to release by default)
        """Release the model (the runner cannot be used afterwards)."""

    def reset_state(self) -> None:  # noqa: B027  (an optional hook: most models keep no state)
        """Zero the state a model keeps between calls in variable tensors (a fused LSTM's)."""

    # -- shared ---------------------------------------------------------------------------
    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend} {self.path.name} threads={self.threads}>"

    @property
    def batch_size(self) -> int:
        """The batch the model runs at: the leading dimension of its first input."""
        shape = self.inputs[0].shape if self.inputs else ()
        return int(shape[0]) if shape else 1

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run on raw tensors (one per input, in the model's dtypes); return raw outputs.

        Example:
            >>> outs = runner.run([np.zeros(s.shape, s.dtype) for s in runner.inputs])  # doctest: +SKIP
        """
        self.set_inputs(self.check_feeds(feeds))
        if not self.keep_state:
            self.reset_state()
        self.invoke()
        return self.get_outputs()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float samples (batch axis first) in, the first output as float32 out.

        Quantizes the samples for int8 / uint8 / int16 inputs with their scale and zero point
        (float16 inputs get a cast), runs at the model's batch size (padding the last batch)
        and dequantizes the output. Other inputs of the model (state) get zeros.

        Example:
            >>> probs = runner.predict(np.random.rand(10, 8, 8, 1).astype(np.float32))  # doctest: +SKIP
            >>> probs.shape, probs.dtype  # doctest: +SKIP
            ((10, 10), dtype('float32'))
        """
        return self.predict_inputs([np.asarray(x)])

    def predict_inputs(self, xs: Sequence[np.ndarray | None]) -> np.ndarray:
        """Like :meth:`predict` for several inputs: ``xs[i]`` feeds input i (None: zeros)."""
        xs = list(xs) + [None] * (len(self.inputs) - len(xs))
        if len(xs) > len(self.inputs):
            raise ConfigError(
                f"{len(xs)} input arrays for {self.path.name}",
                expected=f"at most {len(self.inputs)} (the model's inputs)",
            )
        given = [x for x in xs if x is not None]
        if not given:
            raise ConfigError("predict() got no samples", expected="at least one input array")
        count = len(given[0])
        batch = self.batch_size
        feeds = [np.zeros(spec.shape, np.dtype(spec.dtype)) for spec in self.inputs]
        for i, (x, spec) in enumerate(zip(xs, self.inputs, strict=True)):
            if x is None:
                continue
            if len(x) != count:
                raise ConfigError(
                    f"input {spec.name!r} got {len(x)} samples", expected=f"{count} like the first"
                )
            if tuple(x.shape[1:]) != tuple(spec.shape[1:]):
                raise ConfigError(
                    f"samples of shape {tuple(x.shape[1:])} for input {spec.name!r} of "
                    f"{self.path.name}",
                    expected=f"samples of shape {tuple(spec.shape[1:])}",
                    fix="resize dynamic inputs first (runner.resize or --shape)",
                )
            xs[i] = quantize(x, spec)  # once for all samples, not per batch
        results = []
        for start in range(0, count, batch):
            n = min(batch, count - start)
            for i, x in enumerate(xs):
                if x is None:
                    continue
                feeds[i][:n] = x[start : start + n]
                feeds[i][n:] = 0  # padding of a last, partial batch; its outputs are dropped
            self.set_inputs(feeds)
            if not self.keep_state:
                self.reset_state()
            self.invoke()
            results.append(dequantize(self.get_outputs()[0][:n], self.outputs[0]))
        return np.concatenate(results) if results else np.zeros((0,), np.float32)

    def check_feeds(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``feeds`` checked against the inputs (count, shape) and cast to their dtypes.

        Float arrays for a quantized input are refused: they need :func:`quantize` first.
        """
        if len(feeds) != len(self.inputs):
            names = ", ".join(s.name for s in self.inputs)
            raise ConfigError(
                f"{len(feeds)} arrays for {self.path.name}",
                expected=f"{len(self.inputs)}, one per input ({names})",
            )
        checked = []
        for feed, spec in zip(feeds, self.inputs, strict=True):
            feed = np.asarray(feed)
            if tuple(feed.shape) != spec.shape:
                raise ConfigError(
                    f"an array of shape {tuple(feed.shape)} for input {spec.name!r}",
                    expected=f"shape {spec.shape}",
                    fix="resize dynamic inputs first (runner.resize or --shape)",
                )
            if feed.dtype != np.dtype(spec.dtype):
                if spec.quantized and feed.dtype.kind == "f":
                    raise ConfigError(
                        f"float samples for the quantized input {spec.name!r}",
                        expected=f"{spec.dtype} (scale {spec.scale:g}, zero point "
                        f"{spec.zero_point}) as run() takes raw tensors",
                        fix="use runner.predict() for float samples, or quantize() them",
                    )
                feed = feed.astype(spec.dtype)
            checked.append(np.ascontiguousarray(feed))
        return checked


def resolve_shapes(
    infos: Sequence[TensorInfo], shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, tuple[int, ...]]:
    """The shape each input runs at: ``shapes[name]`` (or by index "0"), dynamic dims as 1.

    Example:
        >>> resolve_shapes([TensorInfo("x", (-1, -1, 10), "float32")], {"x": (1, 49, 10)})
        {'x': (1, 49, 10)}
        >>> resolve_shapes([TensorInfo("x", (-1, -1, 10), "float32")])
        {'x': (1, 1, 10)}
    """
    shapes = dict(shapes or {})
    resolved = {}
    for i, info in enumerate(infos):
        given = shapes.pop(info.name, None)
        if given is None:
            given = shapes.pop(str(i), None)
        if given is None and len(infos) == 1:
            given = shapes.pop("", None)  # --shape 1,49,10 for a single-input model
        if given is None:
            resolved[info.name] = tuple(d if d >= 0 else 1 for d in info.shape_signature)
            continue
        given = tuple(int(d) for d in given)
        signature = info.shape_signature
        fits = len(given) == len(signature) and all(
            s < 0 or s == g for s, g in zip(signature, given, strict=True)
        )
        if not fits or any(g < 1 for g in given):
            raise ConfigError(
                f"--shape {info.name}={','.join(map(str, given))}",
                expected=f"a shape that fits {format_shape(signature)} (-1 marks a dynamic dimension)",
            )
        resolved[info.name] = given
    if shapes:
        names = ", ".join(i.name for i in infos)
        raise ConfigError(
            f"--shape for unknown input(s) {', '.join(map(repr, shapes))}",
            expected=f"one of the model's inputs: {names} (or its index)",
        )
    return resolved


def guessed_inputs(
    infos: Sequence[TensorInfo], shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """The inputs with a dynamic dimension past the batch that no ``shapes`` entry gave:
    name -> (signature, the shape it runs at, each dynamic dimension as 1).

    Example:
        >>> guessed_inputs([TensorInfo("x", (-1, -1, 10), "float32")])
        {'x': ((-1, -1, 10), (1, 1, 10))}
        >>> guessed_inputs([TensorInfo("x", (-1, -1, 10), "float32")], {"x": (1, 49, 10)})
        {}
    """
    shapes = dict(shapes or {})
    guessed = {}
    for i, info in enumerate(infos):
        given = shapes.get(info.name, shapes.get(str(i)))
        if given is None and len(infos) == 1:
            given = shapes.get("")
        signature = tuple(info.shape_signature)
        # A dynamic batch alone is no guess: every model runs at batch 1.
        if given is None and any(d < 0 for d in signature[1:] or signature):
            guessed[info.name] = (signature, tuple(d if d >= 0 else 1 for d in signature))
    return guessed


def shape_hint(guessed: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]) -> tuple[str, str]:
    """What was guessed, and the ``--shape`` options that give it instead (for an error).

    Example:
        >>> shape_hint({"x": ((-1, -1, 10), (1, 1, 10))})[1]
        '--shape x=1,16,10 (16 stands for the size the model was built for)'
    """
    what = "; ".join(
        f"input {name!r} {format_shape(signature)} ran as {format_shape(shape)}"
        for name, (signature, shape) in guessed.items()
    )
    options = []
    for name, (signature, shape) in guessed.items():
        # The batch (first) dimension stays 1; other guessed ones get an example size.
        dims = [
            16 if s < 0 and (i > 0 or len(signature) == 1) else d
            for i, (s, d) in enumerate(zip(signature, shape, strict=True))
        ]
        options.append(f"--shape {name}={','.join(map(str, dims))}")
    return what, " ".join(options) + " (16 stands for the size the model was built for)"


def import_runtime(module: str, backend: str) -> Any:
    """Import a runtime, turning any failure (absent, or built for another NumPy) into one line."""
    try:
        if module == "ai_edge_litert":
            from ai_edge_litert import interpreter as loaded
        elif module == "tflite_runtime":
            from tflite_runtime import interpreter as loaded
        else:
            import onnxruntime as loaded
    except Exception as exc:  # ImportError, or AttributeError from a NumPy 1/2 ABI clash
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendUnavailableError(
            f"{backend}: {PACKAGE_NAMES[module]} cannot be imported ({first})",
            fix=INSTALL_HELP[module],
        ) from exc
    return loaded


def library_version(module: str) -> str | None:
    """The installed version of a runtime's package (None when pip does not know it)."""
    from importlib import metadata

    try:
        return metadata.version(PACKAGE_NAMES[module])
    except metadata.PackageNotFoundError:
        return None


def load_error(path: Path, backend: str, exc: BaseException, hint: str = "") -> ModelFileError:
    """A loader's exception as one :class:`ModelFileError` naming the file and the backend."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    text = text[:300] + ("..." if len(text) > 300 else "")
    if "edgetpu-custom-op" in text:
        hint = "this model was compiled for the Edge TPU: run it with --backend edgetpu"
    return ModelFileError(
        f"{path}: {backend} cannot load the model ({text or type(exc).__name__})",
        expected="a model whose ops this backend supports",
        fix=hint or "try another backend (--backend auto lists what runs here)",
    )
